//! `kill -9` during a concurrent append storm, repeated: after reopening, every acknowledged
//! event is present at its seq, there is no seq gap, `verify` is clean, and re-sending every
//! command appends nothing twice. Rounds: `CUSTOS_CRASH_ROUNDS` (default 20). And the same while
//! checkpoints big enough to live in files of their own are being written.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use custos_domain::EventId;
use custos_ledger::{Ledger, LedgerConfig};
use custos_tests::Backend;

const WRITERS: usize = 8;
const PER_WRITER: usize = 400;

fn rounds() -> usize {
    std::env::var("CUSTOS_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

#[test]
fn acknowledged_appends_survive_kill_9_and_resends_make_no_duplicates_on_sled() {
    kill_9_storm(Backend::Sled, rounds());
}

#[test]
fn acknowledged_appends_survive_kill_9_and_resends_make_no_duplicates_on_postgres() {
    kill_9_storm(Backend::Postgres, rounds().div_ceil(4));
}

fn kill_9_storm(backend: Backend, rounds: usize) {
    let place = backend.fresh();
    let mut acked: HashMap<String, u64> = HashMap::new();
    // The Merkle tree head at the end of the round before: its root never changes after a
    // kill -9, and the log after extends it (a consistency proof).
    let mut tree_before: Option<custos_ledger::TreeHead> = None;
    for round in 0..rounds {
        let storm = custos_tests::Storm::start(
            env!("CARGO_BIN_EXE_storm"),
            &[&place.location, &WRITERS.to_string(), &PER_WRITER.to_string(), &format!("r{round}")],
        );
        // Kill at a different moment each round: 40 ms to ~0.5 s into the storm.
        std::thread::sleep(Duration::from_millis(40 + (round as u64 * 97) % 460));
        let seen = storm.kill();
        eprintln!("round {round}: killed after {} acknowledged appends", seen.len());

        let ledger = place.open(LedgerConfig {
            checkpoint_every: 500,
            balances_checkpoint_multiple: 1,
            holder: "crash test".into(),
        });
        for (id, seq) in &seen {
            if let Some(prev) = acked.insert(id.clone(), *seq) {
                assert_eq!(prev, *seq, "round {round}: {id} was acknowledged at two seqs");
            }
        }
        for (id, seq) in &acked {
            let env = ledger.find_event(&EventId::new(id).unwrap()).unwrap();
            assert_eq!(
                env.map(|e| e.seq),
                Some(*seq),
                "round {round}: acknowledged {id} at seq {seq} is missing after kill -9"
            );
        }
        let report = ledger.verify(None, &mut |_, _| {}).unwrap();
        assert!(report.clean(), "round {round}: {:?}", report.discrepancies);
        let head = ledger.head().seq;
        assert!(head >= acked.len() as u64);

        // Re-send everything the storm could have sent: known ids are idempotent replays, and
        // afterwards each id is in the log exactly once.
        let commands = custos_tests::storm_deposits(&format!("r{round}"), WRITERS, PER_WRITER);
        let outcomes = ledger.submit_batch_blocking(commands).unwrap();
        let mut appended = 0;
        for o in &outcomes {
            let a = o.as_ref().expect("deposits are accepted");
            if let Some(seq) = acked.get(a.id.as_str()) {
                assert!(a.duplicate && a.seq == *seq, "round {round}: {} re-sent", a.id);
            }
            if !a.duplicate {
                appended += 1;
            }
        }
        assert_eq!(ledger.head().seq, head + appended);
        assert_eq!(
            ledger.head().seq,
            (WRITERS * PER_WRITER) as u64 * (round as u64 + 1),
            "round {round}: every id exactly once"
        );
        let bound = ledger.bound(None, None, None).unwrap();
        let balances = ledger.balances_at(&bound).unwrap();
        for row in balances.rows(None, None, false) {
            assert_eq!(row.balance, rust_decimal::Decimal::from((PER_WRITER * (round + 1)) as u64), "{}", row.account);
        }
        let tree = ledger.tree_head(None).unwrap();
        if let Some(before) = tree_before.take() {
            let then = ledger.tree_head(Some(before.tree_size)).unwrap();
            assert_eq!(then, before, "round {round}: the tree of the first {} events changed", before.tree_size);
            let p = ledger.consistency_proof(before.tree_size, tree.tree_size).unwrap();
            custos_proof::verify::verify_consistency(
                p.first_size,
                p.second_size,
                &before.root_hash,
                &tree.root_hash,
                &p.path,
            )
            .unwrap_or_else(|e| panic!("round {round}: the log does not extend the one before: {e}"));
        }
        tree_before = Some(tree);
        ledger.close().unwrap();
    }
}

/// kill -9 while the projector writes checkpoints big enough to live in files (every deposit
/// opens an account, so the balances checkpoint passes 64 KiB after ~3,000 events): after
/// reopening, verify (which reads every checkpoint, checks its file's length and SHA-256, and
/// compares it with a refold) is clean, and the writes go on.
#[test]
fn kill_9_while_checkpoint_files_are_written_leaves_every_checkpoint_whole() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let rounds = rounds().div_ceil(4).max(1);
    for round in 0..rounds {
        let mut child = Process::new(env!("CARGO_BIN_EXE_storm"))
            .arg(dir.path())
            .args(["32", "250", &format!("f{round}"), "spread"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&acks);
        let reader = std::thread::spawn(move || {
            for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Past ~4,000 events of this round (checkpoints every 500 are files by then), then a
        // different moment each round.
        let started = std::time::Instant::now();
        while acks.load(Ordering::Relaxed) < 4_000 && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis((round as u64 * 53) % 150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        eprintln!("round {round}: killed after {} acknowledged appends", acks.load(Ordering::Relaxed));

        let config =
            LedgerConfig { checkpoint_every: 500, balances_checkpoint_multiple: 1, holder: "crash test".into() };
        let ledger = Ledger::open(dir.path(), config).unwrap();
        let report = ledger.verify(None, &mut |_, _| {}).unwrap();
        assert!(report.clean(), "round {round}: {:?}", report.discrepancies);
        let files = std::fs::read_dir(dir.path().join("files")).unwrap().count();
        assert!(files > 0, "round {round}: the storm wrote checkpoint files");
        let more =
            vec![custos_tests::deposit(&format!("after-{round}"), "2022-01-01T00:00:00Z", "acct-after", "USDC", "1")];
        assert!(ledger.submit_batch_blocking(more).unwrap()[0].is_ok());
        ledger.close().unwrap();
    }
}
