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
    run_ok(
        d,
        &[
            "deposit --id d1 --account acct-a --asset ETH --amount 10 --usd 30000 --at 2022-01-17T10:00:00Z",
            "withdraw --id w1 --account acct-a --asset ETH --amount 1 --usd 3000.5 --at 2022-01-18T05:00:00Z",
            "deposit --id d2 --account acct-a --asset ETH --amount 2 --at 2022-01-18T20:00:00Z",
            "withdraw --id w2 --account acct-a --asset ETH --amount 1 --at 2022-01-19T01:00:00Z",
        ],
    );
    dir
}

/// Runs each command line (words separated by spaces) on the ledger in `d`; each must succeed.
fn run_ok(d: &Path, lines: &[&str]) {
    for line in lines {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = custos(d, &args);
        assert_eq!(code(&out), 0, "{line}: {}", stderr(&out));
    }
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
    let v = json(&out);
    assert_eq!(v["as_of"], "2022-01-17T23:59:59.999999999Z", "the history states its whole bound: {v}");
    assert_eq!(v["known_seq"], 4, "{v}");
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
        (vec!["demo", "--format", "xml"], "the demo prints table or json"),
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
    // More than the writers buffer (8 KiB for CSV), so the pipe's error comes mid-write.
    let file = dir.path().join("many.csv");
    let mut text = String::from("id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n");
    for i in 0..400 {
        text.push_str(&format!("m{i},2022-02-01T00:{:02}:{:02}Z,acct-m,deposit,BTC,1,,,\n", i / 60, i % 60));
    }
    std::fs::write(&file, text).unwrap();
    assert_eq!(code(&custos(dir.path(), &["import", file.to_str().unwrap()])), 0);
    // Every output format (CSV's writer wraps the pipe's error in its own).
    for format in ["table", "csv", "json"] {
        let mut child = std::process::Command::new(custos_tests::custos_bin())
            .arg("--db")
            .arg(dir.path())
            .args(["log", "--limit", "1000", "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head -0`: the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{format}: no error printed");
    }
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

#[test]
fn a_withdrawal_without_a_usd_value_is_counted_as_unknown_never_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        &[
            "deposit --id d1 --account acct-u --asset ETH --amount 2 --at 2022-01-17T10:00:00Z",
            "withdraw --id w1 --account acct-u --asset ETH --amount 0.6 --unauthorized --at 2022-01-17T20:00:00Z",
            "withdraw --id w2 --account acct-u --asset ETH --amount 0.4 --usd 1200 --unauthorized --at 2022-01-17T20:05:00Z",
        ],
    );
    let v = json(&custos(d, &["losses", "--format", "json"]));
    let eth = v["rows"].as_array().unwrap().iter().find(|r| r["group"] == "ETH").unwrap().clone();
    assert_eq!(eth["outstanding"], "1", "{eth}");
    assert_eq!(eth["outstanding_usd"], "1200.00", "the priced one only: {eth}");
    assert_eq!(eth["withdrawals_without_usd"], 1, "and one whose USD value is unknown: {eth}");
    let table = stdout(&custos(d, &["losses"]));
    assert!(table.contains("withdrawals_without_usd"), "{table}");
    // Before the priced one happened, the only loss has no USD value: unknown, and said.
    let v = json(&custos(d, &["losses", "--as-of", "2022-01-17T20:01:00Z", "--format", "json"]));
    let total = v["rows"].as_array().unwrap().iter().find(|r| r["group"] == "total").unwrap().clone();
    assert_eq!(
        (total["attempted_usd"].as_str(), total["withdrawals_without_usd"].as_u64()),
        (Some("0.00"), Some(1)),
        "{total}"
    );
}

#[test]
fn the_withdrawal_register_says_when_and_how_each_became_known_and_what_is_owed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(
        d,
        &[
            "deposit --id d --account acct-r --asset BTC --amount 5 --at 2022-01-17T00:00:00Z",
            "withdraw --id w1 --account acct-r --asset BTC --amount 1 --usd 40000 --unauthorized --auth-factor sms --at 2022-01-17T20:00:00Z",
            "withdraw --id w2 --account acct-r --asset BTC --amount 0.5 --at 2022-01-17T20:10:00Z",
            "withdraw --id w3 --account acct-r --asset BTC --amount 0.25 --at 2022-01-17T20:20:00Z",
        ],
    );
    let before_flag = stdout(&custos(d, &["digest"]));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let flag_known = chrono_now();
    run_ok(
        d,
        &[
            "flag --id f2 --withdrawal w2 --at 2022-01-18T03:56:00Z",
            "reverse --id v2 --withdrawal w2 --at 2022-01-18T04:00:00Z",
            "reimburse --id r1a --withdrawal w1 --amount 0.25 --at 2022-01-19T00:00:00Z",
            "reimburse --id r1b --withdrawal w1 --amount 0.25 --at 2022-01-19T01:00:00Z",
        ],
    );
    let v = json(&custos(d, &["withdrawals", "--format", "json"]));
    let rows = v["rows"].as_array().unwrap();
    let by = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} in {v}")).clone();
    let (w1, w2, w3) = (by("w1"), by("w2"), by("w3"));
    assert_eq!((w1["classified_how"].as_str(), w1["auth_factor"].as_str()), (Some("marked"), Some("sms")), "{w1}");
    assert_eq!(
        w1["classified_at"],
        w1_recorded(&custos(d, &["log", "--format", "json"])),
        "marked: its own recorded_at"
    );
    assert_eq!((w1["reimbursed"].as_str(), w1["reimbursements"].as_u64()), (Some("0.5"), Some(2)), "{w1}");
    assert_eq!((w1["reimbursed_usd"].as_str(), w1["outstanding"].as_str()), (Some("20000.00"), Some("0.5")), "{w1}");
    assert_eq!(w1["reimbursed_at"], "2022-01-19T01:00:00Z");
    assert_eq!(w2["classified_how"], "flagged", "{w2}");
    let parse = |s: &str| custos_domain::Timestamp::parse_rfc3339(s).unwrap();
    assert!(parse(w2["classified_at"].as_str().unwrap()) > parse(&flag_known), "the flag's recorded_at: {w2}");
    assert_eq!((w2["reversed"].as_str(), w2["outstanding"].as_str()), (Some("0.5"), Some("0")), "{w2}");
    assert_eq!((w3["unauthorized"].as_bool(), w3["outstanding"].is_null()), (Some(false), true), "{w3}");
    // --unauthorized, and as known before the flag: w2 was not yet known to be unauthorized.
    let v = json(&custos(d, &["withdrawals", "--unauthorized", "--format", "json"]));
    assert_eq!(ids_of(&v), ["w1", "w2"]);
    let seq: &str = before_flag.trim().split(':').next().unwrap();
    let v = json(&custos(d, &["withdrawals", "--unauthorized", "--at-seq", seq, "--format", "json"]));
    assert_eq!(ids_of(&v), ["w1"], "before the flag only the marked one");
    // As of the 18th: the reimbursements (on the 19th) had not happened.
    let v = json(&custos(d, &["withdrawals", "--account", "acct-r", "--as-of", "2022-01-18", "--format", "json"]));
    let w1 = v["rows"].as_array().unwrap().iter().find(|r| r["id"] == "w1").unwrap().clone();
    assert_eq!((w1["reimbursed"].is_null(), w1["outstanding"].as_str()), (true, Some("1")), "{w1}");
    // The server answers the same rows.
    let server = TestServer::start(d, None);
    let (status, body) =
        http("GET", &format!("{}/v1/withdrawals?unauthorized=true", server.url), Some(READ_TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body), ["w1", "w2"]);
}

fn ids_of(report: &Value) -> Vec<String> {
    report["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn w1_recorded(log: &std::process::Output) -> Value {
    let v = json(log);
    v["rows"].as_array().unwrap().iter().find(|r| r["id"] == "w1").unwrap()["recorded_at"].clone()
}

/// The wall clock now, as RFC3339 (recorded_at of the next command is later).
fn chrono_now() -> String {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    custos_domain::Timestamp::from_nanos(ns).to_rfc3339()
}

#[test]
fn assets_are_listed_and_a_name_the_ledger_never_saw_is_said_not_answered_with_no_rows() {
    let dir = small_ledger();
    let d = dir.path();
    let out = custos(
        d,
        &["deposit", "--account", "acct-b", "--asset", "BTC", "--amount", "0.5", "--at", "2022-01-17T11:00:00Z"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&custos(d, &["assets", "--format", "json"]));
    let rows = v["rows"].as_array().unwrap();
    let got: Vec<(String, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            (r["asset"].as_str().unwrap().to_string(), n("decimal_places"), n("first_seq"), n("events"))
        })
        .collect();
    assert_eq!(got, [("BTC".to_string(), 8, 5, 1), ("ETH".to_string(), 18, 1, 4)]);
    // A typo: never seen, said, exit 1. A known account with nothing at that moment: exit 0.
    for (args, says) in [
        (vec!["balances", "--account", "acct-zz"], "never seen account acct-zz"),
        (vec!["balances", "--asset", "DOGE"], "never seen asset DOGE"),
        (vec!["history", "--account", "acct-zz"], "never seen account acct-zz"),
        (vec!["withdrawals", "--account", "acct-zz"], "never seen account acct-zz"),
    ] {
        let out = custos(d, &args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = custos(d, &["balances", "--account", "acct-b", "--as-of", "2022-01-16"]);
    assert_eq!(code(&out), 0, "known, just nothing by then: {}", stderr(&out));
    assert!(!stderr(&out).contains("never seen"), "{}", stderr(&out));
}

#[test]
fn the_log_filters_by_kind_account_valid_time_and_recorded_time() {
    let dir = small_ledger();
    let d = dir.path();
    run_ok(d, &["deposit --id b1 --account acct-b --asset BTC --amount 1 --at 2022-01-18T06:00:00Z"]);
    let ids = |args: &[&str]| {
        let mut all = vec!["log", "--format", "json"];
        all.extend_from_slice(args);
        let out = custos(d, &all);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        ids_of(&json(&out))
    };
    assert_eq!(ids(&["--kind", "withdrawal"]), ["w1", "w2"]);
    assert_eq!(ids(&["--account", "acct-a", "--from", "2022-01-18", "--to", "2022-01-18"]), ["w1", "d2"]);
    assert_eq!(
        ids(&["--from", "2022-01-18", "--to", "2022-01-18", "--limit", "2"]),
        ["w1", "d2"],
        "the limit counts matches"
    );
    assert_eq!(ids(&["--recorded-from", "2000-01-01", "--kind", "deposit", "--account", "acct-b"]), ["b1"]);
    assert!(ids(&["--recorded-to", "2000-01-01"]).is_empty());
    // A backwards range is refused, not answered with nothing; so is a never-seen account.
    for args in [
        &["log", "--from", "2022-01-19", "--to", "2022-01-17"][..],
        &["history", "--account", "acct-a", "--from", "2022-01-19", "--to", "2022-01-17"],
    ] {
        let out = custos(d, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("is after"), "{args:?}: {}", stderr(&out));
    }
    let out = custos(d, &["log", "--account", "nobody"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("never seen account nobody") && !stderr(&out).contains("custos assets"),
        "{}",
        stderr(&out)
    );
    let out = custos(d, &["log", "--kind", "bogus"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("unknown kind \"bogus\""), "{}", stderr(&out));
    let server = TestServer::start(d, None);
    let (status, body) = http(
        "GET",
        &format!("{}/v1/log?kind=withdrawal&account=acct-a&from=2022-01-19", server.url),
        Some(READ_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body), ["w2"]);
}

/// `custos --server URL ARGS` with the read token.
fn remote(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(custos_tests::custos_bin())
        .arg("--server")
        .arg(url)
        .args(args)
        .env("CUSTOS_TOKEN", READ_TOKEN)
        .env_remove("CUSTOS_DB")
        .output()
        .unwrap()
}

#[test]
fn balances_of_several_accounts_from_options_or_a_file_and_never_seen_names_said_everywhere() {
    let dir = small_ledger();
    let d = dir.path();
    run_ok(d, &["deposit --id b1 --account acct-b --asset BTC --amount 0.5 --at 2022-01-18T06:00:00Z"]);
    let accounts = |o: &std::process::Output| -> Vec<(String, String)> {
        json(o)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["account"].as_str().unwrap().to_string(), r["balance"].as_str().unwrap().to_string()))
            .collect()
    };
    let both = [("acct-b".to_string(), "0.5".to_string()), ("acct-a".to_string(), "10".to_string())];
    // In the order named, each once.
    let out = custos(
        d,
        &["balances", "--account", "acct-b", "--account", "acct-a", "--account", "acct-b", "--format", "json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(accounts(&out), both);
    let file = d.join("accounts.txt");
    std::fs::write(&file, "\u{feff}# the two customers\nacct-b\n\n  acct-a  \n").unwrap();
    let out = custos(d, &["balances", "--accounts-file", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(accounts(&out), both);
    // A bad id is named with its line; a file naming nobody is not "every account".
    std::fs::write(&file, "acct-a\nnot an id\n").unwrap();
    let out = custos(d, &["balances", "--accounts-file", file.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("accounts.txt line 2"), "{}", stderr(&out));
    std::fs::write(&file, "# nobody\n\n").unwrap();
    let out = custos(d, &["balances", "--accounts-file", file.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("names no account"), "{}", stderr(&out));
    // One typo among known accounts: the others answered, the typo said, exit 1.
    let out = custos(d, &["balances", "--account", "acct-a", "--account", "acct-zz", "--format", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(accounts(&out), [("acct-a".to_string(), "10".to_string())]);
    assert!(stderr(&out).contains("never seen account acct-zz (no event up to seq 5)"), "{}", stderr(&out));

    // The server: several accounts; never-seen names are 404 when nothing else is shown, else
    // named in a header; the CLI through --server says the same and exits the same.
    // (The local answers first: the server holds the folder while it runs.)
    std::fs::write(&file, "acct-b\nacct-a\n").unwrap();
    let file_args = ["balances", "--accounts-file", file.to_str().unwrap(), "--format", "csv"];
    let asked: [&[&str]; 4] = [
        &["balances", "--account", "acct-zz"],
        &["history", "--account", "acct-zz"],
        &["balances", "--account", "acct-a", "--account", "acct-zz"],
        &file_args,
    ];
    let local: Vec<std::process::Output> = asked.iter().map(|args| custos(d, args)).collect();
    let server = TestServer::start(d, None);
    let get = |q: &str| http("GET", &format!("{}/v1/balances?{q}", server.url), Some(READ_TOKEN), None);
    let (status, body) = get("accounts=acct-b,acct-a");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 2, "{body}");
    for q in ["account=acct-zz", "asset=DOGE"] {
        let (status, body) = get(q);
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("never_seen")), "{q}: {body}");
    }
    for path in ["/v1/history?account=acct-zz", "/v1/withdrawals?account=acct-zz", "/v1/log?account=acct-zz"] {
        let (status, body) = http("GET", &format!("{}{path}", server.url), Some(READ_TOKEN), None);
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("never_seen")), "{path}: {body}");
    }
    let partial = ureq::get(&format!("{}/v1/balances?accounts=acct-a,acct-zz", server.url))
        .set("Authorization", &format!("Bearer {READ_TOKEN}"))
        .call()
        .unwrap();
    assert!(partial.header("custos-never-seen").unwrap().contains("account acct-zz"));
    for (args, local) in asked.iter().zip(&local) {
        let via = remote(&server.url, args);
        assert_eq!(code(&via), code(local), "{args:?}: {}", stderr(&via));
        assert_eq!(stderr(&via), stderr(local), "{args:?}");
    }
    // The same rows (CSV carries no bound stamped with the wall clock).
    assert_eq!(stdout(&remote(&server.url, &file_args)), stdout(&local[3]));
    assert_eq!(local.iter().map(code).collect::<Vec<_>>(), [1, 1, 1, 0]);
}

#[test]
fn usage_errors_name_the_option_and_the_exact_limits() {
    let dir = small_ledger();
    let d = dir.path();
    for (args, says) in [
        (&["balances", "--asset", "eth"][..], "'--asset <ASSET>'"),
        (&["balances", "--asset", "eth"], "did you mean ETH?"),
        (&["deposit", "--account", "", "--asset", "ETH", "--amount", "1"], "'--account <ACCOUNT>'"),
        (&["history", "--account", "a b"], "'--account <ACCOUNT>'"),
        (&["balances", "--as-of", "1600-01-01"], "1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z"),
        (&["log", "--from-seq", "99"], "--from-seq 99 is past the head of the log (seq 4)"),
        (&["log", "--kind", "Deposit"], "deposit (Deposited)"),
    ] {
        let out = custos(d, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // The next seq after the head is where a follower waits: empty, not an error.
    assert_eq!(code(&custos(d, &["log", "--from-seq", "5"])), 0);
    // The kind as the tables name it filters the same as the import name.
    let by = |k: &str| ids_of(&json(&custos(d, &["log", "--kind", k, "--format", "json"])));
    assert_eq!(by("Withdrawn"), by("withdrawal"));
    assert_eq!(by("Withdrawn"), ["w1", "w2"]);
    // assets takes no --as-of, so it does not print one.
    let assets = json(&custos(d, &["assets", "--format", "json"]));
    assert!(assets.get("as_of").is_none() && assets["known_seq"] == 4, "{assets}");
    let server = TestServer::start(d, None);
    let (status, body) = http("GET", &format!("{}/v1/log?from_seq=99", server.url), Some(READ_TOKEN), None);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("out_of_range")), "{body}");
    let (status, body) = http("GET", &format!("{}/v1/log?kind=Withdrawn", server.url), Some(READ_TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body), ["w1", "w2"]);
}

/// A second newcomer's findings, each checked: conflicting bounds on replay, seq 0 and the
/// empty log's digest, a report page cut at as_of with its chart saying when, csv refused
/// where it means nothing, and --server saying what the local CLI says.
#[test]
fn a_second_review_bounds_the_empty_log_the_report_page_and_the_server_say_what_they_mean() {
    let dir = small_ledger();
    let d = dir.path();
    let out = custos(
        d,
        &["replay", "--from", "2022-01-18", "--to", "2022-01-18", "--known-at", "2022-01-18", "--at-seq", "2"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
    let v = json(&custos(
        d,
        &["replay", "--from", "2022-01-17", "--to", "2022-01-18", "--at-seq", "0", "--format", "json"],
    ));
    assert_eq!((v["known_at"].clone(), v["at_seq"].clone()), (Value::Null, Value::from(0)), "{v}");
    // The empty log's digest is where every chain starts: it verifies.
    let zero = format!("0:{}", "0".repeat(64));
    let out = custos(d, &["verify", "--digest", &zero]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("the given digest is the chain's link at seq 0"), "{}", stdout(&out));
    assert_eq!(code(&custos(d, &["verify", "--format", "csv"])), 2, "csv means nothing for verify");
    // A data field's time is RFC3339: the error does not offer a date.
    let out = custos(d, &["deposit", "--account", "acct-a", "--asset", "ETH", "--amount", "1", "--at", "2022-01-31"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is not RFC3339") && !stderr(&out).contains("YYYY-MM-DD"), "{}", stderr(&out));
    // The log's unauthorized column is a withdrawal's own marker: none on other events.
    let log = json(&custos(d, &["log", "--format", "json"]));
    let row = |id: &str| log["rows"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(
        (row("d1")["unauthorized"].clone(), row("w1")["unauthorized"].clone()),
        (Value::Null, Value::Bool(false))
    );
    // An accounts file may comment after an id.
    let file = d.join("who.txt");
    std::fs::write(&file, "acct-a   # the one with two withdrawals\n").unwrap();
    assert_eq!(code(&custos(d, &["balances", "--accounts-file", file.to_str().unwrap()])), 0);

    // The report: a window past as_of is cut there, and the chart says when its totals are.
    let page = d.join("cut.html");
    let args = [
        "report",
        "--html",
        page.to_str().unwrap(),
        "--as-of",
        "2022-01-18T06:00:00Z",
        "--from",
        "2022-01-17",
        "--to",
        "2022-01-19",
    ];
    assert_eq!(code(&custos(d, &args)), 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("to <code>2022-01-18T06:00:00Z</code> (cut at as of)"), "the window is cut at as_of");
    assert!(html.contains("ETH at 2022-01-18 06:00 UTC: completed"), "the chart says when its totals are");
    let page = d.join("zero.html");
    assert_eq!(code(&custos(d, &["report", "--html", page.to_str().unwrap(), "--at-seq", "0"])), 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("the log as it stood at seq 0: empty") && !html.contains("1677-"), "no sentinel date");
    assert!(!html.contains("custos verify --digest"), "nothing to verify at seq 0");

    // --server: the same words as the local CLI. (Local answers first: the server holds the folder.)
    let csv = d.join("two.csv");
    std::fs::write(
        &csv,
        "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n\
         n1,2022-02-01T00:00:00Z,acct-n,deposit,DOGE,1,,,\n\
         n2,2022-02-01T00:00:01Z,acct-n,withdrawal,DOGE,5,,,\n",
    )
    .unwrap();
    let head = stdout(&custos(d, &["digest"]));
    let local_verify = custos(d, &["verify", "--digest", head.trim()]);
    let server = TestServer::start(d, None);
    let write = |args: &[&str]| {
        std::process::Command::new(custos_tests::custos_bin())
            .arg("--server")
            .arg(&server.url)
            .args(args)
            .env("CUSTOS_TOKEN", custos_tests::WRITE_TOKEN)
            .env_remove("CUSTOS_DB")
            .output()
            .unwrap()
    };
    let via = write(&["verify", "--digest", head.trim()]);
    assert_eq!((code(&via), stdout(&via)), (code(&local_verify), stdout(&local_verify)), "verify says the same");
    let out = write(&["import", csv.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 3: "), "the file's own line numbers: {}", stderr(&out));
    assert!(stdout(&out).contains("new assets: DOGE (6 decimal places, line 2)"), "{}", stdout(&out));
    let out = write(&["deposit", "--account", "acct-n", "--asset", "SHIB", "--amount", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("note: SHIB is a new asset in this ledger (6 decimal places)"), "{}", stderr(&out));
    for args in [&["demo"][..], &["migrate", "--from", "a", "--to", "b"]] {
        let out = write(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains("not through --server"), "{args:?}: {}", stderr(&out));
    }
}
