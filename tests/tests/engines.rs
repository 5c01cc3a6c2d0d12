//! The same log on both engines: the same digest, the same answers, byte for byte, and the
//! PostgreSQL engine's own guarantees (typed columns checked by verify, a refused unsafe
//! server, a read replica that refuses writes).

use custos_ledger::LedgerConfig;
use custos_tests::{custos_bin, pg, stdout, Backend};

fn custos_at(location: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(custos_bin())
        .arg("--db")
        .arg(location)
        .args(args)
        .env_remove("CUSTOS_DB")
        .output()
        .expect("custos runs")
}

#[test]
fn the_incident_has_the_same_digest_and_answers_on_both_engines() {
    let fixture = custos_tests::workspace().join("fixtures/incident-2022-01/commands.csv");
    let places: Vec<_> = Backend::ALL.iter().map(|b| b.fresh()).collect();
    let mut outputs: Vec<Vec<String>> = Vec::new();
    for place in &places {
        let import = custos_at(&place.location, &["import", fixture.to_str().unwrap()]);
        assert!(import.status.success(), "import into {}: {}", place.location, String::from_utf8_lossy(&import.stderr));
        let mut answers: Vec<String> = Vec::new();
        for args in [
            &["digest"][..],
            &["balances", "--as-of", "2022-01-18T00:00:00Z", "--known-at", "2022-01-18T06:00:00Z"],
            &["losses", "--as-of", "2022-01-19T00:00:00Z", "--known-at", "2025-01-01T00:00:00Z"],
            &["losses", "--as-of", "2022-01-19T00:00:00Z", "--known-at", "2022-01-18T05:00:00Z"],
            &[
                "replay",
                "--from",
                "2022-01-17T20:00:00Z",
                "--to",
                "2022-01-18T17:46:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &["history", "--account", "acct-000015", "--known-at", "2025-01-01T00:00:00Z"],
            &[
                "balances",
                "--account",
                "acct-000015",
                "--as-of",
                "2022-01-18T12:00:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &["log", "--from-seq", "1", "--limit", "50", "--format", "json"],
            &["verify"],
        ] {
            let out = custos_at(&place.location, args);
            assert!(out.status.success(), "{args:?} on {}: {}", place.location, String::from_utf8_lossy(&out.stderr));
            answers.push(format!("{args:?}\n{}", stdout(&out)));
        }
        outputs.push(answers);
    }
    for (sled, postgres) in outputs[0].iter().zip(&outputs[1]) {
        if sled != postgres {
            let line = sled.lines().zip(postgres.lines()).find(|(a, b)| a != b);
            panic!(
                "sled and PostgreSQL answer differently: first differing line {line:?}\nsled:\n{}",
                &sled[..sled.len().min(2000)]
            );
        }
    }
}

#[test]
fn an_update_of_one_amount_in_sql_is_found_by_verify_which_names_the_seq() {
    let place = Backend::Postgres.fresh();
    let l = place.open(LedgerConfig::default());
    let rt = custos_tests::runtime();
    for i in 0..20 {
        let c = custos_tests::deposit(&format!("d{i}"), "2022-01-17T10:00:00Z", &format!("acct-{i}"), "ETH", "1.5");
        rt.block_on(l.submit(c)).unwrap().unwrap();
    }
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
    drop(l);
    let c = pg::cluster();
    let db = pg::db_name(&place.location);
    assert_eq!(c.psql(db, "SELECT amount FROM custos_events WHERE seq = 7"), "1.5");
    c.psql(db, "UPDATE custos_events SET amount = 15 WHERE seq = 7");
    let report = place.open(LedgerConfig::default()).verify(None, &mut |_, _| {}).unwrap();
    assert_eq!(report.first_bad_seq(), Some(7), "{:?}", report.discrepancies);
    assert!(report.discrepancies.iter().any(|d| d.what.contains("amount")), "{:?}", report.discrepancies);
    let out = custos_at(&place.location, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("seq 7"), "{}", stdout(&out));
}
