//! `verify` on a live ledger (issue 10, findings 12 and 19): it checks the log as it stood at
//! the head it started at, so writes during it are no discrepancy (a verify followed at once
//! by a write said "head record does not match the last stored event" and "recorded in the
//! future" on an intact log), while a tampered byte is still found under load. Verify jobs
//! over HTTP are one at a time, and a finished one's answer stays until it expires.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_ledger::{Ledger, LedgerConfig};
use custos_tests::{deposit, http, raw_sled, rewrite_records, runtime, TestServer, READ_TOKEN, WRITE_TOKEN};

fn filled(dir: &std::path::Path, events: usize) -> Ledger {
    let l = Ledger::open(dir, LedgerConfig { checkpoint_every: 256, ..LedgerConfig::default() }).unwrap();
    let commands: Vec<_> = (0..events)
        .map(|i| deposit(&format!("d{i}"), "2022-01-10T10:00:00Z", &format!("acct-{}", i % 500), "ETH", "1.5"))
        .collect();
    assert!(runtime().block_on(l.submit_batch(commands)).unwrap().iter().all(|o| o.is_ok()));
    l
}

/// Appends small batches until `stop`, counting what it appended.
fn write_loop(ledger: Arc<Ledger>, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<_> = (0..8)
                .map(|k| {
                    i += 1;
                    deposit(&format!("live-{i}-{k}"), "2022-01-11T10:00:00Z", &format!("acct-{}", i % 50), "BTC", "0.1")
                })
                .collect();
            for o in ledger.submit_batch_blocking(batch).unwrap() {
                o.unwrap();
            }
            written.fetch_add(8, Ordering::Relaxed);
        }
    })
}

#[test]
fn verify_under_writes_is_clean_on_an_intact_log_and_finds_a_tampered_byte() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3000).close().unwrap();
    for tampered in [false, true] {
        if tampered {
            let db = raw_sled(dir.path());
            rewrite_records(&db, |seq, r| {
                let mut r = r.to_vec();
                if seq == 1234 {
                    // A byte of the stored hash: the event still decodes and the ledger still
                    // writes, only the chain is broken.
                    let i = r.len() - 1;
                    r[i] ^= 0x01;
                }
                r
            });
        }
        let ledger = Arc::new(
            Ledger::open(dir.path(), LedgerConfig { checkpoint_every: 256, ..LedgerConfig::default() }).unwrap(),
        );
        let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let writer = write_loop(Arc::clone(&ledger), Arc::clone(&stop), Arc::clone(&written));
        // The writes are under way before the first verify starts.
        let started = Instant::now();
        while written.load(Ordering::Relaxed) < 16 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut during_all = 0;
        for round in 0..3 {
            let before = written.load(Ordering::Relaxed);
            let report = ledger.verify(None, &mut |_, _| {}).unwrap();
            let during = written.load(Ordering::Relaxed) - before;
            if tampered {
                assert_eq!(report.first_bad_seq(), Some(1234), "round {round}: {:?}", report.discrepancies);
            } else {
                assert!(report.clean(), "round {round}, {during} events written during it: {:?}", report.discrepancies);
            }
            during_all += during;
        }
        assert!(during_all > 0, "the writes ran during the verifies");
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        let report = ledger.verify(None, &mut |_, _| {}).unwrap();
        assert_eq!(report.clean(), !tampered, "{:?}", report.discrepancies);
        Arc::try_unwrap(ledger).ok().expect("the only handle").close().unwrap();
    }
}

#[test]
fn verify_jobs_are_one_at_a_time_and_clean_under_http_writes() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 40_000).close().unwrap();
    let s = TestServer::start(dir.path(), None);
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let url = s.url.clone();
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = format!(r#"{{"kind":"deposit","id":"h{i}","account":"acct-7","asset":"ETH","amount":"1"}}"#);
                let r = ureq::post(&format!("{url}/v1/commands"))
                    .set("Authorization", &format!("Bearer {WRITE_TOKEN}"))
                    .send_string(&body)
                    .unwrap();
                assert_eq!(r.status(), 200);
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (status, first) = http("POST", &format!("{}/v1/verify", s.url), Some(READ_TOKEN), Some(""));
    assert_eq!(status, 202, "{first}");
    let (status, second) = http("POST", &format!("{}/v1/verify", s.url), Some(READ_TOKEN), Some(""));
    assert_eq!((status, second["error"]["code"].as_str()), (429, Some("verify_running")), "{second}");
    let poll = format!("{}{}", s.url, first["poll"].as_str().unwrap());
    let started = Instant::now();
    let done = loop {
        let (status, v) = http("GET", &poll, Some(READ_TOKEN), None);
        assert_eq!(status, 200, "{v}");
        if v["state"] != "running" {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "verify did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(written.load(Ordering::Relaxed) > 0);
    assert_eq!(done["clean"], true, "{done}");
    // Once it is done, another may start; the finished one still answers.
    let (status, v) = http("POST", &format!("{}/v1/verify", s.url), Some(READ_TOKEN), Some(""));
    assert_eq!(status, 202, "{v}");
    assert_eq!(http("GET", &poll, Some(READ_TOKEN), None).1["state"], "done");
}
