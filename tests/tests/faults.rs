//! The fault-injection suite (issue 10, finding 10), in the style of sled's and TigerBeetle's:
//! the process is aborted at every durable step of an append, of checkpoint writing and of a
//! rebuild (`custos_log::FAILPOINTS`: before and after the sled batch, the flush and the
//! fsync; after a checkpoint file's write, its fsync, its folder's fsync, the batch that points
//! at it and the removal of the file it replaces; around a rebuild's swap). After each crash
//! the ledger is opened again and must show: verify clean (chain, invariants, indexes,
//! boundary records, checkpoints), every acknowledged event at its seq, no seq gap, and
//! point-in-time answers at random moments equal to a fold of the log from scratch.
//!
//! The storm keeps index segments of 8 entries or more in files (`CUSTOS_SEGMENT_FILE_ENTRIES_MIN`),
//! so merges write, replace and remove segment files under every failpoint too.
//!
//! Each failpoint is armed for its first hit, and the test requires that the process really
//! aborted there (a failpoint never reached is a failure, so the count covered is exact).
//! `CUSTOS_FAULT_ROUNDS=N` arms each one also at hits 2..=N (a soak; default 1).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};

use custos_domain::EventId;
use custos_ledger::{Ledger, LedgerConfig};
use custos_log::FAILPOINTS;
use custos_projection::{Balances, Losses, Projection};

/// Reached only by a rebuild (an append never removes a checkpoint file).
const REBUILD_ONLY: [&str; 3] = ["rebuild:before-swap", "rebuild:after-swap", "meta:after-file-remove"];

fn rounds() -> u64 {
    std::env::var("CUSTOS_FAULT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn config() -> LedgerConfig {
    LedgerConfig { checkpoint_every: 500, balances_checkpoint_multiple: 1, holder: "fault suite".into() }
}

/// Runs the append storm (spread over new accounts, so that balance checkpoints pass 64 KiB
/// and live in files) with `failpoint` armed; returns the acknowledged (id, seq) pairs and
/// whether the process aborted.
fn storm(dir: &Path, failpoint: Option<&str>, prefix: &str) -> (Vec<(String, u64)>, bool) {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_storm"));
    cmd.arg(dir).args(["8", "400", prefix, "spread"]).stdout(Stdio::piped()).stderr(Stdio::null());
    // Index segments of 8 entries or more in files, so that merges write and remove them
    // (every merge past the smallest class replaces files).
    cmd.env("CUSTOS_SEGMENT_FILE_ENTRIES_MIN", "8");
    match failpoint {
        Some(f) => cmd.env("CUSTOS_FAILPOINT", f),
        None => cmd.env_remove("CUSTOS_FAILPOINT"),
    };
    let mut child = cmd.spawn().unwrap();
    let acked: Vec<(String, u64)> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[1].to_string(), parts[2].parse().unwrap())
        })
        .collect();
    let status = child.wait().unwrap();
    (acked, status.signal() == Some(libc::SIGABRT))
}

/// Every check that a crash must leave true.
fn check_after_crash(dir: &Path, acked: &HashMap<String, u64>, what: &str) {
    let ledger = Ledger::open(dir, config()).unwrap_or_else(|e| panic!("{what}: does not open: {e}"));
    let report = ledger.verify(None, &mut |_, _| {}).unwrap();
    assert!(report.clean(), "{what}: {:?}", report.discrepancies);
    for (id, seq) in acked {
        let env = ledger.find_event(&EventId::new(id).unwrap()).unwrap();
        assert_eq!(env.map(|e| e.seq), Some(*seq), "{what}: acknowledged {id} at seq {seq} is missing");
    }
    let head = ledger.head().seq;
    let mut all = Vec::new();
    ledger
        .for_each_envelope(1, |e| {
            all.push(e);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(all.len() as u64, head, "{what}: the log has a gap");
    assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1), "{what}: seqs are not 1..=head");
    // Point-in-time answers at moments spread over the log, against a fold from scratch.
    for k in 0..12u64 {
        let at = &all[((head * (2 * k + 1)) / 24).min(head.saturating_sub(1)) as usize];
        let (as_of, known_at) = (at.occurred_at, at.recorded_at);
        let bound = ledger.bound(Some(as_of), Some(known_at), None).unwrap();
        let (mut b, mut l) = (Balances::default(), Losses::default());
        for e in all.iter().filter(|e| e.recorded_at <= known_at) {
            b.apply(e, as_of).unwrap();
            l.apply(e, as_of).unwrap();
        }
        let got = ledger.balances_at(&bound).unwrap();
        assert_eq!(got.rows(None, None, true), b.rows(None, None, true), "{what}: balances at {as_of}/{known_at}");
        assert_eq!(ledger.losses_at(&bound).unwrap().rows(true), l.rows(true), "{what}: losses at {as_of}");
    }
    // And the ledger takes writes again.
    let more =
        vec![custos_tests::deposit(&format!("after-{}", head), "2022-01-01T00:00:00Z", "acct-after", "USDC", "1")];
    assert!(ledger.submit_batch_blocking(more).unwrap()[0].is_ok(), "{what}: cannot write after the crash");
    ledger.close().unwrap();
}

#[test]
fn a_crash_at_every_durable_step_of_appends_and_checkpoints_loses_nothing_acknowledged() {
    let mut covered = Vec::new();
    for point in FAILPOINTS.iter().filter(|p| !REBUILD_ONLY.contains(p)) {
        for nth in 1..=rounds() {
            let dir = tempfile::tempdir().unwrap();
            // Some history first, so that the crash meets checkpoints and merges too.
            let (first, aborted) = storm(dir.path(), None, "pre");
            assert!(!aborted);
            let spec = format!("{point}@{nth}");
            let (acked, aborted) = storm(dir.path(), Some(&spec), "run");
            assert!(aborted, "{spec}: the storm never reached this failpoint ({} acknowledged)", acked.len());
            let acked: HashMap<String, u64> = first.into_iter().chain(acked).collect();
            check_after_crash(dir.path(), &acked, &spec);
        }
        covered.push(*point);
    }
    eprintln!("crash at {} injection points: {covered:?}", covered.len());
}

#[test]
fn a_crash_at_every_durable_step_of_a_rebuild_leaves_the_old_or_the_new_projections() {
    let template = tempfile::tempdir().unwrap();
    let (acked, aborted) = storm(template.path(), None, "pre");
    assert!(!aborted);
    let acked: HashMap<String, u64> = acked.into_iter().collect();
    let points = REBUILD_ONLY.iter().chain(&["meta:after-batch", "sync:after-flush", "sync:after-fsync"]);
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        for entry in walk(template.path()) {
            let to = dir.path().join(entry.strip_prefix(template.path()).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &to).unwrap();
        }
        let out = Process::new(custos_tests::custos_bin())
            .arg("--db")
            .arg(dir.path())
            .arg("rebuild")
            .env("CUSTOS_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{point}: the rebuild never reached it: {out:?}");
        check_after_crash(dir.path(), &acked, &format!("rebuild, {point}"));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.file_name().is_some_and(|n| n != "custos.lock") {
            out.push(path);
        }
    }
    out
}
