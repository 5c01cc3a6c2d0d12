//! Every option does what it says, or is refused before any work (issue 12): `--as-of` on a
//! history, dates as lower and upper bounds, options an export or the demo cannot honour,
//! `--limit 0`, a closed pipe, the JSON vocabulary of the exports, new asset symbols, and the
//! import's file names and blank lines.

use std::path::Path;

use custos_tests::{code, custos, http, stderr, stdout, TestServer, READ_TOKEN};
use serde_json::Value;

/// acct-a: deposit on the 17th, a withdrawal (USD 3000.50) and a deposit on the 18th, a
/// withdrawal on the 19th.
fn small_ledger() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        &[
            "deposit",
            "--id",
            "d1",
            "--account",
            "acct-a",
            "--asset",
            "ETH",
            "--amount",
            "10",
            "--usd",
            "30000",
            "--at",
            "2022-01-17T10:00:00Z",
        ][..],
        &[
            "withdraw",
            "--id",
            "w1",
            "--account",
            "acct-a",
            "--asset",
            "ETH",
            "--amount",
            "1",
            "--usd",
            "3000.5",
            "--at",
            "2022-01-18T05:00:00Z",
        ],
        &[
            "deposit",
            "--id",
            "d2",
            "--account",
            "acct-a",
            "--asset",
            "ETH",
            "--amount",
            "2",
            "--at",
            "2022-01-18T20:00:00Z",
        ],
        &[
            "withdraw",
            "--id",
            "w2",
            "--account",
            "acct-a",
            "--asset",
            "ETH",
            "--amount",
            "1",
            "--at",
            "2022-01-19T01:00:00Z",
        ],
    ] {
        let out = custos(d, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    }
    dir
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

fn ids(report: &Value) -> Vec<String> {
    report["rows"].as_array().expect("rows").iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn history_honours_as_of_on_the_cli_and_the_server() {
    let dir = small_ledger();
    let out = custos(dir.path(), &["history", "--account", "acct-a", "--as-of", "2022-01-17", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ids(&json(&out)), ["d1"], "only what had happened by the end of the 17th");
    let server = TestServer::start(dir.path(), None);
    let (status, body) =
        http("GET", &format!("{}/v1/history?account=acct-a&as_of=2022-01-18", server.url), Some(READ_TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["d1", "w1", "d2"]);
    let balances: Vec<&str> =
        body["rows"].as_array().unwrap().iter().map(|r| r["balance_after"].as_str().unwrap()).collect();
    assert_eq!(balances, ["10", "9", "11"]);
}

#[test]
fn a_date_is_the_start_of_its_day_as_a_lower_bound_and_its_end_as_an_upper_bound() {
    let dir = small_ledger();
    let d = dir.path();
    let out = custos(
        d,
        &["history", "--account", "acct-a", "--from", "2022-01-18", "--to", "2022-01-18", "--format", "json"],
    );
    assert_eq!(ids(&json(&out)), ["w1", "d2"], "both events of the 18th: {}", stderr(&out));
    let out = custos(d, &["replay", "--from", "2022-01-18", "--to", "2022-01-19", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for id in ["w1", "d2", "w2"] {
        assert!(text.contains(&format!("\"{id}\"")), "{id} is in the window of the 18th and 19th: {text}");
    }
    assert!(!text.contains("\"d1\""), "{text}");
    let help = stdout(&custos(d, &["replay", "--help"]));
    assert!(help.contains("the start of that day") && help.contains("the end of that day"), "{help}");
}

#[test]
fn options_that_cannot_be_honoured_are_refused_before_any_work() {
    let dir = small_ledger();
    let d = dir.path();
    let target = d.join("out.csv");
    let out = custos(d, &["export", "--format", "csv", "--as-of", "2022-01-18", "--output", target.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("--as-of applies to --format ledger only"), "{}", stderr(&out));
    assert!(!target.exists(), "nothing was written");
    let journal = stdout(&custos(d, &["export", "--format", "ledger", "--as-of", "2022-01-17"]));
    assert!(journal.contains("d1") && !journal.contains("w1"), "the journal honours --as-of: {journal}");

    let out = custos(d, &["log", "--limit", "0"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--limit"), "{}", stderr(&out));

    // The demo's options, checked before it imports anything (so these answer at once).
    for (args, says) in [
        (vec!["demo", "--format", "csv"], "several tables"),
        (vec!["demo", "--plot", "x.png"], "name the file .svg"),
        (vec!["demo", "--plot", "/no/such/dir/x.svg"], "the folder /no/such/dir does not exist"),
    ] {
        let started = std::time::Instant::now();
        let out = custos(d, &args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{args:?} refused before the import");
    }
    assert!(!Path::new("x.png").exists());
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = small_ledger();
    let mut child = std::process::Command::new(custos_tests::custos_bin())
        .arg("--db")
        .arg(dir.path())
        .args(["log", "--limit", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `| head -0`: the reader is gone before anything is written
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no error printed");
}

#[test]
fn the_jsonl_export_speaks_the_one_json_vocabulary_and_reimports_to_the_same_digest() {
    let dir = small_ledger();
    let d = dir.path();
    let out = custos(d, &["export", "--format", "jsonl"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let w1 = lines.iter().find(|l| l["id"] == "w1").expect("w1");
    assert_eq!(w1["unauthorized"], Value::Bool(false), "{w1}");
    assert_eq!(w1["usd_value"], "3000.50", "{w1}");
    let log = json(&custos(d, &["log", "--format", "json"]));
    let logged = log["rows"].as_array().unwrap().iter().find(|r| r["id"] == "w1").unwrap().clone();
    assert_eq!(logged["usd_value"], w1["usd_value"], "the same value, written the same way: {logged}");
    assert_eq!(logged["unauthorized"], w1["unauthorized"]);
    let csv = stdout(&custos(d, &["export", "--format", "csv"]));
    assert!(csv.contains(",3000.50,"), "{csv}");
    // The export is an import file: the same log again, to the digest.
    let file = d.join("export.jsonl");
    std::fs::write(&file, stdout(&out)).unwrap();
    let again = tempfile::tempdir().unwrap();
    let imported = custos(again.path(), &["import", file.to_str().unwrap()]);
    assert_eq!(code(&imported), 0, "{}", stderr(&imported));
    assert_eq!(stdout(&custos(again.path(), &["digest"])), stdout(&custos(d, &["digest"])));
}

#[test]
fn a_new_asset_symbol_is_said_by_the_command_and_the_import() {
    let dir = small_ledger();
    let d = dir.path();
    let out = custos(d, &["deposit", "--account", "acct-b", "--asset", "DOGE", "--amount", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("DOGE is a new asset in this ledger (6 decimal places)"), "{}", stderr(&out));
    let out = custos(d, &["deposit", "--account", "acct-b", "--asset", "DOGE", "--amount", "5"]);
    assert!(!stderr(&out).contains("new asset"), "only the first time: {}", stderr(&out));
    let out = custos(d, &["deposit", "--account", "acct-b", "--asset", "ETH", "--amount", "1", "--format", "json"]);
    assert_eq!(json(&out)["new_asset"], Value::Null);
    let file = d.join("new.csv");
    std::fs::write(
        &file,
        "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n\
         n1,2022-02-01T00:00:00Z,acct-c,deposit,SHIB,1,,,\n\
         n2,2022-02-01T00:00:01Z,acct-c,deposit,SHIB,1,,,\n\
         n3,2022-02-01T00:00:02Z,acct-c,deposit,USDC,1,,,\n",
    )
    .unwrap();
    let out = custos(d, &["import", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("new assets: SHIB (6 decimal places, line 2), USDC (6 decimal places, line 4)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_import_takes_any_case_of_extension_refuses_a_folder_and_skips_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("UPPER.CSV");
    std::fs::write(
        &file,
        "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n\
         u1,2022-02-01T00:00:00Z,acct-c,deposit,BTC,1,,,\n   \n\t\n\
         u2,2022-02-01T00:00:01Z,acct-c,deposit,BTC,1,,,\n",
    )
    .unwrap();
    let out = custos(d, &["import", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 appended, 0 duplicates, 0 rejected"), "{}", stdout(&out));
    let folder = d.join("folder.csv");
    std::fs::create_dir(&folder).unwrap();
    let out = custos(d, &["import", folder.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "a folder is a usage error, not a rejected line");
    assert!(stderr(&out).contains("is a folder"), "{}", stderr(&out));
}
