//! The write side's contracts: durability (fsync before acknowledgement), one process per
//! ledger, races on one balance, every rejection, and bad import input, each appending
//! nothing.

use std::process::Command as Process;
use std::sync::Arc;

use custos_domain::{Command, CommandBody};
use custos_ledger::{Ledger, LedgerConfig, Rejection};
use custos_tests::{code, custos, custos_bin, deposit, reference, resume, stderr, stdout, suspend, withdraw, Backend};
use rust_decimal::Decimal;

fn config() -> LedgerConfig {
    LedgerConfig { checkpoint_every: 4, balances_checkpoint_multiple: 1, holder: "write side test".into() }
}

fn ledger(dir: &std::path::Path) -> Arc<Ledger> {
    Arc::new(Ledger::open(dir, config()).unwrap())
}

#[test]
fn an_append_is_acknowledged_only_after_an_fsync_of_sleds_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.txt");
    let db = dir.path().join("ledger");
    // strace -y prints each descriptor's path, so the fsync can be tied to sled's data file.
    let out = Process::new("strace")
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync,sync_file_range,write", "-o"])
        .arg(&trace)
        .arg(custos_bin())
        .arg("--db")
        .arg(&db)
        .args(["deposit", "--id", "d1", "--account", "acct-1", "--asset", "ETH", "--amount", "1"])
        .output()
        .expect("strace is installed (the CI script installs it)");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("appended d1 at seq 1"));
    let trace = std::fs::read_to_string(trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let ack = lines
        .iter()
        .position(|l| l.contains("write(1") && l.contains("appended d1"))
        .expect("the acknowledgement is traced");
    let fsync = lines
        .iter()
        .position(|l| (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains("/sled/db>"))
        .unwrap_or_else(|| panic!("no fsync of sled/db in the trace:\n{trace}"));
    assert!(fsync < ack, "the data file was fsynced before the acknowledgement:\n{trace}");
}

#[test]
fn a_second_process_is_told_who_holds_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let _held = ledger(dir.path());
    let out = custos(dir.path(), &["balances"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("is held by pid") && err.contains("write side test"), "{err}");
    // The advice is the CLI's (the store's error names no flag).
    assert!(err.contains("send commands to it with --server"), "{err}");
}

#[test]
fn concurrent_withdrawals_beyond_a_balance_only_the_affordable_ones_win_on_sled() {
    concurrent_withdrawals_beyond_a_balance_only_the_affordable_ones_win(Backend::Sled);
}

#[test]
fn concurrent_withdrawals_beyond_a_balance_only_the_affordable_ones_win_on_postgres() {
    concurrent_withdrawals_beyond_a_balance_only_the_affordable_ones_win(Backend::Postgres);
}

fn concurrent_withdrawals_beyond_a_balance_only_the_affordable_ones_win(backend: Backend) {
    let place = backend.fresh();
    let l = Arc::new(place.open(config()));
    let rt = custos_tests::runtime();
    rt.block_on(async {
        l.submit(deposit("fund", "2022-01-01T00:00:00Z", "acct-r", "BTC", "10")).await.unwrap().unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let l = Arc::clone(&l);
            // 16 withdrawals of 0.75 BTC (12 BTC in all) against 10 BTC: 13 fit, 3 do not.
            let c = withdraw(&format!("race-{i}"), "2022-01-02T00:00:00Z", "acct-r", "BTC", "0.75", None, false);
            tasks.push(tokio::spawn(async move { l.submit(c).await.unwrap() }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(Rejection::InsufficientBalance { balance, .. }) => {
                    assert!(balance < Decimal::new(75, 2))
                }
                Err(other) => panic!("unexpected rejection {other}"),
            }
        }
        assert_eq!(won, 13);
    });
    let bound = l.bound(None, None, None).unwrap();
    assert_eq!(
        l.account_balances_at(&custos_tests::account("acct-r"), &bound).unwrap().rows(None, None, true)[0].balance,
        Decimal::new(25, 2)
    );
    // The balance never went negative at any point in the log.
    for seq in 1..=l.head().seq {
        let b = l.bound(None, None, Some(seq)).unwrap();
        assert!(l.balances_at(&b).unwrap().rows(None, None, true).iter().all(|r| r.balance >= Decimal::ZERO));
    }
}

fn expect(l: &Ledger, c: Command, code_name: &str, message_has: &[&str]) {
    let head = l.head();
    let got = l.submit_batch_blocking(vec![c.clone()]).unwrap().pop().unwrap();
    let r = got.expect_err(&format!("{:?} should be refused with {code_name}", c.body));
    assert_eq!(r.code(), code_name, "{r}");
    let msg = r.to_string();
    for part in message_has {
        assert!(msg.contains(part), "{code_name}: {msg:?} should name {part:?}");
    }
    assert_eq!(l.head(), head, "a refused command appends nothing");
}

#[test]
fn every_rule_refuses_with_its_own_rejection_and_appends_nothing_on_sled() {
    every_rule_refuses_with_its_own_rejection_and_appends_nothing(Backend::Sled);
}

#[test]
fn every_rule_refuses_with_its_own_rejection_and_appends_nothing_on_postgres() {
    every_rule_refuses_with_its_own_rejection_and_appends_nothing(Backend::Postgres);
}

fn every_rule_refuses_with_its_own_rejection_and_appends_nothing(backend: Backend) {
    let place = backend.fresh();
    let l = Arc::new(place.open(config()));
    let ok = |c: Command| l.submit_batch_blocking(vec![c]).unwrap().pop().unwrap().expect("accepted");
    ok(deposit("d1", "2022-01-10T00:00:00Z", "acct-1", "ETH", "5"));
    ok(withdraw("w1", "2022-01-11T00:00:00Z", "acct-1", "ETH", "1", Some("3000"), false));
    ok(withdraw("w2", "2022-01-11T01:00:00Z", "acct-1", "ETH", "1", Some("3000"), true));
    ok(deposit("d2", "2022-01-10T00:00:00Z", "acct-2", "BTC", "1"));
    ok(withdraw("w3", "2022-01-11T00:00:00Z", "acct-2", "BTC", "0.5", Some("20000"), false));

    // 1. ids
    expect(
        &l,
        deposit("d1", "2022-01-12T00:00:00Z", "acct-1", "ETH", "6"),
        "id_reused_with_different_content",
        &["d1", "seq 1"],
    );
    let replay = l
        .submit_batch_blocking(vec![deposit("d1", "2022-01-10T00:00:00Z", "acct-1", "ETH", "5")])
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    assert!(replay.duplicate && replay.seq == 1);
    // 2. balances and time order within an account
    expect(
        &l,
        withdraw("x1", "2022-01-12T00:00:00Z", "acct-1", "ETH", "9", None, false),
        "insufficient_balance",
        &["x1", "acct-1", "ETH", "9", "balance of 3"],
    );
    expect(
        &l,
        deposit("x2", "2022-01-09T00:00:00Z", "acct-1", "ETH", "1"),
        "occurred_before_stream_head",
        &["x2", "acct-1"],
    );
    // 3. references
    expect(&l, reference("reverse", "x3", "2022-01-12T00:00:00Z", "nope"), "unknown_withdrawal", &["x3", "nope"]);
    let mut mismatch = reference("reverse", "x4", "2022-01-12T00:00:00Z", "w1");
    if let CommandBody::Reverse { asset, .. } = &mut mismatch.body {
        *asset = Some(custos_tests::asset("BTC"));
    }
    expect(&l, mismatch, "reference_mismatch", &["x4", "asset BTC", "w1", "ETH"]);
    expect(
        &l,
        reference("reimburse", "x5", "2022-01-12T00:00:00Z", "w1"),
        "reimbursement_of_authorized_withdrawal",
        &["x5", "w1"],
    );
    expect(
        &l,
        reference("flag", "x6", "2022-01-12T00:00:00Z", "w2"),
        "flag_of_withdrawal_marked_unauthorized",
        &["x6", "w2"],
    );
    ok(reference("flag", "f1", "2022-01-12T00:00:00Z", "w1"));
    expect(&l, reference("flag", "x7", "2022-01-12T01:00:00Z", "w1"), "already_flagged", &["x7", "w1"]);
    ok(reference("reimburse", "r1", "2022-01-12T02:00:00Z", "w1"));
    expect(
        &l,
        reference("reimburse", "x8", "2022-01-12T03:00:00Z", "w1"),
        "already_fully_reimbursed",
        &["x8", "w1", "1 ETH"],
    );
    expect(
        &l,
        reference("reverse", "x9", "2022-01-12T03:00:00Z", "w1"),
        "reversal_after_reimbursement",
        &["x9", "w1", "1 ETH"],
    );
    let mut partial = reference("reimburse", "x10", "2022-01-12T03:00:00Z", "w2");
    if let CommandBody::Reimburse { amount, .. } = &mut partial.body {
        *amount = Some(Decimal::from(2));
    }
    expect(&l, partial, "reimbursement_exceeds_withdrawal", &["x10", "2 ETH", "w2", "1 ETH"]);
    let mut fine = reference("reimburse", "x11", "2022-01-12T03:00:00Z", "w2");
    if let CommandBody::Reimburse { amount, .. } = &mut fine.body {
        *amount = Some(Decimal::new(1, 19));
    }
    expect(&l, fine, "invalid_amount", &["x11", "19 decimal places"]);
    ok(reference("reverse", "v1", "2022-01-12T00:00:00Z", "w3"));
    expect(&l, reference("reverse", "x12", "2022-01-12T01:00:00Z", "w3"), "already_reversed", &["x12", "w3"]);
    // A reversed withdrawal can still be found unauthorized: the flag makes its reversal count
    // as prevented.
    ok(reference("flag", "f3", "2022-01-12T01:00:00Z", "w3"));
    let losses = l.losses_at(&l.bound(None, None, None).unwrap()).unwrap();
    let btc = losses.by_asset().iter().find(|(a, _)| a.as_str() == "BTC").unwrap().1;
    assert_eq!(
        (btc.attempted, btc.prevented, btc.completed()),
        (Decimal::new(5, 1), Decimal::new(5, 1), Decimal::ZERO)
    );
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
}

#[test]
fn suspensions_future_events_versions_and_reimbursement_after_reversal_on_sled() {
    suspensions_future_events_versions_and_reimbursement_after_reversal(Backend::Sled);
}

#[test]
fn suspensions_future_events_versions_and_reimbursement_after_reversal_on_postgres() {
    suspensions_future_events_versions_and_reimbursement_after_reversal(Backend::Postgres);
}

fn suspensions_future_events_versions_and_reimbursement_after_reversal(backend: Backend) {
    let place = backend.fresh();
    let l = Arc::new(place.open(config()));
    let ok = |c: Command| l.submit_batch_blocking(vec![c]).unwrap().pop().unwrap().expect("accepted");
    ok(deposit("d1", "2022-01-10T00:00:00Z", "acct-1", "ETH", "5"));
    ok(withdraw("w1", "2022-01-11T00:00:00Z", "acct-1", "ETH", "1", None, true));
    ok(reference("reverse", "v1", "2022-01-11T01:00:00Z", "w1"));
    expect(
        &l,
        reference("reimburse", "x1", "2022-01-11T02:00:00Z", "w1"),
        "reimbursement_after_reversal",
        &["x1", "w1"],
    );
    expect(&l, resume("x2", "2022-01-12T00:00:00Z"), "not_suspended", &["x2"]);
    ok(suspend("s1", "2022-01-12T00:00:00Z"));
    expect(&l, suspend("x3", "2022-01-12T01:00:00Z"), "already_suspended", &["x3", "2022-01-12T00:00:00Z"]);
    expect(
        &l,
        withdraw("x4", "2022-01-12T05:00:00Z", "acct-1", "ETH", "1", None, false),
        "withdrawal_during_suspension",
        &["x4", "acct-1", "2022-01-12T05:00:00Z", "still in force"],
    );
    ok(resume("r1", "2022-01-12T10:00:00Z"));
    // Backfilled into the past suspension: still refused, by valid time.
    expect(
        &l,
        withdraw("x5", "2022-01-12T09:59:59Z", "acct-1", "ETH", "1", None, false),
        "withdrawal_during_suspension",
        &["x5", "to 2022-01-12T10:00:00Z"],
    );
    ok(withdraw("w2", "2022-01-12T10:00:00Z", "acct-1", "ETH", "1", None, false));
    // 5. no events from the future
    let mut future = deposit("x6", "2030-01-01T00:00:00Z", "acct-1", "ETH", "1");
    expect(&l, future.clone(), "occurred_after_recorded", &["x6", "2030-01-01T00:00:00Z"]);
    future.recorded_at = Some(custos_tests::t("2031-01-01T00:00:00Z"));
    expect(&l, future, "recorded_in_future", &["x6", "2031"]);
    let mut old = deposit("x7", "2022-01-01T00:00:00Z", "acct-7", "ETH", "1");
    old.recorded_at = Some(custos_tests::t("2022-01-02T00:00:00Z"));
    expect(&l, old, "recorded_before_log_head", &["x7", "2022-01-02T00:00:00Z"]);
    // 6. optimistic concurrency
    let mut stale = deposit("x8", "2022-01-13T00:00:00Z", "acct-1", "ETH", "1");
    stale.expected_version = Some(2);
    expect(&l, stale.clone(), "stream_version_mismatch", &["x8", "acct-1", "version 4", "expected 2"]);
    stale.expected_version = Some(4);
    ok(stale);
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
}

#[test]
fn bad_import_lines_are_refused_with_their_line_and_nothing_of_them_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("bad.csv");
    std::fs::write(
        &csv,
        "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n\
         ok-1,2022-01-01T00:00:00Z,acct-1,deposit,ETH,1.5,,,\n\
         b-1,2022-01-01T00:00:00Z,acct-1,deposit,ETH,1.5.5,,,\n\
         b-2,2022-01-01T00:00:00Z,acct-1,deposit,BTC,0.000000001,,,\n\
         b-3,2022-01-01T00:00:00Z,acct-1,deposit,ETH,-2,,,\n\
         b-4,2022-01-01T00:00:00Z,acct-1,deposit,ETH,0,,,\n\
         b-5,2022-01-01T00:00:00Z,acct-1,airdrop,ETH,1,,,\n\
         b-6,2022-01-01T00:00:00Z,acct-1,deposit,eth!,1,,,\n\
         b-7,2022-01-01T00:00:00Z,,deposit,ETH,1,,,\n\
         b-8,2099-01-01T00:00:00Z,acct-1,deposit,ETH,1,,,\n\
         b-9,2022-01-02T00:00:00Z,,reversal,,,,no-such-withdrawal,\n\
         b-10,2022-01-02T00:00:00Z,acct-1,deposit,ETH,1,,,\n",
    )
    .unwrap();
    // A query on a folder with no ledger says so (and creates nothing).
    let none = custos(d, &["digest"]);
    assert_eq!(code(&none), 2);
    assert!(stderr(&none).contains("there is no ledger at"), "{}", stderr(&none));
    assert!(!d.join("sled").exists());
    let digest_empty = format!("0:{}\n", "0".repeat(64));
    let strict = custos(d, &["import", "--strict", csv.to_str().unwrap()]);
    assert_eq!(code(&strict), 1);
    assert_eq!(stdout(&custos(d, &["digest"])), digest_empty, "--strict appends nothing when a line is bad");
    let out = custos(d, &["import", csv.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_refused_lines(
        &err,
        &[
            (3, "field amount: amount \"1.5.5\" is not a decimal number"),
            (4, "field amount: amount 0.000000001 has 9 decimal places; BTC allows at most 8"),
            (5, "field amount: amount -2 ETH is not positive"),
            (6, "field amount: amount 0 ETH is not positive"),
            (7, "field kind: unknown kind \"airdrop\""),
            (8, "field asset: asset symbol \"eth!\" is not 1-10 uppercase letters or digits"),
            (9, "field account: is required"),
            (10, "occurred_at 2099-01-01T00:00:00Z is after recorded_at"),
            (11, "reversal refers to withdrawal no-such-withdrawal, which the ledger does not have"),
        ],
    );
    assert!(stdout(&out).contains("2 appended, 0 duplicates, 9 rejected"), "{}", stdout(&out));

    let jsonl = d.join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\":\"j1\",\"occurred_at\":\"2022-01-03T00:00:00Z\",\"account\":\"acct-2\",\"kind\":\"deposit\",\"asset\":\"BTC\",\"amount\":\"0.5\"}\n\
         {\"id\":\"j2\",\"occurred_at\":\"2022-01-03T00:00:00Z\",\"account\":\"acct-2\",\"kind\":\"deposit\",\"asset\":\"BTC\",\"amount\":0.5}\n\
         {\"id\":\"j3\",\"occurred_at\":\"2022-01-03T00:00:00Z\",\"colour\":\"red\"}\n\
         {\"id\":\"j4\",\n\
         {\"id\":\"j5\",\"kind\":\"deposit\",\"ref\":\"\"}\n",
    )
    .unwrap();
    let out = custos(d, &["import", jsonl.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_refused_lines(
        &err,
        &[
            (2, "field amount: must be a string holding an exact decimal, not a JSON number"),
            (3, "unknown field \"colour\""),
            (4, "malformed JSON"),
            (5, "field occurred_at: is required"),
        ],
    );
    assert!(stdout(&out).contains("1 appended, 0 duplicates, 4 rejected"), "{}", stdout(&out));
    assert_eq!(code(&custos(d, &["verify"])), 0);
    let wrong_ext = custos(d, &["import", d.join("x.txt").to_str().unwrap()]);
    assert_eq!(code(&wrong_ext), 2);
}

/// Each `(line, what)`: standard error has a line `line N: ...` that says `what`.
fn assert_refused_lines(err: &str, expected: &[(u64, &str)]) {
    for (line, what) in expected {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(what)),
            "line {line}: {what}\n{err}"
        );
    }
}

/// An import keeps several batches in flight; they must reach the writer in file order. A file
/// where every line depends on the one before (strictly increasing `recorded_at`, each withdrawal
/// taking the deposit just before it) is refused line by line if two batches swap.
#[test]
fn an_import_appends_in_file_order_across_batches_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ordered.csv");
    let lines = 40_000u64;
    let mut text = String::from("id,occurred_at,recorded_at,account,kind,asset,amount\n");
    for i in 0..lines {
        let at = custos_domain::Timestamp::from_nanos(1_640_995_200_000_000_000 + i as i64 * 1_000_000).to_rfc3339();
        let kind = if i % 2 == 0 { "deposit" } else { "withdrawal" };
        text.push_str(&format!("e{i},{at},{at},acct-{},{kind},BTC,1.5\n", i / 2 % 97));
    }
    std::fs::write(&csv, text).unwrap();
    // Small batches (2,500 of them) and three imports at once on two cores: a scheduler under
    // pressure is where batches swapped.
    let children: Vec<_> = (0..3)
        .map(|round| {
            let db = dir.path().join(format!("ledger-{round}"));
            let child = std::process::Command::new(custos_bin())
                .arg("--db")
                .arg(&db)
                .arg("import")
                .arg(&csv)
                .args(["--batch", "16"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (db, child)
        })
        .collect();
    for (db, child) in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}: {}", db.display(), stderr(&out));
        assert!(stdout(&out).contains(&format!("{lines} appended, 0 duplicates, 0 rejected")), "{}", stdout(&out));
        let l = Ledger::open(&db, LedgerConfig::default()).unwrap();
        let mut expected = 0u64;
        l.for_each_envelope(1, |env| {
            assert_eq!(env.event_id.as_str(), format!("e{expected}"), "seq {} holds line {}", env.seq, expected + 2);
            expected += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(expected, lines);
    }
}

/// Every kind of state the write model keeps, in one script: balances in several assets and
/// accounts, withdrawals marked and flagged, a reversal, reimbursements in parts (0.5 + 0.5 of
/// 3, a sum finer than the withdrawal), a suspension that ended and one still on.
fn scripted_history(l: &Ledger) {
    let mut commands = Vec::new();
    for i in 0..12 {
        let acct = format!("acct-snap-{}", i % 4);
        commands.push(deposit(&format!("d{i}"), "2022-01-01T00:00:00Z", &acct, ["ETH", "BTC", "USDC"][i % 3], "10"));
    }
    commands.push(withdraw("w-marked", "2022-01-02T00:00:00Z", "acct-snap-0", "ETH", "3", Some("3000"), true));
    commands.push(withdraw("w-flag", "2022-01-02T00:01:00Z", "acct-snap-1", "BTC", "1", Some("40000"), false));
    commands.push(withdraw("w-rev", "2022-01-02T00:02:00Z", "acct-snap-2", "USDC", "2", None, true));
    commands.push(reference("flag", "f-1", "2022-01-02T01:00:00Z", "w-flag"));
    commands.push(reference("reverse", "r-1", "2022-01-02T01:01:00Z", "w-rev"));
    let part = |ident: &str, amount: &str| {
        custos_tests::cmd(
            ident,
            "2022-01-02T02:00:00Z",
            CommandBody::Reimburse {
                withdrawal: custos_tests::id("w-marked"),
                account: None,
                asset: None,
                amount: Some(amount.parse().unwrap()),
            },
        )
    };
    commands.push(part("p-1", "0.5"));
    commands.push(part("p-2", "0.5"));
    commands.push(suspend("s-1", "2022-01-03T00:00:00Z"));
    commands.push(resume("s-2", "2022-01-03T01:00:00Z"));
    commands.push(suspend("s-3", "2022-01-04T00:00:00Z"));
    for c in commands {
        let out = l.submit_batch_blocking(vec![c.clone()]).unwrap().pop().unwrap();
        assert!(out.is_ok(), "{c:?}: {out:?}");
    }
}

fn folded_model(l: &Ledger) -> custos_ledger::WriteModel {
    let mut m = custos_ledger::WriteModel::default();
    l.for_each_envelope(1, |e| {
        m.apply(&e).unwrap();
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    m
}

/// A writer starts from the write-model snapshot the last one left (a CLI write on a long log
/// folds a few events, not the whole log) and holds exactly the model a fold of the log gives;
/// a snapshot from another log, or altered, is never decided from without `verify` saying so.
#[test]
fn a_writer_starts_from_the_write_model_snapshot_and_holds_what_a_fold_gives() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    scripted_history(&l);
    l.close().unwrap();
    drop(l);
    let l = ledger(dir.path());
    let snapshot = l.write_model_snapshot_seq().unwrap();
    assert_eq!(snapshot, Some(l.head().seq), "the stopping writer left a snapshot at the head");
    assert_eq!(l.write_model().unwrap(), folded_model(&l));
    // Decisions after a restart: the rest of w-marked (2 of 3), the flag is not repeated, the
    // suspension still holds.
    // The 0.5 + 0.5 already reimbursed is said as 1 ETH, not with the sum's scale (1.0).
    let reverse = reference("reverse", "r-2", "2022-01-05T00:00:00Z", "w-marked");
    expect(&l, reverse, "reversal_after_reimbursement", &["1 ETH of it was already reimbursed"]);
    let rest = reference("reimburse", "p-3", "2022-01-05T00:00:00Z", "w-marked");
    let out = l.submit_batch_blocking(vec![rest]).unwrap().pop().unwrap().unwrap();
    let env = l.envelope(out.seq).unwrap().unwrap();
    assert!(format!("{:?}", env.event).contains("2000"), "the rest's USD share is 2000: {:?}", env.event);
    expect(&l, reference("flag", "f-2", "2022-01-05T00:00:00Z", "w-flag"), "already_flagged", &["w-flag"]);
    let w = withdraw("w-late", "2022-01-05T00:00:00Z", "acct-snap-3", "ETH", "1", None, false);
    expect(&l, w, "withdrawal_during_suspension", &["still in force"]);
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
    l.close().unwrap();
    drop(l);

    // Altered on disk, the same length: the hash it names no longer matches (or its content
    // differs): the writer folds the log instead, and verify names the snapshot.
    let db = custos_tests::raw_sled(dir.path());
    let key = db.scan_prefix(b"Mwrite-model/").map(|r| r.unwrap().0).next().expect("a write-model snapshot in sled");
    let original = db.get(&key).unwrap().unwrap().to_vec();
    let mut value = original.clone();
    value[3] ^= 0x01;
    db.insert(&key, value).unwrap();
    db.flush().unwrap();
    drop(db);
    let l = ledger(dir.path());
    assert_eq!(l.write_model_snapshot_seq().unwrap(), None, "a snapshot naming another hash is not used");
    assert_eq!(l.write_model().unwrap(), folded_model(&l));
    let report = l.verify(None, &mut |_, _| {}).unwrap();
    let found: Vec<&str> = report.discrepancies.iter().map(|d| d.what.as_str()).collect();
    assert!(found.iter().any(|w| w.contains("write-model snapshot") && w.contains("another log")), "{found:?}");
    l.close().unwrap();
    drop(l);
    // Its content altered, its hash intact (the USD of all withdrawals, the last field): a
    // writer would decide from it, and verify says it differs from the log.
    let db = custos_tests::raw_sled(dir.path());
    let mut value = original;
    *value.last_mut().unwrap() ^= 0x01;
    db.insert(&key, value).unwrap();
    db.flush().unwrap();
    drop(db);
    let l = ledger(dir.path());
    assert_eq!(l.write_model_snapshot_seq().unwrap(), snapshot, "its hash is intact: it would be used");
    let report = l.verify(None, &mut |_, _| {}).unwrap();
    let found: Vec<&str> = report.discrepancies.iter().map(|d| d.what.as_str()).collect();
    assert!(found.iter().any(|w| w.contains("write-model snapshot") && w.contains("differs")), "{found:?}");
    // A rebuild drops it; the next writer folds the log and leaves a fresh one.
    l.rebuild_all(&["balances", "losses"], &mut |_, _| {}).unwrap();
    assert_eq!(l.write_model_snapshot_seq().unwrap(), None);
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
}
