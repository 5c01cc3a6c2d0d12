//! `custos import`: streams a command file into the ledger in batches, two batches in flight
//! (one being parsed while the writer makes the previous one durable), so memory does not grow
//! with the file. Rejected lines are reported with their line number and reason; the rest are
//! appended. Re-importing a file appends nothing new.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use custos_domain::Command;
use custos_ledger::{parse_csv, parse_jsonl, DryRun, ImportFormat, ImportLine, Ledger, Queued};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Exit;

/// Commands per batch handed to the writer.
pub const IMPORT_BATCH_COMMANDS: u64 = 4096;
/// Batches submitted and not yet answered.
const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Rejected lines printed in full; the rest are counted.
const REJECTED_LINES_PRINTED_MAX: usize = 200;

/// A progress bar on standard error, drawn only when it is a terminal.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub appended: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub seconds: f64,
    /// Up to `REJECTED_LINES_PRINTED_MAX` rejected lines, as `line N: reason`.
    pub rejections: Vec<String>,
    /// Assets the import used first, with the line of their first event.
    pub new_assets: Vec<(custos_domain::Asset, u64)>,
}

impl Summary {
    pub fn line(&self, label: &str) -> String {
        let total = self.appended + self.duplicates + self.rejected;
        let rate = if self.seconds > 0.0 { self.appended as f64 / self.seconds } else { 0.0 };
        let mut text = format!(
            "{label}: {} appended, {} duplicates, {} rejected ({} lines) in {:.2} s, {:.0} events/s",
            self.appended, self.duplicates, self.rejected, total, self.seconds, rate
        );
        if !self.new_assets.is_empty() {
            let list: Vec<String> = self
                .new_assets
                .iter()
                .map(|(a, line)| format!("{a} ({} decimal places, line {line})", a.scale()))
                .collect();
            text.push_str(&format!("; new assets: {}", list.join(", ")));
        }
        text
    }
    fn reject(&mut self, line: u64, reason: String) {
        self.rejected += 1;
        if self.rejections.len() < REJECTED_LINES_PRINTED_MAX {
            self.rejections.push(format!("line {line}: {reason}"));
        }
    }
}

pub async fn run(ledger: &Arc<Ledger>, path: &Path, strict: bool, batch: usize) -> Result<Exit> {
    if path.is_dir() {
        anyhow::bail!("{} is a folder: name a .csv or .jsonl file", path.display());
    }
    let format = ImportFormat::from_path(path)
        .with_context(|| format!("{}: the file name must end in .csv or .jsonl (or .ndjson)", path.display()))?;
    let open = || -> Result<(File, u64)> {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((f, len))
    };
    if strict {
        let (f, len) = open()?;
        let problems = check_all(ledger, f, format, len)?;
        if !problems.is_empty() {
            for p in problems.iter().take(REJECTED_LINES_PRINTED_MAX) {
                eprintln!("{p}");
            }
            eprintln!(
                "import --strict {}: {} lines would be rejected; nothing was appended",
                path.display(),
                problems.len()
            );
            return Ok(Exit::Refused);
        }
    }
    let (f, len) = open()?;
    let summary = import_reader(ledger, f, format, len, batch, "importing").await?;
    for r in &summary.rejections {
        eprintln!("{r}");
    }
    if summary.rejected as usize > summary.rejections.len() {
        eprintln!("... and {} more rejected lines", summary.rejected as usize - summary.rejections.len());
    }
    crate::say!("{}", summary.line(&format!("import {}", path.display())));
    Ok(if summary.rejected == 0 { Exit::Ok } else { Exit::Refused })
}

fn lines<R: Read + 'static>(reader: R, format: ImportFormat) -> Box<dyn Iterator<Item = ImportLine>> {
    match format {
        ImportFormat::Csv => Box::new(parse_csv(reader)),
        ImportFormat::Jsonl => Box::new(parse_jsonl(reader)),
    }
}

/// Every problem the file would meet, checked against a private copy of the ledger's state.
fn check_all<R: Read + 'static>(ledger: &Ledger, reader: R, format: ImportFormat, len: u64) -> Result<Vec<String>> {
    let bar = bar(len, "checking");
    let mut dry = DryRun::new(ledger)?;
    let mut problems = Vec::new();
    for line in lines(bar.wrap_read(reader), format) {
        match line.command {
            Err(e) => problems.push(e.to_string()),
            Ok(cmd) => {
                if let Err(r) = dry.check(&cmd)? {
                    problems.push(format!("line {}: {r}", line.line));
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(problems)
}

/// A queued batch: its line numbers and its answer to come.
type InFlight = (Vec<u64>, Queued);

/// Streams `reader` into the ledger.
pub async fn import_reader<R: Read + Send + 'static>(
    ledger: &Arc<Ledger>,
    reader: R,
    format: ImportFormat,
    len: u64,
    batch_commands: usize,
    message: &str,
) -> Result<Summary> {
    let started = Instant::now();
    let bar = bar(len, message);
    let mut summary = Summary::default();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut batch: Vec<Command> = Vec::with_capacity(batch_commands);
    let mut batch_lines: Vec<u64> = Vec::with_capacity(batch_commands);
    let mut iter = lines(bar.wrap_read(reader), format);
    loop {
        let next = iter.next();
        let end = next.is_none();
        if let Some(line) = next {
            match line.command {
                Ok(cmd) => {
                    batch.push(cmd);
                    batch_lines.push(line.line);
                }
                Err(e) => summary.reject(
                    e.line,
                    format!("{}{}", e.field.map(|f| format!("field {f}: ")).unwrap_or_default(), e.message),
                ),
            }
        }
        if batch.len() >= batch_commands || (end && !batch.is_empty()) {
            // Queued here, in file order (spawning a task per batch let a later batch reach the
            // writer first); only the waiting for the answers overlaps.
            // Replaced by full-size vectors, not empty ones that would grow by doubling.
            let commands = std::mem::replace(&mut batch, Vec::with_capacity(batch_commands));
            let queued = ledger.enqueue_batch(commands).await?;
            in_flight.push_back((std::mem::replace(&mut batch_lines, Vec::with_capacity(batch_commands)), queued));
        }
        while in_flight.len() >= BATCHES_IN_FLIGHT_MAX || (end && !in_flight.is_empty()) {
            let (numbers, queued) = in_flight.pop_front().expect("non-empty");
            let outcomes = match queued.outcomes().await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    // Say exactly what was acknowledged before the failure, then the failure.
                    bar.finish_and_clear();
                    let first = numbers.first().copied().unwrap_or(0);
                    return Err(anyhow::Error::new(e).context(format!(
                        "import stopped at line {first}: before it {} appended, {} already present, {} rejected; from line {first} on nothing is acknowledged",
                        summary.appended, summary.duplicates, summary.rejected
                    )));
                }
            };
            for (line, outcome) in numbers.into_iter().zip(outcomes) {
                match outcome {
                    Ok(a) if a.duplicate => summary.duplicates += 1,
                    Ok(a) => {
                        summary.appended += 1;
                        if let Some(asset) = a.new_asset {
                            summary.new_assets.push((asset, line));
                        }
                    }
                    Err(r) => summary.reject(line, r.to_string()),
                }
            }
        }
        if end {
            break;
        }
    }
    bar.finish_and_clear();
    summary.rejections.sort_by_key(|r| {
        r.strip_prefix("line ").and_then(|s| s.split(':').next()).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
    });
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
