//! Bad input rejects its own line and nothing else, with the line and field named, and limits
//! hold while reading (issue 10, findings 13-15 and 18): an invalid UTF-8 byte used to stop a
//! CSV import after line 11 without a word; a duplicate JSON key booked the last value; a
//! 400 MB line was buffered whole before the line limit was checked; the server's import
//! refused a body past its limit without saying what it had appended.

use std::io::Read;
use std::path::Path;

use custos_tests::{code, custos, custos_bin, stderr, stdout, TestServer, WRITE_TOKEN};
use serde_json::Value;

const HEADER: &str = "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n";

fn deposit_line(i: usize) -> String {
    format!("d{i},2022-01-10T10:00:00Z,acct-{},deposit,ETH,1.5,,,\n", i % 7)
}

fn balance_total(d: &Path) -> String {
    let out = custos(d, &["balances", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let sum: rust_decimal::Decimal =
        rows.iter().map(|r| r["balance"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap()).sum();
    sum.normalize().to_string()
}

#[test]
fn an_invalid_utf8_byte_rejects_its_line_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut file: Vec<u8> = HEADER.as_bytes().to_vec();
    for i in 0..999 {
        let mut line = deposit_line(i).into_bytes();
        if i == 10 {
            // Line 12 of the file: a Latin-1 byte in the account.
            line[9] = 0xE9;
        }
        file.extend_from_slice(&line);
    }
    let path = dir.path().join("commands.csv");
    std::fs::write(&path, &file).unwrap();
    let out = custos(&dir.path().join("ledger"), &["import", path.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("998 appended") && text.contains("1 rejected") && text.contains("999 lines"), "{text}");
    assert!(text.contains("line 12: field occurred_at"), "{text}");
    assert!(text.contains("not UTF-8"), "{text}");
    assert_eq!(balance_total(&dir.path().join("ledger")), "1497");
}

#[test]
fn a_duplicate_json_key_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let twice = r#"{"id":"d1","occurred_at":"2022-01-10T10:00:00Z","account":"acct-1","kind":"deposit","asset":"ETH","amount":"1","amount":"1000"}"#;
    let good = r#"{"id":"d2","occurred_at":"2022-01-10T10:00:00Z","account":"acct-1","kind":"deposit","asset":"ETH","amount":"2"}"#;
    let path = dir.path().join("commands.jsonl");
    std::fs::write(&path, format!("{twice}\n{good}\n")).unwrap();
    let ledger = dir.path().join("ledger");
    let out = custos(&ledger, &["import", path.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("line 1") && text.contains("\"amount\" appears twice"), "{text}");
    assert_eq!(balance_total(&ledger), "2");

    let s = TestServer::start(&dir.path().join("served"), None);
    let answer = ureq::post(&format!("{}/v1/commands", s.url))
        .set("Authorization", &format!("Bearer {WRITE_TOKEN}"))
        .send_string(twice);
    let Err(ureq::Error::Status(400, r)) = answer else { panic!("expected 400, got {answer:?}") };
    let body = r.into_string().unwrap();
    assert!(body.contains("appears twice"), "{body}");
    let answer = ureq::post(&format!("{}/v1/import", s.url))
        .set("Authorization", &format!("Bearer {WRITE_TOKEN}"))
        .send_string(&format!("{twice}\n{good}\n"));
    let Err(ureq::Error::Status(409, r)) = answer else { panic!("expected 409, got {answer:?}") };
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!((v["appended"].as_u64(), v["rejected"].as_u64()), (Some(1), Some(1)), "{v}");
}

/// Runs custos and watches its peak resident memory (`VmHWM` in /proc, read until it exits:
/// `wait4`'s ru_maxrss would start from this test process's own size).
fn run_measured(args: &[&str]) -> (i32, String, u64) {
    let mut child = std::process::Command::new(custos_bin())
        .args(args)
        .env_remove("CUSTOS_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = text.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(kb.trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap_or(0) * 1024);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), format!("{}{}", out.join().unwrap(), err.join().unwrap()), peak)
}

#[test]
fn an_overlong_line_is_refused_as_it_is_read_not_after() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let json = |id: &str| {
        format!(
            r#"{{"id":"{id}","occurred_at":"2022-01-10T10:00:00Z","account":"acct-1","kind":"deposit","asset":"ETH","amount":"1.5"}}"#
        )
    };
    let csv = |id: &str| format!("{id},2022-01-10T10:00:00Z,acct-1,deposit,ETH,1.5,,,");
    // A good line, a 120 MiB one, a good one: written in pieces, so that this process stays
    // small (a child's ru_maxrss starts from its parent's size).
    let cases = [
        (
            "commands.csv",
            format!("{HEADER}{}\n", csv("d1")),
            "x,2022-01-10T10:00:00Z,acct-1,deposit,ETH,",
            ",,,\n",
            csv("d2"),
        ),
        ("commands.jsonl", format!("{}\n", json("d1")), "{\"id\":\"x\",\"amount\":\"", "\"}\n", json("d2")),
    ];
    for (name, head, open, close, tail) in cases {
        let path = dir.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(head.as_bytes()).unwrap();
        f.write_all(open.as_bytes()).unwrap();
        let piece = vec![b'9'; 1 << 20];
        for _ in 0..120 {
            f.write_all(&piece).unwrap();
        }
        f.write_all(close.as_bytes()).unwrap();
        f.write_all(tail.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let ledger = dir.path().join(format!("ledger-{name}"));
        let (status, text, peak) = run_measured(&["--db", ledger.to_str().unwrap(), "import", path.to_str().unwrap()]);
        assert_eq!(status, 1, "{name}: {text}");
        assert!(text.contains("2 appended") && text.contains("1 rejected"), "{name}: {text}");
        assert!(text.contains("longer than 4096 bytes"), "{name}: {text}");
        assert!(peak < 100 << 20, "{name}: peak {} MiB for a 120 MiB line", peak >> 20);
        assert_eq!(balance_total(&ledger), "3");
    }
}

#[test]
fn the_server_import_uses_the_same_limits_and_says_what_it_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = custos_server::ServerConfig::new(custos_tests::READ_TOKEN.into(), WRITE_TOKEN.into());
    config.import_lines_max = 5;
    let s = TestServer::start(dir.path(), Some(config));
    let line = |i: usize| {
        format!(
            r#"{{"id":"d{i}","occurred_at":"2022-01-10T10:00:00Z","account":"acct-1","kind":"deposit","asset":"ETH","amount":"1"}}"#
        )
    };
    let long = format!("{{\"id\":\"x\",\"destination\":\"{}\"}}", "a".repeat(5000));
    let body = format!("{}\n{long}\n{}\n{}\n{}\n{}\n{}\n", line(1), line(2), line(3), line(4), line(5), line(6));
    let answer = ureq::post(&format!("{}/v1/import", s.url))
        .set("Authorization", &format!("Bearer {WRITE_TOKEN}"))
        .send_string(&body);
    let Err(ureq::Error::Status(413, r)) = answer else { panic!("expected 413, got {answer:?}") };
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "too_many_lines", "{v}");
    assert_eq!(
        (v["appended"].as_u64(), v["rejected"].as_u64(), v["lines"].as_u64()),
        (Some(4), Some(1), Some(5)),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("lines 1-5 were read, 4 appended"), "{message}");
    assert!(v["rejections"][0]["message"].as_str().unwrap().contains("line 2: line is longer than 4096 bytes"), "{v}");
}
