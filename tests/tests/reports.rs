//! Report output on the small hand-made log (fixtures/small): figures worked out by hand,
//! snapshots of every report's table, the journal export read by hledger, and the export /
//! import round trip.

use custos_tests::{code, custos, stderr, stdout, workspace};
use serde_json::Value;

const KNOWN: &str = "2026-01-01";

fn small() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = custos(dir.path(), &["import", workspace().join("fixtures/small/commands.csv").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    dir
}

fn run(dir: &std::path::Path, args: &[&str]) -> String {
    let out = custos(dir, args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn the_small_log_gives_the_figures_worked_out_by_hand() {
    let dir = small();
    let d = dir.path();
    let v: Value =
        serde_json::from_str(&run(d, &["balances", "--as-of", "2022-01-31", "--known-at", KNOWN, "--format", "json"]))
            .unwrap();
    let rows: Vec<(String, String, String)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap().into(),
                r["asset"].as_str().unwrap().into(),
                r["balance"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("acct-alice", "BTC", "0.6"),
        ("acct-alice", "ETH", "10.5"),
        ("acct-bob", "ETH", "3"),
        ("acct-bob", "USDC", "25000"),
        ("acct-carol", "SOL", "80"),
    ];
    assert_eq!(rows, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).to_vec());
    let v: Value =
        serde_json::from_str(&run(d, &["losses", "--as-of", "2022-01-31", "--known-at", KNOWN, "--format", "json"]))
            .unwrap();
    let row = |g: &str| v["rows"].as_array().unwrap().iter().find(|r| r["group"] == g).unwrap().clone();
    assert_eq!((row("ETH")["attempted"].clone(), row("ETH")["outstanding_usd"].clone()), ("10".into(), "0.00".into()));
    assert_eq!(row("BTC")["reimbursed_usd"], "16771.68");
    assert_eq!(row("BTC")["outstanding"], "0.6");
    assert_eq!(row("BTC")["outstanding_usd"], "25157.52");
    assert_eq!(
        (row("misc")["attempted_usd"].clone(), row("misc")["prevented_usd"].clone()),
        ("27000.00".into(), "27000.00".into())
    );
    assert_eq!(row("misc")["attempted"], Value::Null);
    assert_eq!(row("total")["accounts_affected"], 3);
    assert_eq!(row("total")["outstanding_usd"], "25157.52");
}

#[test]
fn report_tables_are_stable() {
    let dir = small();
    let d = dir.path();
    insta::assert_snapshot!("balances", run(d, &["balances", "--as-of", "2022-01-18T12:00:00Z", "--known-at", KNOWN]));
    insta::assert_snapshot!(
        "balances_known_before_flags",
        run(d, &["balances", "--as-of", "2022-01-18T03:00:00Z", "--known-at", "2022-01-18T03:00:00Z", "--all"])
    );
    insta::assert_snapshot!("losses", run(d, &["losses", "--as-of", "2022-01-31", "--known-at", KNOWN]));
    insta::assert_snapshot!(
        "losses_detail",
        run(d, &["losses", "--as-of", "2022-01-18T17:46:00Z", "--known-at", KNOWN, "--detail"])
    );
    insta::assert_snapshot!(
        "history",
        run(d, &["history", "--account", "acct-alice", "--as-of", KNOWN, "--known-at", KNOWN])
    );
    insta::assert_snapshot!(
        "replay",
        run(d, &["replay", "--from", "2022-01-17T20:00:00Z", "--to", "2022-01-19", "--known-at", KNOWN])
    );
    insta::assert_snapshot!("log", run(d, &["log", "--from-seq", "9", "--limit", "4"]));
    insta::assert_snapshot!("losses_csv", run(d, &["losses", "--at-seq", "14", "--format", "csv"]));
}

#[test]
fn hledger_reads_the_journal_export_and_computes_the_same_balances() {
    let dir = small();
    let d = dir.path();
    let journal = d.join("small.journal");
    run(d, &["export", "--format", "ledger", "--as-of", "2022-01-31", "--output", journal.to_str().unwrap()]);
    let out = std::process::Command::new("hledger")
        .arg("-f")
        .arg(&journal)
        .args(["balance", "customers", "--flat", "-O", "csv"])
        .output()
        .expect("hledger is installed (the CI script installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut theirs: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter(|l| l.contains("customers:"))
        .map(|l| {
            let f: Vec<String> = l.split("\",\"").map(|s| s.trim_matches('"').to_string()).collect();
            // hledger shows a commodity with the precision it first saw it with ("3.0 ETH").
            let (number, symbol) = f[1].split_once(' ').expect("amount and commodity");
            (f[0].clone(), format!("{} {symbol}", number.parse::<rust_decimal::Decimal>().unwrap().normalize()))
        })
        .collect();
    theirs.sort();
    let v: Value = serde_json::from_str(&run(d, &["balances", "--as-of", "2022-01-31", "--format", "json"])).unwrap();
    let mut ours: Vec<(String, String)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (a, s, b) =
                (r["account"].as_str().unwrap(), r["asset"].as_str().unwrap(), r["balance"].as_str().unwrap());
            (format!("customers:{a}:{s}"), format!("{b} {s}"))
        })
        .collect();
    ours.sort();
    assert_eq!(theirs, ours, "hledger's balances:\n{text}");
}

/// `hledger bal custody QUERY` per asset, as exact decimals (the custody side of each entry).
fn hledger_custody(
    journal: &std::path::Path,
    query: &str,
) -> std::collections::BTreeMap<String, rust_decimal::Decimal> {
    let out = std::process::Command::new("hledger")
        .arg("-f")
        .arg(journal)
        .args(["balance", "custody", query, "--flat", "-O", "csv"])
        .output()
        .expect("hledger is installed (the CI script installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("\"custody:"))
        .map(|l| {
            let f: Vec<&str> = l.split("\",\"").map(|s| s.trim_matches('"')).collect();
            let (number, _) = f[1].split_once(' ').expect("amount and commodity");
            (f[0].trim_start_matches("custody:").to_string(), number.parse::<rust_decimal::Decimal>().unwrap())
        })
        .collect()
}

/// The journal's tags, queried by hledger, give the loss report's attempted, prevented and
/// reimbursed units per asset (`losses --detail` at the same moment).
fn journal_tags_agree_with_losses(d: &std::path::Path, as_of: &str) {
    let journal = d.join("tags.journal");
    run(d, &["export", "--format", "ledger", "--as-of", as_of, "--output", journal.to_str().unwrap()]);
    let v: Value =
        serde_json::from_str(&run(d, &["losses", "--detail", "--as-of", as_of, "--format", "json"])).unwrap();
    let mut want: [std::collections::BTreeMap<String, rust_decimal::Decimal>; 3] = Default::default();
    for r in v["rows"].as_array().unwrap() {
        let asset = match (r["group"].as_str().unwrap(), r["asset"].as_str(), r["account"].is_null()) {
            ("ETH" | "BTC", None, true) => r["group"].as_str().unwrap().to_string(),
            ("misc", Some(a), true) => a.to_string(),
            _ => continue,
        };
        for (i, col) in ["attempted", "prevented", "reimbursed"].iter().enumerate() {
            let x: rust_decimal::Decimal = r[*col].as_str().unwrap().parse().unwrap();
            if !x.is_zero() {
                want[i].insert(asset.clone(), x);
            }
        }
    }
    assert!(!want[0].is_empty(), "the log has losses to compare");
    let negate = |m: std::collections::BTreeMap<String, rust_decimal::Decimal>| {
        m.into_iter().map(|(k, v)| (k, -v)).filter(|(_, v)| !v.is_zero()).collect::<std::collections::BTreeMap<_, _>>()
    };
    // The custody side: a withdrawal credits it, a reversal or reimbursement debits it.
    assert_eq!(hledger_custody(&journal, "tag:unauthorized"), want[0], "attempted");
    assert_eq!(negate(hledger_custody(&journal, "tag:prevented")), want[1], "prevented");
    assert_eq!(negate(hledger_custody(&journal, "tag:reimbursed")), want[2], "reimbursed");
}

#[test]
fn the_journal_tags_let_hledger_compute_the_loss_report() {
    let dir = small();
    journal_tags_agree_with_losses(dir.path(), "2022-01-31");
    let text = run(dir.path(), &["export", "--format", "ledger"]);
    let entry = text.lines().find(|l| l.contains(" Withdrawn w-alice-x ")).expect("the entry");
    assert!(
        entry.ends_with("; seq:7, event_id:w-alice-x, occurred_at:2022-01-17T21:00:00Z, recorded_at:2022-01-17T21:00:01Z, unauthorized:flagged, classified_at:2022-01-18T04:00:01Z"),
        "{entry}"
    );
    let incident = tempfile::tempdir().unwrap();
    let fixture = workspace().join("fixtures/incident-2022-01/commands.csv");
    assert_eq!(code(&custos(incident.path(), &["import", fixture.to_str().unwrap()])), 0);
    // Mid-incident (reversals under way, nothing reimbursed yet) and after it.
    journal_tags_agree_with_losses(incident.path(), "2022-01-18T12:00:00Z");
    journal_tags_agree_with_losses(incident.path(), "2022-01-31");
}

#[test]
fn an_exported_log_reimports_into_the_same_ledger() {
    let dir = small();
    let d = dir.path();
    for format in ["csv", "jsonl"] {
        let file = d.join(format!("export.{format}"));
        run(d, &["export", "--format", format, "--output", file.to_str().unwrap()]);
        let fresh = tempfile::tempdir().unwrap();
        let out = custos(fresh.path(), &["import", file.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        for q in [vec!["balances", "--format", "json", "--all"], vec!["losses", "--detail", "--format", "json"]] {
            let mut args = q.clone();
            args.extend(["--at-seq", "20", "--as-of", "2022-12-31"]);
            assert_eq!(run(fresh.path(), &args), run(d, &args), "{format} {q:?}");
        }
        // Same ids, times and payloads: even the hash chain comes out identical.
        assert_eq!(run(fresh.path(), &["digest"]), run(d, &["digest"]), "{format}");
    }
}
