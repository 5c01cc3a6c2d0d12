//! `custos-bench`: one run, one workload, every figure BENCHMARKS.md quotes.
//!
//! Generates a deterministic workload (default 1,000,000 events over 100,000 accounts), then
//! measures on this machine, in this run: the durable import through the real `custos` binary
//! and the raw limit (the same encoded events into sled, one key per event, `apply_batch` +
//! flush + fsync per batch), alternately for `--rounds` rounds, compared by their medians;
//! appends/s with 1, 8 and 64 concurrent callers; a full rebuild with its
//! peak memory; and point-in-time query latency at 100 random past moments, in-process and as
//! whole `custos` processes. Timings are reported, never asserted.

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use custos_domain::{AccountId, Timestamp};
use custos_ledger::{Ledger, LedgerConfig};
use serde_json::json;

mod answers;
mod pg_engine;
mod sqlite_peer;

#[derive(Parser, Debug)]
#[command(about = "Measure Custos on a deterministic workload (see BENCHMARKS.md)")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Random past moments per query kind
    #[arg(long, default_value_t = 100)]
    moments: usize,
    /// Work folder, kept afterwards (default: a fresh folder under the system temp dir, removed)
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Rounds of (import, raw sled limit), measured alternately; medians are reported
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    /// Reuse the ledger already in --dir (skips generation, import, raw limit and rebuild) and
    /// keep the folder afterwards: for profiling the query paths
    #[arg(long, requires = "dir")]
    reuse: bool,
    /// With --reuse: measure only these of Custos's in-process questions (no peers), print
    /// their medians and stop; for profiling one change against another
    #[arg(long, requires = "reuse", value_delimiter = ',', value_name = "QUESTIONS")]
    only: Option<Vec<Question>>,
    /// Also measure the PostgreSQL engine on this server (the URL of a database to connect to
    /// for `CREATE DATABASE`, e.g. postgres://postgres@127.0.0.1:5432/postgres): import, raw
    /// COPY limits, rebuild, the same queries (answers compared with sled's), appends
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// (internal) Run as one process of the two-process append measurement on this ledger
    #[arg(long, hide = true, value_name = "LOCATION")]
    append_worker: Option<String>,
    #[arg(long, hide = true, default_value_t = 32)]
    callers: usize,
    #[arg(long, hide = true, default_value_t = 4096)]
    total: usize,
    #[arg(long, hide = true, default_value = "a")]
    prefix: String,
}

/// The in-process questions, as `--only` names them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Question {
    One,
    All,
    Losses,
    Replay,
    /// The Merkle tree: inclusion and consistency proofs, tree heads, a liabilities snapshot.
    Proofs,
}

impl Question {
    const ALL: [Question; 4] = [Question::One, Question::All, Question::Losses, Question::Replay];
}

struct Row {
    name: String,
    value: String,
    note: String,
}

fn custos_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("exe dir")?.join("custos");
    if !bin.exists() {
        bail!("{} not found: build it first (cargo build --release -p custos)", bin.display());
    }
    Ok(bin)
}

/// Runs a child and returns its wall time and peak resident memory (KiB).
///
/// The peak is the child's own `VmHWM` (its address space's high-water mark, which starts
/// afresh at exec), read every few milliseconds while it runs. `ru_maxrss` from wait4 is not
/// used: the child execs from a vfork of this process, and the kernel carries this process's
/// resident size into the child's figure (it reported 3.7 GB for a 0.5 GB import).
fn run_measured(cmd: &mut Process) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok((elapsed, peak_kib))
}

/// Whether `program` is on PATH.
fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The median of a few measurements (the lower middle one for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99), *v.last().expect("samples"))
}

fn fmt_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(location) = &args.append_worker {
        return append_worker(location, args.callers, args.total, &args.prefix);
    }
    let pg = args.postgres.as_deref().map(pg_engine::Server::connect).transpose()?;
    let pg_ledger_url = match &pg {
        Some(server) => Some(server.fresh_db("custos_bench_ledger")?),
        None => None,
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("custos-bench-{}", std::process::id())),
    };
    if dir.exists() && !args.reuse {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let bin = custos_bin()?;
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |name: &str, value: String, note: String| {
        eprintln!("{name}: {value} {note}");
        rows.push(Row { name: name.into(), value, note });
    };

    // The workload.
    let csv = dir.join("workload.csv");
    let db = dir.join("ledger");
    let (first, last) = if args.reuse {
        let mut sink = std::io::sink();
        custos_fixtures::workload::write_csv(&mut sink, args.events, args.accounts, args.seed)?
    } else {
        let mut w = BufWriter::new(std::fs::File::create(&csv)?);
        let span = custos_fixtures::workload::write_csv(&mut w, args.events, args.accounts, args.seed)?;
        w.flush()?;
        span
    };
    let mut import_rate = 0.0;
    // (target, met) verdicts, printed at the end: a missed target is said, not hidden.
    let mut targets: Vec<(String, bool)> = Vec::new();
    if !args.reuse {
        let size_mb = std::fs::metadata(&csv)?.len() as f64 / 1e6;
        push(
            "workload",
            format!("{} events, {} accounts", args.events, args.accounts),
            format!("{size_mb:.0} MB of CSV"),
        );

        // The generator's 100 MB must not be written back during the measurements.
        std::fs::File::open(&csv)?.sync_all()?;
        // 1. Durable import through the real binary (whole process), and 2. the raw limit: the
        // same encoded records into sled, one key per event. Both move by tens of percent from
        // one run to the next on this virtual disk, so they are measured alternately, a few
        // rounds, and compared by their medians.
        let (mut imports, mut raws, mut rss_max, mut seconds) = (Vec::new(), Vec::new(), 0, Vec::new());
        for _ in 0..args.rounds.max(1) {
            for d in [&db, &dir.join("raw")] {
                if d.exists() {
                    std::fs::remove_dir_all(d)?;
                }
            }
            let (elapsed, rss) = run_measured(
                Process::new(&bin).arg("--db").arg(&db).arg("import").arg(&csv).stdout(std::process::Stdio::null()),
            )?;
            imports.push(args.events as f64 / elapsed.as_secs_f64());
            seconds.push(elapsed.as_secs_f64());
            rss_max = rss_max.max(rss);
            raws.push(raw_sled_limit(&db, &dir.join("raw"))?);
        }
        let rates = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        import_rate = median(&imports);
        let raw_rate = median(&raws);
        push(
            "import (custos import, durable)",
            format!("{import_rate:.0} events/s"),
            format!(
                "median of {} rounds ({}); {:.2} s median, peak RSS {} MiB",
                imports.len(),
                rates(&imports),
                median(&seconds),
                rss_max / 1024
            ),
        );
        targets.push((format!("import peak RSS <= 300 MiB ({} MiB)", rss_max / 1024), rss_max <= 300 * 1024));
        targets.push((
            format!("import >= 2x the raw sled limit ({:.2}x)", import_rate / raw_rate),
            import_rate >= 2.0 * raw_rate,
        ));
        push(
            "raw sled limit (1 key/event, apply_batch+flush+fsync per 4096)",
            format!("{raw_rate:.0} events/s"),
            format!(
                "median of {} rounds ({}); import / raw = {:.2}x",
                raws.len(),
                rates(&raws),
                import_rate / raw_rate
            ),
        );

        // 2b. The same import on PostgreSQL, alternately with its own COPY of the same CSV and
        // of the rows the import wrote.
        if let (Some(server), Some(url)) = (&pg, &pg_ledger_url) {
            let (mut imports, mut csv_copies, mut row_copies, mut rss_max) = (Vec::new(), Vec::new(), Vec::new(), 0);
            for _ in 0..args.rounds.max(1) {
                server.fresh_db("custos_bench_ledger")?;
                let (elapsed, rss) = run_measured(
                    Process::new(&bin).arg("--db").arg(url).arg("import").arg(&csv).stdout(std::process::Stdio::null()),
                )?;
                imports.push(args.events as f64 / elapsed.as_secs_f64());
                rss_max = rss_max.max(rss);
                csv_copies.push(server.raw_csv_copy(&csv)?);
                row_copies.push(server.raw_rows_copy(url)?);
            }
            let (rate, csv_rate, rows_rate) = (median(&imports), median(&csv_copies), median(&row_copies));
            push(
                "PostgreSQL: import (custos import, durable)",
                format!("{rate:.0} events/s"),
                format!(
                    "median of {} rounds ({}); peak RSS {} MiB; sled / PostgreSQL = {:.2}x",
                    imports.len(),
                    rates(&imports),
                    rss_max / 1024,
                    import_rate / rate
                ),
            );
            push(
                "PostgreSQL: raw COPY of the CSV (10 text columns, no index)",
                format!("{csv_rate:.0} rows/s"),
                format!(
                    "median of {} ({}); import / COPY = {:.2}x",
                    csv_copies.len(),
                    rates(&csv_copies),
                    rate / csv_rate
                ),
            );
            push(
                "PostgreSQL: raw COPY of the ledger's rows (custos_events with its indexes)",
                format!("{rows_rate:.0} rows/s"),
                format!(
                    "median of {} ({}); import / COPY = {:.2}x",
                    row_copies.len(),
                    rates(&row_copies),
                    rate / rows_rate
                ),
            );
            targets.push((format!("PostgreSQL import >= 100,000 events/s ({rate:.0})"), rate >= 100_000.0));
            targets.push((
                format!("PostgreSQL import >= 0.5x its raw COPY of the CSV ({:.2}x)", rate / csv_rate),
                rate >= 0.5 * csv_rate,
            ));
            let (elapsed, rss) = run_measured(
                Process::new(&bin).arg("--db").arg(url).arg("rebuild").stdout(std::process::Stdio::null()),
            )?;
            push(
                "PostgreSQL: rebuild (both projections in one scan, whole process)",
                format!("{:.0} events/s", args.events as f64 / elapsed.as_secs_f64()),
                format!("{:.2} s, peak RSS {} MiB", elapsed.as_secs_f64(), rss / 1024),
            );
        }

        // 3. Full rebuild (whole process), with its peak memory.
        let (elapsed, rss) =
            run_measured(Process::new(&bin).arg("--db").arg(&db).arg("rebuild").stdout(std::process::Stdio::null()))?;
        let rebuild_rate = args.events as f64 / elapsed.as_secs_f64();
        targets.push((format!("rebuild >= 1,000,000 events/s ({rebuild_rate:.0})"), rebuild_rate >= 1e6));
        targets.push((format!("rebuild peak RSS <= 200 MiB ({} MiB)", rss / 1024), rss <= 200 * 1024));
        push(
            "rebuild (both projections in one scan, whole process)",
            format!("{rebuild_rate:.0} events/s"),
            format!("{:.2} s for {} events, peak RSS {} MiB", elapsed.as_secs_f64(), args.events, rss / 1024),
        );
    }

    // 4. Point-in-time queries, in process.
    let ledger = Ledger::open(&db, LedgerConfig { holder: "custos-bench".into(), ..LedgerConfig::default() })?;
    let t0 = Timestamp::from_datetime(first).expect("in range").nanos();
    let t1 = Timestamp::from_datetime(last).expect("in range").nanos();
    let mut rng = custos_fixtures_rng(args.seed);
    let moments: Vec<Timestamp> =
        (0..args.moments).map(|_| Timestamp::from_nanos(t0 + (rng() % (t1 - t0) as u64) as i64)).collect();
    let opened = Instant::now();
    let _ = ledger.balances_at(&ledger.bound(None, None, None)?)?;
    let first_query = opened.elapsed();
    push("first query after open (loads the head state)", fmt_us(first_query), String::new());
    targets.push((
        format!("first query after open <= 50 ms ({})", fmt_us(first_query)),
        first_query <= Duration::from_millis(50),
    ));
    let pg_ledger = match &pg_ledger_url {
        Some(url) if !args.reuse => {
            let l = Ledger::open_at(url, LedgerConfig { holder: "custos-bench".into(), ..LedgerConfig::default() })?;
            let opened = Instant::now();
            let _ = l.balances_at(&l.bound(None, None, None)?)?;
            push("PostgreSQL: first query after open", fmt_us(opened.elapsed()), String::new());
            Some(l)
        }
        _ => None,
    };
    // The moments and accounts asked, the same for every engine and peer.
    let asked: Vec<(i64, String)> =
        moments.iter().map(|t| (t.nanos(), format!("acct-{:06}", rng() % args.accounts))).collect();
    if args.only.as_ref().is_none_or(|only| only.contains(&Question::Proofs)) {
        for (name, value, note) in measure_proofs(&ledger, &mut rng)? {
            push(name, value, note);
        }
    }
    if let Some(only) = &args.only {
        let on_sled = custos_answers(&ledger, &asked, only)?;
        for (q, name) in QUESTIONS.iter().enumerate().filter(|(q, _)| !on_sled.times[*q].is_empty()) {
            let (p50, p99, max) = stats(on_sled.times[q].clone());
            println!("{name}: median {}, p99 {}, max {}", fmt_us(p50), fmt_us(p99), fmt_us(max));
        }
        return Ok(());
    }
    // The peer: the same events in SQLite, the same questions.
    let peer_path = dir.join("peer.sqlite");
    let peer = if args.reuse && peer_path.exists() {
        sqlite_peer::open_existing(&peer_path)?
    } else {
        let _ = std::fs::remove_file(&peer_path);
        let (peer, rate) = sqlite_peer::load(&csv, &peer_path)?;
        targets.push((format!("import >= 5x SQLite's load ({:.2}x)", import_rate / rate), import_rate >= 5.0 * rate));
        push(
            "SQLite load (WAL, synchronous=FULL, 4,096 rows per transaction, 3 indexes)",
            format!("{rate:.0} events/s"),
            format!("custos import / SQLite = {:.2}x", import_rate / rate),
        );
        peer
    };
    // Each question in its own loop over the moments, on every engine; every answer digested
    // (answers.rs) and compared with sled's.
    let on_sled = custos_answers(&ledger, &asked, &Question::ALL)?;
    let on_pg = pg_ledger.as_ref().map(|l| custos_answers(l, &asked, &Question::ALL)).transpose()?;
    let (p_one, (p_all, peer_all_rows), p_losses, (p_replay, _), (p_rows, peer_replay_rows)) = (
        peer.one_account(&asked)?,
        peer.all_balances(&asked)?,
        peer.losses(&asked)?,
        peer.replay(&asked, true)?,
        peer.replay(&asked, false)?,
    );
    let sqlite = [p_one, p_all, p_losses, p_replay, p_rows];
    let duck = duckdb_peer(&csv, &dir, &asked);
    let medians: Vec<Duration> = on_sled.times.iter().map(|v| stats(v.clone()).0).collect();
    // How many of each question's answers differ from sled's ("" when all are the same).
    let differ = |theirs: &[Vec<String>]| -> Vec<usize> {
        QUESTIONS
            .iter()
            .enumerate()
            .map(|(q, _)| on_sled.digests[q].iter().zip(&theirs[q]).filter(|(a, b)| a != b).count())
            .collect()
    };
    let verdict = |who: &str, d: &[usize]| {
        if d.iter().all(|n| *n == 0) {
            (
                "same".to_string(),
                format!("{who}: all {} moments x {} questions give the same values", asked.len(), d.len()),
            )
        } else {
            let list: Vec<String> =
                QUESTIONS.iter().zip(d).filter(|(_, n)| **n > 0).map(|(q, n)| format!("{q}: {n}")).collect();
            ("DIFFER".to_string(), format!("{who}: answers differ from Custos's ({})", list.join(", ")))
        }
    };
    let sqlite_digests: Vec<Vec<String>> = sqlite.iter().map(|t| t.1.clone()).collect();
    let (v, n) = verdict("SQLite", &differ(&sqlite_digests));
    push("SQLite answers vs Custos's", v, n);
    for (q, name) in QUESTIONS.iter().enumerate() {
        let (p50, p99, max) = stats(on_sled.times[q].clone());
        let (q50, q99, qmax) = stats(sqlite[q].0.clone());
        let ratio = p50.as_secs_f64() / q50.as_secs_f64();
        let extra = match q {
            1 => format!("; {} rows at the last moment (SQLite: {peer_all_rows})", on_sled.rows_all),
            3 | 4 => format!("; {} events in the last window (SQLite: {peer_replay_rows})", on_sled.replay_events),
            _ => String::new(),
        };
        let wanted = match q {
            0 => Some(1.0),
            1 => Some(0.1),
            _ => None,
        };
        if let Some(w) = wanted {
            targets.push((format!("{name}: <= {w}x SQLite's median ({ratio:.2}x)"), ratio <= w));
        }
        push(
            name,
            format!("median {}", fmt_us(p50)),
            format!(
                "p99 {}, max {}; SQLite median {} (p99 {}, max {}); Custos/SQLite = {ratio:.2}x{extra}",
                fmt_us(p99),
                fmt_us(max),
                fmt_us(q50),
                fmt_us(q99),
                fmt_us(qmax),
            ),
        );
    }

    if let Some(pg) = &on_pg {
        for (q, name) in QUESTIONS.iter().enumerate().take(4) {
            let (p50, p99, max) = stats(pg.times[q].clone());
            push(
                &format!("PostgreSQL: {name}"),
                format!("median {}", fmt_us(p50)),
                format!(
                    "p99 {}, max {}; PostgreSQL / sled = {:.2}x",
                    fmt_us(p99),
                    fmt_us(max),
                    p50.as_secs_f64() / medians[q].as_secs_f64()
                ),
            );
        }
        let (v, n) = verdict("PostgreSQL", &differ(&pg.digests));
        push("PostgreSQL answers vs sled's", v, n);
    }

    match duck {
        Ok(d) => {
            let mut duck_digests: Vec<Vec<String>> = Vec::new();
            for (q, (name, key)) in QUESTIONS.iter().zip(DUCK_KEYS).enumerate() {
                let samples: Vec<Duration> = d[key]["times"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|x| x.as_f64()).map(Duration::from_secs_f64).collect())
                    .unwrap_or_default();
                duck_digests.push(
                    d[key]["digests"]
                        .as_array()
                        .map(|v| v.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect())
                        .unwrap_or_default(),
                );
                if samples.is_empty() {
                    continue;
                }
                let (q50, q99, qmax) = stats(samples);
                let ratio = medians[q].as_secs_f64() / q50.as_secs_f64();
                let wanted = match q {
                    1 | 2 => Some(0.5),
                    3 => Some(1.0),
                    _ => None,
                };
                if let Some(w) = wanted {
                    targets.push((format!("{name}: <= {w}x DuckDB's median ({ratio:.2}x)"), ratio <= w));
                }
                push(
                    &format!("DuckDB: {name} (python, prepared, engine + fetch)"),
                    format!("median {}", fmt_us(q50)),
                    format!("p99 {}, max {}; Custos/DuckDB = {ratio:.2}x", fmt_us(q99), fmt_us(qmax)),
                );
            }
            let (v, n) = verdict("DuckDB", &differ(&duck_digests));
            push("DuckDB answers vs Custos's", v, n);
        }
        Err(e) => push("DuckDB peer", "not run".into(), e.to_string()),
    }

    // 5. Appends with 1, 8 and 64 concurrent callers (a fresh ledger; each append durable).
    drop(ledger);
    drop(pg_ledger);
    for callers in if args.reuse { vec![] } else { vec![1usize, 8, 64] } {
        let sled_dir = dir.join(format!("appends-{callers}"));
        let rate = appends(&sled_dir.to_string_lossy(), callers, 4096, "a")?;
        push(&format!("appends, {callers} concurrent callers"), format!("{rate:.0} appends/s"), String::new());
        if let Some(server) = &pg {
            let url = server.fresh_db(&format!("custos_bench_appends_{callers}"))?;
            let pg_rate = appends(&url, callers, 4096, "a")?;
            push(
                &format!("PostgreSQL: appends, {callers} concurrent callers"),
                format!("{pg_rate:.0} appends/s"),
                format!("PostgreSQL / sled = {:.2}x", pg_rate / rate),
            );
            if callers == 64 {
                targets.push((
                    format!("PostgreSQL appends at 64 callers >= 20,000/s ({pg_rate:.0})"),
                    pg_rate >= 20_000.0,
                ));
            }
            server.drop_db(&format!("custos_bench_appends_{callers}"))?;
        }
    }
    if let (Some(server), false) = (&pg, args.reuse) {
        let url = server.fresh_db("custos_bench_appends_2p")?;
        let rate = pg_engine::two_processes(&url, 32, 4096)?;
        push(
            "PostgreSQL: appends, 2 processes x 32 concurrent callers",
            format!("{rate:.0} appends/s"),
            "8,192 appends over the span from the first start to the last end".into(),
        );
        server.drop_db("custos_bench_appends_2p")?;
    }

    // 6. Whole-process CLI latency (opening the store is part of what a user waits for).
    let t = moments[0].to_rfc3339();
    for (name, query) in [
        ("custos balances --account (process)", vec!["balances", "--account", "acct-000001", "--as-of", &t]),
        ("custos losses (process)", vec!["losses", "--as-of", &t]),
    ] {
        let (mut samples, mut rss_max) = (Vec::new(), 0);
        for _ in 0..10 {
            let (d, rss) =
                run_measured(Process::new(&bin).arg("--db").arg(&db).args(&query).stdout(std::process::Stdio::null()))?;
            samples.push(d);
            rss_max = rss_max.max(rss);
        }
        let (p50, _, max) = stats(samples);
        push(name, format!("median {}", fmt_us(p50)), format!("max {}; peak RSS {} MiB", fmt_us(max), rss_max / 1024));
        targets.push((format!("{name}: peak RSS <= 100 MiB ({} MiB)", rss_max / 1024), rss_max <= 100 * 1024));
    }

    // 7. The same one-account question from the sqlite3 command line on the peer's file (a
    // whole process too), alternately with Custos's, timed by spawn-and-wait alone (the RSS
    // poll above sleeps 5 ms between looks, coarse for a 3 ms process).
    if which("sqlite3") && peer_path.exists() {
        let sql = sqlite_peer::query("one")
            .replace(":account", "'acct-000001'")
            .replace(":t", &moments[0].nanos().to_string())
            .replace(":k", &i64::MAX.to_string());
        let custos_args = ["balances", "--account", "acct-000001", "--as-of", &t, "--format", "csv"];
        let timed = |cmd: &mut Process| -> Result<(Duration, Vec<u8>)> {
            let started = Instant::now();
            let out = cmd.output()?;
            let took = started.elapsed();
            if !out.status.success() {
                bail!("{cmd:?} failed ({})", out.status);
            }
            Ok((took, out.stdout))
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_rows, mut their_rows) = (0, 0);
        for _ in 0..10 {
            let (d, out) = timed(Process::new(&bin).arg("--db").arg(&db).args(custos_args))?;
            ours.push(d);
            // The CSV's header and a row per asset held.
            our_rows = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count().saturating_sub(1);
            let (d, out) = timed(Process::new("sqlite3").arg("-readonly").arg(&peer_path).arg(&sql))?;
            theirs.push(d);
            their_rows = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        }
        let (ours, _, _) = stats(ours);
        let (theirs, _, _) = stats(theirs);
        let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
        push(
            "whole process, one account at T: custos balances --account vs the sqlite3 command line",
            format!("{} vs {}", fmt_us(ours), fmt_us(theirs)),
            format!(
                "medians of 10, alternately; {ratio:.1}x; {our_rows} vs {their_rows} rows (the values are compared in process above)"
            ),
        );
        targets.push((
            format!("whole-process balances --account <= 2x the sqlite3 command line ({ratio:.1}x)"),
            ratio <= 2.0,
        ));
    } else {
        push("whole process vs the sqlite3 command line", "skipped".into(), "no sqlite3 on PATH".into());
    }

    for (target, met) in &targets {
        push("target", if *met { "met".into() } else { "MISSED".into() }, target.clone());
    }

    if args.json {
        let v: Vec<_> = rows.iter().map(|r| json!({"name": r.name, "value": r.value, "note": r.note})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(10);
        let v = rows.iter().map(|r| r.value.len()).max().unwrap_or(10);
        println!("| {:w$} | {:v$} | note |", "figure", "value");
        println!("|{}|{}|------|", "-".repeat(w + 2), "-".repeat(v + 2));
        for r in &rows {
            println!("| {:w$} | {:v$} | {} |", r.name, r.value, r.note);
        }
    }
    if args.dir.is_none() {
        std::fs::remove_dir_all(&dir).ok();
        if let Some(server) = &pg {
            server.drop_db("custos_bench_ledger")?;
        }
    }
    Ok(())
}

/// Runs `peers/duckdb_peer.py` (needs `pip install duckdb`) on the same CSV and moments.
fn duckdb_peer(csv: &Path, dir: &Path, asked: &[(i64, String)]) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join("duckdb_peer.py");
    let moments = dir.join("moments.json");
    std::fs::write(&moments, serde_json::to_vec(asked)?)?;
    let out = Process::new("python3").arg(&script).arg(csv).arg(&moments).output().context("python3")?;
    if !out.status.success() {
        bail!(
            "the DuckDB peer did not run (pip install duckdb): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The questions, in the order every engine and peer answers them.
const QUESTIONS: [&str; 5] = [
    "one account's balances at T",
    "all balances at T",
    "loss totals at T",
    "14-hour replay ending at T, with running totals",
    "14-hour replay ending at T, rows only",
];
/// The DuckDB peer's names for them.
const DUCK_KEYS: [&str; 5] = ["one", "all", "losses", "replay", "replay_rows"];

/// One engine's answers: per question, each moment's time and digest.
#[derive(Default)]
struct Answers {
    times: [Vec<Duration>; 5],
    digests: [Vec<String>; 5],
    rows_all: usize,
    replay_events: usize,
}

/// Custos's answers to the questions at each moment (known now), each question in its own
/// loop. A replay always computes its totals: the rows-only figure is the same run.
fn custos_answers(l: &Ledger, asked: &[(i64, String)], only: &[Question]) -> Result<Answers> {
    let mut a = Answers::default();
    let bounds: Vec<custos_ledger::Bound> =
        asked.iter().map(|(t, _)| l.bound(Some(Timestamp::from_nanos(*t)), None, None)).collect::<Result<_, _>>()?;
    let asks = |q: Question| only.contains(&q);
    for ((_, acct), b) in asked.iter().zip(&bounds).filter(|_| asks(Question::One)) {
        let acct = AccountId::new(acct)?;
        let s = Instant::now();
        let rows = l.account_balances_at(&acct, b)?.rows(None, None, false);
        a.times[0].push(s.elapsed());
        a.digests[0].push(answers::balances(&rows, false)?);
    }
    for b in bounds.iter().filter(|_| asks(Question::All)) {
        let s = Instant::now();
        let rows = l.balances_at(b)?.rows(None, None, false);
        a.times[1].push(s.elapsed());
        a.rows_all = rows.len();
        a.digests[1].push(answers::balances(&rows, true)?);
    }
    for b in bounds.iter().filter(|_| asks(Question::Losses)) {
        let s = Instant::now();
        let losses = l.losses_at(b)?;
        a.times[2].push(s.elapsed());
        a.digests[2].push(answers::losses(&losses)?);
    }
    for b in bounds.iter().filter(|_| asks(Question::Replay)) {
        let from = Timestamp::from_nanos(b.as_of.nanos() - 14 * 3_600_000_000_000);
        let s = Instant::now();
        let (start, rows) = l.replay(from, b.as_of, b, custos_ledger::ReplayOrder::Valid)?;
        let took = s.elapsed();
        a.times[3].push(took);
        a.times[4].push(took);
        a.replay_events = rows.len();
        a.digests[3].push(answers::replay(&start, &rows, false)?);
        a.digests[4].push(answers::replay(&start, &rows, true)?);
    }
    Ok(a)
}

/// The Merkle tree's answers on the bench ledger, each checked: 200 inclusion proofs of random
/// events at the head and 200 consistency proofs between random sizes (each verified with
/// `custos-proof`), 200 tree heads at random sizes, and one liabilities snapshot of every
/// account at the head (its totals checked against the balances).
fn measure_proofs(l: &Ledger, rng: &mut impl FnMut() -> u64) -> Result<Vec<(&'static str, String, String)>> {
    use custos_proof::verify;
    let head = l.head().seq;
    anyhow::ensure!(head > 1, "the ledger is empty");
    let mut rows = Vec::new();
    let (mut inclusion, mut consistency, mut heads) = (Vec::new(), Vec::new(), Vec::new());
    let root = l.tree_head(None)?.root_hash;
    for _ in 0..200 {
        let seq = 1 + rng() % head;
        let t = Instant::now();
        let p = l.inclusion_proof(seq, None)?;
        inclusion.push(t.elapsed());
        verify::verify_inclusion(&p.leaf_hash, p.leaf_index, p.tree_size, &p.audit_path, &root)?;
        let (a, b) = (1 + rng() % head, 1 + rng() % head);
        let t = Instant::now();
        let c = l.consistency_proof(a.min(b), a.max(b))?;
        consistency.push(t.elapsed());
        verify::verify_consistency(c.first_size, c.second_size, &c.first_root, &c.second_root, &c.path)?;
        let t = Instant::now();
        l.tree_head(Some(1 + rng() % head))?;
        heads.push(t.elapsed());
    }
    for (name, times) in [
        ("Merkle inclusion proof of one event (verified)", inclusion),
        ("Merkle consistency proof between two sizes (verified)", consistency),
        ("Merkle tree head at a past size", heads),
    ] {
        let (p50, p99, max) = stats(times);
        rows.push((name, format!("median {}", fmt_us(p50)), format!("p99 {}, max {}", fmt_us(p99), fmt_us(max))));
    }
    let bound = l.bound(None, None, None)?;
    let t = Instant::now();
    let snap = custos_report::liabilities::snapshot(l, &bound, &[7u8; 32])?;
    let built = t.elapsed();
    let t = Instant::now();
    let mut text = Vec::new();
    let mut bytes = 0usize;
    for i in 0..snap.accounts.len() {
        text.clear();
        snap.write_proof(&mut text, i)?;
        bytes += text.len() + 1;
    }
    let rendered = t.elapsed();
    // The root's totals are the sum of the balances at the same bound.
    let balances = l.balances_at(&bound)?;
    for (a, total) in snap.assets.iter().zip(&snap.root.sums) {
        let sum = balances
            .rows(None, Some(a), true)
            .iter()
            .try_fold(rust_decimal::Decimal::ZERO, |s, r| s.checked_add(r.balance));
        anyhow::ensure!(sum == custos_report::liabilities::decimal_of(*total, a), "liabilities total of {a} differs");
    }
    rows.push((
        "liabilities snapshot of every account at the head (sum tree and every proof)",
        fmt_us(built),
        format!(
            "{} accounts, {} assets; the proofs as JSON: {} more, {} MB; totals equal the balances",
            snap.accounts.len(),
            snap.assets.len(),
            fmt_us(rendered),
            bytes / 1_000_000
        ),
    ));
    Ok(rows)
}

fn custos_fixtures_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes the ledger's own stored records into a fresh sled, one key per event, in batches of
/// the import's size, each made durable the same way (flush + fsync of the data file).
fn raw_sled_limit(ledger_dir: &Path, raw_dir: &Path) -> Result<f64> {
    let store = custos_sled::Store::open(ledger_dir, "custos-bench raw")?;
    let mut records: Vec<Vec<u8>> = Vec::new();
    store.for_each_record(1, |_, r| {
        records.push(r.to_vec());
        ControlFlow::Continue(())
    })?;
    drop(store);
    let db = sled::Config::new().path(raw_dir).cache_capacity(512 << 20).open()?;
    let data = std::fs::File::open(raw_dir.join("db"))?;
    let started = Instant::now();
    for (i, batch) in records.chunks(4096).enumerate() {
        let mut b = sled::Batch::default();
        for (j, r) in batch.iter().enumerate() {
            let seq = (i * 4096 + j + 1) as u64;
            b.insert(&seq.to_be_bytes(), r.as_slice());
        }
        db.apply_batch(b)?;
        db.flush()?;
        data.sync_all()?;
    }
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

/// One process of the two-process append measurement: opens the ledger, says `ready`, waits
/// for `go` on stdin, appends, then prints when it started and ended (Unix nanoseconds).
fn append_worker(location: &str, callers: usize, total: usize, prefix: &str) -> Result<()> {
    let ledger = Arc::new(Ledger::open_at(
        location,
        LedgerConfig { holder: format!("custos-bench append worker {prefix}"), ..LedgerConfig::default() },
    )?);
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let unix_ns = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos());
    let start = unix_ns()?;
    run_appends(&ledger, callers, total, prefix)?;
    println!("{start} {}", unix_ns()?);
    Ok(())
}

/// Durable appends per second on a fresh ledger at `location` with `callers` tasks each
/// sending one deposit at a time.
fn appends(location: &str, callers: usize, total: usize, prefix: &str) -> Result<f64> {
    let ledger = Arc::new(Ledger::open_at(
        location,
        LedgerConfig { holder: "custos-bench appends".into(), ..LedgerConfig::default() },
    )?);
    let started = Instant::now();
    let done = run_appends(&ledger, callers, total, prefix)?;
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// `total` deposits from `callers` concurrent tasks, each waiting for its append to be
/// acknowledged before sending the next; returns how many were appended.
fn run_appends(ledger: &Arc<Ledger>, callers: usize, total: usize, prefix: &str) -> Result<usize> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let per = total / callers;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..callers {
            let ledger = Arc::clone(ledger);
            let prefix = prefix.to_string();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let eth = custos_domain::Asset::new("ETH").expect("valid");
                    let cmd = custos_domain::Command {
                        id: custos_domain::EventId::new(&format!("{prefix}{c}-{i}")).expect("valid"),
                        occurred_at: None,
                        recorded_at: None,
                        expected_version: None,
                        body: custos_domain::CommandBody::Deposit {
                            account: AccountId::new(&format!("acct-{prefix}{c}")).expect("valid"),
                            amount: custos_domain::Amount::parse("1", &eth).expect("valid"),
                            asset: eth,
                            usd_value: None,
                        },
                    };
                    ledger.submit(cmd).await.expect("append").expect("accepted");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    Ok(per * callers)
}
