//! The four kinds of answer that are not "done" (DESIGN.md, "Errors"), kept apart on the CLI
//! and over HTTP: a refused command (exit 1; 409), a bad request (exit 2; 400), an IO fault
//! (exit 2; 503) and corruption at a named seq (exit 2, verify exit 1; 500 `corruption`).
//! Before, a seq past the head was "corruption at seq 999999", an unknown projection was
//! "corruption", and the server answered 500 to every ledger error.

use custos_tests::{code, custos, http, stderr, stdout, TestServer, READ_TOKEN, WRITE_TOKEN};

fn ledger_with_deposits() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        let at = format!("2022-01-1{i}T10:00:00Z");
        let args = [
            "deposit",
            "--id",
            &format!("d{i}"),
            "--at",
            &at,
            "--account",
            "acct-1",
            "--asset",
            "ETH",
            "--amount",
            "2",
        ];
        assert_eq!(code(&custos(dir.path(), &args)), 0);
    }
    dir
}

#[test]
fn the_cli_tells_the_kinds_apart() {
    let dir = ledger_with_deposits();
    let d = dir.path();
    // Refused: exit 1, the rule named.
    let out = custos(d, &["withdraw", "--id", "w", "--account", "acct-1", "--asset", "ETH", "--amount", "500"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("exceeds its balance"), "{}", stderr(&out));
    // A bad request: exit 2, says what is wrong, not "corruption".
    for (args, says) in [
        (&["losses", "--at-seq", "999999"][..], "seq 999999 is beyond the head of the log (seq 6)"),
        (&["balances", "--at-seq", "7"], "seq 7 is beyond the head"),
        (&["rebuild", "--projection", "nope"], "unknown projection \"nope\""),
    ] {
        let out = custos(d, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says) && !stderr(&out).contains("corruption"), "{args:?}: {}", stderr(&out));
    }
    // An IO fault: the ledger's folder is a file.
    let file = d.join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let out = custos(&file, &["deposit", "--id", "x", "--account", "acct-1", "--asset", "ETH", "--amount", "1"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("cannot open the ledger at {}", file.display())), "{}", stderr(&out));
    // Corruption: exit 2 naming the seq; verify finds it and exits 1.
    custos_tests::forge_overdraft(d, 3);
    let out = custos(d, &["balances"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("corruption at seq 3"), "{}", stderr(&out));
    let out = custos(d, &["verify"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("first bad seq: 3"), "{}", stdout(&out));
}

#[test]
fn the_server_tells_the_kinds_apart() {
    {
        let dir = ledger_with_deposits();
        let s = TestServer::start(dir.path(), None);
        let overdraft = r#"{"kind":"withdrawal","id":"w","account":"acct-1","asset":"ETH","amount":"500"}"#;
        let (status, v) = http("POST", &format!("{}/v1/commands", s.url), Some(WRITE_TOKEN), Some(overdraft));
        assert_eq!((status, v["error"]["code"].as_str()), (409, Some("insufficient_balance")), "{v}");
        let (status, v) = http("GET", &format!("{}/v1/losses?at_seq=999999", s.url), Some(READ_TOKEN), None);
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("out_of_range")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("at_seq 999999 is beyond the head"), "{v}");
    }
    let dir = ledger_with_deposits();
    let d = dir.path();
    custos_tests::forge_overdraft(d, 3);
    let s = TestServer::start(d, None);
    for path in ["/v1/balances", "/v1/losses", "/v1/balances?account=acct-1"] {
        let (status, v) = http("GET", &format!("{}{path}", s.url), Some(READ_TOKEN), None);
        assert_eq!((status, v["error"]["code"].as_str()), (500, Some("corruption")), "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("corruption at seq 3"), "{path}: {v}");
    }
    // A write needs the write model, folded from the forged log: corruption too, not a panic.
    let deposit = r#"{"kind":"deposit","id":"late","account":"acct-2","asset":"ETH","amount":"1"}"#;
    let (status, v) = http("POST", &format!("{}/v1/commands", s.url), Some(WRITE_TOKEN), Some(deposit));
    assert_eq!((status, v["error"]["code"].as_str()), (500, Some("corruption")), "{v}");
}
