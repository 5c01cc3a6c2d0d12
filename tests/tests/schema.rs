//! Schema evolution: a log written by the v1 code still opens, verifies and reports the figures
//! written down for it; projections stored with another schema version are rebuilt on open;
//! `rebuild --dry-run` shows how a stored projection differs from a fresh fold.

use std::path::Path;

use custos_domain::{AccountId, Amount, Asset, Envelope, Event, EventId, StreamId, Timestamp};
use custos_ledger::{Ledger, LedgerConfig};
use custos_projection::{Balances, Projection};
use custos_tests::{code, custos, raw_sled, stderr, stdout, workspace};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let out = custos(dir, args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn a_log_written_by_the_v1_code_verifies_and_reports_the_expected_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ledger");
    copy_dir(&workspace().join("fixtures/schema-v1/ledger"), &d);

    let out = custos(&d, &["verify"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("verified 21 events"), "{}", stdout(&out));
    // Written before the loss-time index existed: the first open built it (1 withdrawal marked
    // unauthorized, 3 flags, 2 reversals, 3 reimbursements; and verify, which
    // recomputes every index from the log, found it whole); later opens do not build it again.
    assert!(
        stderr(&out).contains("built the loss-time index of this ledger (9 entries from 21 events"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&custos(&d, &["digest"])).contains("loss-time index"));
    assert_eq!(
        stdout(&custos(&d, &["digest"])).trim(),
        "21:2e12d97583aa99377f5d8357ebf20e71c7d0e51e88c92fabd4495bda74866a40"
    );
    let log = json(&d, &["log", "--format", "json"]);
    assert!(log["rows"].as_array().unwrap().iter().all(|r| r["schema"] == 1), "every stored payload is version 1");

    let balances = json(&d, &["balances", "--format", "json"]);
    let got: Vec<String> = balances["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["account"].as_str().unwrap(),
                r["asset"].as_str().unwrap(),
                r["balance"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        ["acct-alice BTC 0.6", "acct-alice ETH 10.5", "acct-bob ETH 2.5", "acct-bob USDC 25000", "acct-carol SOL 80"]
    );
    let losses = json(&d, &["losses", "--format", "json"]);
    let row = |g: &str| losses["rows"].as_array().unwrap().iter().find(|r| r["group"] == g).unwrap().clone();
    assert_eq!(row("ETH")["attempted_usd"], "31289.70");
    assert_eq!(row("ETH")["outstanding"], "0");
    assert_eq!(
        (row("BTC")["outstanding"].clone(), row("BTC")["outstanding_usd"].clone()),
        ("0.6".into(), "25157.52".into())
    );
    assert_eq!(
        (row("misc")["attempted_usd"].clone(), row("misc")["prevented_usd"].clone()),
        ("27000.00".into(), "27000.00".into())
    );
    assert_eq!(row("total")["outstanding_usd"], "25157.52");
    assert_eq!(row("total")["accounts_affected"], 3);

    // The v1 withdrawal with a destination reads back with it (and no authorization factor).
    let history = json(&d, &["history", "--account", "acct-bob", "--format", "json"]);
    assert!(history["rows"].as_array().unwrap().iter().any(|r| r["id"] == "v1-w-dest"));

    // Today's code appends version 2 events on top; the mixed log verifies.
    let out = custos(
        &d,
        &[
            "withdraw",
            "--id",
            "v2-w",
            "--at",
            "2022-02-01T00:00:00Z",
            "--account",
            "acct-bob",
            "--asset",
            "ETH",
            "--amount",
            "0.5",
            "--auth-factor",
            "sms",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = json(&d, &["log", "--from-seq", "21", "--format", "json"]);
    let schemas: Vec<i64> = log["rows"].as_array().unwrap().iter().map(|r| r["schema"].as_i64().unwrap()).collect();
    assert_eq!(schemas, [1, 2]);
    assert_eq!(code(&custos(&d, &["verify"])), 0);
    let exported = d.join("export.csv");
    assert_eq!(code(&custos(&d, &["export", "--format", "csv", "--output", exported.to_str().unwrap()])), 0);
    assert!(std::fs::read_to_string(exported).unwrap().lines().last().unwrap().ends_with(",false,sms,,,"));
}

fn small_ledger(dir: &Path) {
    let l = Ledger::open(
        dir,
        LedgerConfig { checkpoint_every: 4, balances_checkpoint_multiple: 1, holder: "schema test".into() },
    )
    .unwrap();
    let lines = custos_ledger::parse_csv(std::fs::File::open(workspace().join("fixtures/small/commands.csv")).unwrap());
    let commands = lines.map(|l| l.command.unwrap()).collect();
    assert!(l.submit_batch_blocking(commands).unwrap().iter().all(|o| o.is_ok()));
    l.close().unwrap();
}

/// A meta value as the store keeps it: `M name 0x00 part`.
fn meta_key(name: &str, part: u32) -> Vec<u8> {
    let mut k = vec![b'M'];
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

#[test]
fn a_projection_stored_with_another_schema_version_is_rebuilt_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    small_ledger(tmp.path());
    {
        let db = raw_sled(tmp.path());
        let key = meta_key("cp/balances/active", 0);
        let mut v = db.get(&key).unwrap().expect("the balances projection is stored").to_vec();
        v[8..12].copy_from_slice(&0u32.to_be_bytes()); // "written by schema version 0"
        db.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    let out = custos(tmp.path(), &["balances", "--account", "acct-alice", "--format", "csv"]);
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains(
            "projection balances was stored with schema version 0; this build uses 3, so it was rebuilt from the log"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("acct-alice,ETH,10.5"));
    let again = custos(tmp.path(), &["balances"]);
    assert!(!stderr(&again).contains("rebuilt"), "rebuilt once, then stored with the current version");
}

#[test]
fn rebuild_dry_run_shows_a_stale_projection_and_rebuild_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_ledger(d);
    let out = custos(d, &["rebuild", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("no differences"));
    {
        // Corrupt the latest stored checkpoint (seq 20) the way a buggy fold would have: 1 ETH too much.
        let db = raw_sled(d);
        let key = meta_key("cp/balances/g00000001/00000000000000000020", 0);
        let stored = db.get(&key).unwrap().expect("checkpoint at 20").to_vec();
        let mut state = Balances::decode(&stored[4..]).unwrap();
        let eth = Asset::new("ETH").unwrap();
        let fake = Envelope {
            seq: 20,
            stream: StreamId::Account(AccountId::new("acct-bob").unwrap()),
            stream_version: 99,
            event_id: EventId::new("fake").unwrap(),
            recorded_at: Timestamp::MIN,
            occurred_at: Timestamp::MIN,
            schema_version: 2,
            event: Event::Deposited { asset: eth, amount: Amount::parse("1", &eth).unwrap(), usd_value: None },
            hash: [0; 32],
        };
        state.apply(&fake, Timestamp::MAX).unwrap();
        let mut value = stored[..4].to_vec();
        value.extend_from_slice(&state.encode());
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let out = custos(d, &["rebuild", "--dry-run"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("acct-bob ETH") && stdout(&out).contains("differences found"), "{}", stdout(&out));
    let out = custos(d, &["verify"]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("the balances checkpoint at seq 20 differs from a refold of the log"),
        "{}",
        stdout(&out)
    );
    let out = custos(d, &["rebuild"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rebuilt balances (") && stdout(&out).contains("from 20 events in one scan"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&custos(d, &["rebuild", "--dry-run"])).contains("no differences"));
    assert_eq!(code(&custos(d, &["verify"])), 0);
}
