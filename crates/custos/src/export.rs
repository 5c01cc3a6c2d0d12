//! `custos export`: the log as a re-importable command file (CSV or JSON Lines), or as a
//! plain-text accounting journal that hledger and ledger-cli read.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result};
use std::collections::HashMap;

use custos_domain::{Envelope, Event, Seq, Timestamp};
use custos_ledger::{Classification, Ledger, IMPORT_FIELDS};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Ledger,
}

/// Refuses an option the format does not honour (before anything is written): a log export
/// (csv, jsonl) is the whole log, to re-import; `--as-of` cuts only the journal.
pub fn check_options(format: ExportFormat, as_of: Option<Timestamp>) -> Result<()> {
    if as_of.is_some() && format != ExportFormat::Ledger {
        anyhow::bail!(
            "--as-of applies to --format ledger only: a csv or jsonl export is the whole log, to re-import (filter the file afterwards, or export the journal)"
        );
    }
    Ok(())
}

/// A USD value as every output writes it: two decimal places (the value has at most two).
fn usd_text(u: &custos_domain::Usd) -> String {
    format!("{:.2}", u.value())
}

/// The import-format fields of an event (empty where the importer wants them empty).
pub fn import_fields(env: &Envelope) -> [String; 14] {
    let account = env.stream.account().map(|a| a.to_string()).unwrap_or_default();
    let (asset, amount) = match env.event.asset_amount() {
        Some((a, m)) => (a.to_string(), m.to_string()),
        None => (String::new(), String::new()),
    };
    let reference = env.event.withdrawal_ref().map(|(id, _)| id.to_string()).unwrap_or_default();
    let auth_factor = match &env.event {
        Event::Withdrawn { auth_factor: Some(f), .. } => f.name().to_string(),
        _ => String::new(),
    };
    let (account, asset, amount, usd, unauthorized) = match &env.event {
        Event::Deposited { usd_value, .. } => (account, asset, amount, usd_value.map(|u| usd_text(&u)), ""),
        Event::Withdrawn { usd_value, unauthorized, .. } => {
            (account, asset, amount, usd_value.map(|u| usd_text(&u)), if *unauthorized { "true" } else { "false" })
        }
        // Reversals and reimbursements carry the withdrawal's USD value, derived, not given.
        Event::Reversed { .. } | Event::Reimbursed { .. } => (account, asset, amount, None, ""),
        Event::WithdrawalFlagged(_) => (account, asset, String::new(), None, ""),
        Event::WithdrawalsSuspended { .. } | Event::WithdrawalsResumed => {
            (String::new(), String::new(), String::new(), None, "")
        }
    };
    [
        env.event_id.to_string(),
        env.occurred_at.to_rfc3339(),
        env.recorded_at.to_rfc3339(),
        account,
        env.event.kind().name().to_string(),
        asset,
        amount,
        usd.unwrap_or_default(),
        reference,
        unauthorized.to_string(),
        auth_factor,
        match &env.event {
            Event::Withdrawn { destination: Some(d), .. } => d.clone(),
            _ => String::new(),
        },
        match &env.event {
            Event::WithdrawalsSuspended { reason: Some(r) } => r.clone(),
            _ => String::new(),
        },
        String::new(),
    ]
}

pub fn run(ledger: &Ledger, format: ExportFormat, as_of: Option<Timestamp>, output: Option<&Path>) -> Result<()> {
    check_options(format, as_of)?;
    let sink: Box<dyn Write> = match output {
        Some(p) => Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut failure: Option<anyhow::Error> = None;
    // The journal tags each withdrawal, reversal and reimbursement with the classification of
    // its withdrawal as the log knows it now (the register: one entry per withdrawal).
    let classified: HashMap<Seq, Classification> = if format == ExportFormat::Ledger {
        let bound = ledger.bound(Some(as_of.unwrap_or(Timestamp::MAX)), None, Some(ledger.head().seq))?;
        ledger.withdrawals(&bound, None)?.into_iter().filter_map(|w| Some((w.seq, w.classified?))).collect()
    } else {
        HashMap::new()
    };
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(IMPORT_FIELDS)?;
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
        ExportFormat::Ledger => {
            writeln!(out, "; Custos journal export: one transaction per event, one account per (customer, asset).")?;
            writeln!(
                out,
                "; customers:<account>:<asset> holds each customer's balance; custody:<asset> is the other side."
            )?;
            writeln!(
                out,
                "; Tags: seq, event_id, occurred_at, recorded_at on every entry; a withdrawal known unauthorized at seq {}",
                ledger.head().seq
            )?;
            writeln!(
                out,
                "; has unauthorized:marked|flagged and classified_at; its reversal prevented:ID, its reimbursements reimbursed:ID."
            )?;
            writeln!(
                out,
                "; So `hledger bal custody tag:unauthorized` is the attempted amount per asset, tag:prevented the prevented."
            )?;
            if let Some(t) = as_of {
                writeln!(out, "; events that happened at or before {t}")?;
            }
            writeln!(out)?;
        }
        ExportFormat::Jsonl => {}
    }
    ledger.for_each_envelope(1, |env| {
        let result = (|| -> Result<()> {
            match format {
                ExportFormat::Csv => {
                    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
                    w.write_record(import_fields(&env))?;
                    out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
                }
                ExportFormat::Jsonl => {
                    let fields = import_fields(&env);
                    let mut obj = serde_json::Map::new();
                    for (name, value) in IMPORT_FIELDS.iter().zip(fields) {
                        // The JSON vocabulary (README): a flag is a boolean, the rest strings.
                        let value = match (*name, value.as_str()) {
                            (_, "") => continue,
                            ("unauthorized", "true") => serde_json::Value::Bool(true),
                            ("unauthorized", "false") => serde_json::Value::Bool(false),
                            _ => serde_json::Value::String(value),
                        };
                        obj.insert((*name).to_string(), value);
                    }
                    writeln!(out, "{}", serde_json::Value::Object(obj))?;
                }
                ExportFormat::Ledger => {
                    if as_of.is_none_or(|t| env.occurred_at <= t) {
                        journal_entry(&mut out, &env, &classified)?;
                    }
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    out.flush()?;
    Ok(())
}

/// A commodity symbol as hledger reads it: bare when letters only, quoted otherwise.
fn commodity(symbol: &str) -> String {
    if symbol.chars().all(|c| c.is_ascii_alphabetic()) {
        symbol.to_string()
    } else {
        format!("\"{symbol}\"")
    }
}

/// The hledger tags of an entry (`name:value`, comma-separated).
fn journal_tags(env: &Envelope, classified: &HashMap<Seq, Classification>) -> String {
    let mut tags = format!(
        "seq:{}, event_id:{}, occurred_at:{}, recorded_at:{}",
        env.seq, env.event_id, env.occurred_at, env.recorded_at
    );
    let (withdrawal, marker) = match &env.event {
        Event::Withdrawn { .. } => (env.seq, None),
        Event::Reversed { withdrawal, withdrawal_seq, .. } => (*withdrawal_seq, Some(("prevented", withdrawal))),
        Event::Reimbursed { withdrawal, withdrawal_seq, .. } => (*withdrawal_seq, Some(("reimbursed", withdrawal))),
        _ => return tags,
    };
    if let Some((_, w)) = marker {
        tags.push_str(&format!(", withdrawal:{w}"));
    }
    if let Some((at, how)) = classified.get(&withdrawal) {
        match marker {
            None => tags.push_str(&format!(", unauthorized:{}", how.name())),
            Some((name, w)) => tags.push_str(&format!(", {name}:{w}")),
        }
        tags.push_str(&format!(", classified_at:{at}"));
    }
    tags
}

fn journal_entry(out: &mut impl Write, env: &Envelope, classified: &HashMap<Seq, Classification>) -> Result<()> {
    let date = env.occurred_at.to_datetime().format("%Y-%m-%d");
    let Some((asset, amount)) = env.event.asset_amount() else {
        writeln!(out, "; {date} seq {} {} {}\n", env.seq, env.event.kind().event_name(), env.event_id)?;
        return Ok(());
    };
    let change: Decimal = match &env.event {
        Event::Deposited { .. } | Event::Reversed { .. } | Event::Reimbursed { .. } => amount.value(),
        Event::Withdrawn { .. } => custos_domain::money::negate(amount.value()),
        _ => {
            writeln!(
                out,
                "; {date} seq {} {} {} ({} {})\n",
                env.seq,
                env.event.kind().event_name(),
                env.event_id,
                amount,
                asset
            )?;
            return Ok(());
        }
    };
    let account = env.stream.account().expect("balance events are on account streams");
    let c = commodity(asset.as_str());
    writeln!(out, "{date} {} {}  ; {}", env.event.kind().event_name(), env.event_id, journal_tags(env, classified))?;
    writeln!(out, "    customers:{account}:{asset}    {change} {c}")?;
    writeln!(out, "    custody:{asset}    {} {c}", custos_domain::money::negate(change))?;
    writeln!(out)?;
    Ok(())
}
