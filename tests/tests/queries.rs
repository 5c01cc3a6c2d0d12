//! Point-in-time answers against a from-scratch fold written here from DESIGN.md's semantics:
//! random logs (backfilled `recorded_at` included), random `(as_of, known_at)` pairs and seqs;
//! incremental state == rebuilt state == checkpoint + replay; the bitemporal flag rule.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use custos_domain::{Command, CommandBody, Envelope, Event, Timestamp};
use custos_ledger::{Bound, Classified, Ledger, LedgerConfig, ReplayOrder};
use custos_tests::{deposit, reference, t, withdraw, Backend};
use proptest::prelude::*;
use rust_decimal::Decimal;

const ACCOUNTS: [&str; 4] = ["acct-a", "acct-b", "acct-c", "acct-d"];
const ASSETS: [&str; 3] = ["ETH", "BTC", "SOL"];
const MINUTE: i64 = 60_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    Deposit(u8, u8, u32),
    Withdraw(u8, u8, u32, bool),
    Reverse(u8),
    Reimburse(u8, bool),
    Flag(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, 0u8..3, 1u32..10_000).prop_map(|(a, s, n)| Step::Deposit(a, s, n)),
        4 => (0u8..4, 0u8..3, 1u32..4_000, any::<bool>()).prop_map(|(a, s, n, u)| Step::Withdraw(a, s, n, u)),
        1 => any::<u8>().prop_map(Step::Reverse),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(w, half)| Step::Reimburse(w, half)),
        2 => any::<u8>().prop_map(Step::Flag),
    ]
}

/// A log: steps with, per step, how far valid time moves and how far behind `recorded_at` lags
/// (a large lag is a backfill: the event is recorded long after it happened).
fn log() -> impl Strategy<Value = Vec<(Step, u16, u16)>> {
    proptest::collection::vec((step(), 0u16..120, prop_oneof![8 => 0u16..5, 1 => 100u16..3000]), 1..60)
}

fn build(ledger: &Ledger, steps: &[(Step, u16, u16)]) {
    let mut valid = t("2022-01-01T00:00:00Z").nanos();
    let mut recorded = valid;
    let mut withdrawals: Vec<String> = Vec::new();
    for (i, (s, dv, lag)) in steps.iter().enumerate() {
        valid += i64::from(*dv) * MINUTE;
        // recorded_at is non-decreasing and never before occurred_at.
        recorded = recorded.max(valid + i64::from(*lag) * MINUTE);
        let at = Timestamp::from_nanos(valid).to_rfc3339();
        let id = format!("e{i}");
        let pick =
            |n: u8| withdrawals.get(n as usize % withdrawals.len().max(1)).cloned().unwrap_or_else(|| "none".into());
        let mut c: Command = match s {
            Step::Deposit(a, s, n) => deposit(&id, &at, ACCOUNTS[*a as usize], ASSETS[*s as usize], &cents(*n)),
            Step::Withdraw(a, s, n, u) => {
                withdrawals.push(id.clone());
                withdraw(&id, &at, ACCOUNTS[*a as usize], ASSETS[*s as usize], &cents(*n), Some(&cents(*n * 7)), *u)
            }
            Step::Reverse(w) => reference("reverse", &id, &at, &pick(*w)),
            Step::Reimburse(w, half) => {
                let mut c = reference("reimburse", &id, &at, &pick(*w));
                if *half {
                    if let CommandBody::Reimburse { amount, .. } = &mut c.body {
                        *amount = Some(Decimal::new(1, 2));
                    }
                }
                c
            }
            Step::Flag(w) => reference("flag", &id, &at, &pick(*w)),
        };
        c.recorded_at = Some(Timestamp::from_nanos(recorded));
        // Rejected commands (overdrafts, stream order, unknown references) simply do not enter.
        let _ = ledger.submit_batch_blocking(vec![c]).unwrap();
    }
}

fn cents(n: u32) -> String {
    (Decimal::from(n) / Decimal::from(100)).normalize().to_string()
}

fn envelopes(ledger: &Ledger) -> Vec<Envelope> {
    let mut out = Vec::new();
    ledger
        .for_each_envelope(1, |e| {
            out.push(e);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

type Key = (String, String);

/// DESIGN.md's balance over the counted events, directly.
fn expected_balances(log: &[Envelope], counts: impl Fn(&Envelope) -> bool) -> BTreeMap<Key, Decimal> {
    let mut out: BTreeMap<Key, Decimal> = BTreeMap::new();
    for e in log.iter().filter(|e| counts(e)) {
        let sign = match e.event {
            Event::Deposited { .. } | Event::Reversed { .. } | Event::Reimbursed { .. } => Decimal::ONE,
            Event::Withdrawn { .. } => Decimal::NEGATIVE_ONE,
            _ => continue,
        };
        let (asset, amount) = e.event.asset_amount().unwrap();
        *out.entry((e.stream.to_string(), asset.to_string())).or_default() += sign * amount.value();
    }
    out.retain(|_, v| !v.is_zero());
    out
}

/// DESIGN.md's loss columns per asset: [attempted, prevented, reimbursed] in units then USD.
fn expected_losses(log: &[Envelope], as_of: Timestamp, known_seq: u64) -> BTreeMap<String, [Decimal; 6]> {
    let known: Vec<&Envelope> = log.iter().filter(|e| e.seq <= known_seq).collect();
    let flagged: HashSet<u64> = known
        .iter()
        .filter_map(|e| match &e.event {
            Event::WithdrawalFlagged(f) => Some(f.withdrawal_seq),
            _ => None,
        })
        .collect();
    let marked: HashSet<u64> = known
        .iter()
        .filter(|e| matches!(e.event, Event::Withdrawn { unauthorized: true, .. }))
        .map(|e| e.seq)
        .collect();
    let unauthorized = |seq: u64| flagged.contains(&seq) || marked.contains(&seq);
    let mut out: BTreeMap<String, [Decimal; 6]> = BTreeMap::new();
    for e in known.iter().filter(|e| e.occurred_at <= as_of) {
        let usd = e.event.usd_value().map(|u| u.value()).unwrap_or_default();
        let (col, amount, asset) = match &e.event {
            Event::Withdrawn { asset, amount, .. } if unauthorized(e.seq) => (0, amount.value(), asset),
            Event::Reversed { asset, amount, withdrawal_seq, .. } if unauthorized(*withdrawal_seq) => {
                (1, amount.value(), asset)
            }
            Event::Reimbursed { asset, amount, .. } => (2, amount.value(), asset),
            _ => continue,
        };
        let row = out.entry(asset.to_string()).or_default();
        row[col] += amount;
        row[col + 3] += usd;
    }
    out
}

fn actual_balances(ledger: &Ledger, bound: &Bound) -> BTreeMap<Key, Decimal> {
    ledger
        .balances_at(bound)
        .unwrap()
        .rows(None, None, false)
        .into_iter()
        .map(|r| ((r.account.to_string(), r.asset.to_string()), r.balance))
        .collect()
}

fn actual_losses(ledger: &Ledger, bound: &Bound) -> BTreeMap<String, [Decimal; 6]> {
    ledger
        .losses_at(bound)
        .unwrap()
        .by_asset()
        .iter()
        .map(|(a, c)| {
            (
                a.to_string(),
                [c.attempted, c.prevented, c.reimbursed, c.attempted_usd, c.prevented_usd, c.reimbursed_usd],
            )
        })
        .filter(|(_, v)| v.iter().any(|d| !d.is_zero()))
        .collect()
}

/// The seq of the withdrawal an event concerns (its own for a withdrawal).
fn concerned(log: &[Envelope], seq: u64) -> Option<u64> {
    match &log[(seq - 1) as usize].event {
        Event::Withdrawn { .. } => Some(seq),
        Event::Reversed { withdrawal_seq, .. } | Event::Reimbursed { withdrawal_seq, .. } => Some(*withdrawal_seq),
        Event::WithdrawalFlagged(f) => Some(f.withdrawal_seq),
        _ => None,
    }
}

/// DESIGN.md: a withdrawal is known unauthorized from its own `recorded_at` if it was marked,
/// else from its first flag's, among the events recorded up to `known_seq`.
fn expected_classification(log: &[Envelope], known_seq: u64) -> BTreeMap<u64, (Timestamp, Classified)> {
    let mut out = BTreeMap::new();
    for e in log.iter().filter(|e| e.seq <= known_seq) {
        match &e.event {
            Event::Withdrawn { unauthorized: true, .. } => {
                out.insert(e.seq, (e.recorded_at, Classified::Marked));
            }
            Event::WithdrawalFlagged(f) => {
                out.entry(f.withdrawal_seq).or_insert((e.recorded_at, Classified::Flagged));
            }
            _ => {}
        }
    }
    out
}

/// Loss columns per report group (ETH, BTC, misc: SOL here), as `expected_losses` gives them per
/// asset: units for ETH and BTC, USD only for misc.
fn by_group(rows: &[custos_projection::LossRow]) -> BTreeMap<String, [Decimal; 6]> {
    rows.iter()
        .filter(|r| r.group != "total")
        .map(|r| {
            let c = &r.cols;
            (
                r.group.clone(),
                [c.attempted, c.prevented, c.reimbursed, c.attempted_usd, c.prevented_usd, c.reimbursed_usd],
            )
        })
        .filter(|(_, v)| v.iter().any(|d| !d.is_zero()))
        .collect()
}

fn expected_by_group(per_asset: BTreeMap<String, [Decimal; 6]>) -> BTreeMap<String, [Decimal; 6]> {
    let mut out: BTreeMap<String, [Decimal; 6]> = BTreeMap::new();
    for (asset, v) in per_asset {
        let (group, units) = match asset.as_str() {
            "ETH" | "BTC" => (asset.clone(), true),
            _ => ("misc".to_string(), false),
        };
        let row = out.entry(group).or_default();
        for i in 0..6 {
            if units || i >= 3 {
                row[i] += v[i];
            }
        }
    }
    out.retain(|_, v| v.iter().any(|d| !d.is_zero()));
    out
}

/// A replay in recorded order: the window's events and the flags of its withdrawals, plus
/// anything else recorded between the first of them and the last that changes the loss totals
/// as of the window's end, in seq order; after each row, the loss totals as of the window's
/// end over the log up to that row (the first totals: up to just before the first row).
fn recorded_order_replay_agrees(
    ledger: &Ledger,
    log: &[Envelope],
    from: Timestamp,
    to: Timestamp,
    window: &Bound,
) -> Result<(), TestCaseError> {
    let (start, rows) = ledger.replay(from, to, window, ReplayOrder::Recorded).unwrap();
    let known: Vec<Envelope> = log.iter().filter(|e| e.seq <= window.known_seq).cloned().collect();
    let in_window = |t: Timestamp| t >= from && t <= to;
    let fact = |e: &Envelope| {
        in_window(e.occurred_at)
            || matches!(&e.event, Event::WithdrawalFlagged(f) if in_window(f.withdrawal_occurred_at))
    };
    // What can change a loss total as of `to` (DESIGN.md): a marked withdrawal, a reversal or
    // a reimbursement by then, a flag of a withdrawal by then.
    let changes_losses = |e: &Envelope| match &e.event {
        Event::WithdrawalFlagged(f) => f.withdrawal_occurred_at <= to,
        Event::Withdrawn { unauthorized: true, .. } | Event::Reversed { .. } | Event::Reimbursed { .. } => {
            e.occurred_at <= to
        }
        _ => false,
    };
    let facts: Vec<u64> = known.iter().filter(|e| fact(e)).map(|e| e.seq).collect();
    let (Some(&first), Some(&last)) = (facts.first(), facts.last()) else {
        prop_assert!(rows.is_empty());
        return Ok(());
    };
    let want_seqs: Vec<u64> = known
        .iter()
        .filter(|e| fact(e) || (e.seq > first && e.seq <= last && changes_losses(e)))
        .map(|e| e.seq)
        .collect();
    prop_assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), want_seqs, "recorded replay {} .. {}", from, to);
    let upto = |n: u64| known.iter().filter(|e| e.seq <= n).cloned().collect::<Vec<_>>();
    prop_assert_eq!(by_group(&start), expected_by_group(expected_losses(&upto(first - 1), to, u64::MAX)));
    for r in &rows {
        prop_assert_eq!(
            by_group(&r.totals),
            expected_by_group(expected_losses(&upto(r.seq), to, u64::MAX)),
            "totals after seq {} in recorded replay {} .. {}",
            r.seq,
            from,
            to
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn point_in_time_answers_equal_a_fold_of_the_counted_events_on_sled(
        steps in log(),
        every in 2u64..9,
        probes in proptest::collection::vec((any::<u16>(), any::<u16>()), 12),
    ) {
        answers_equal_a_fold(Backend::Sled, &steps, every, &probes)?;
    }
}

proptest! {
    // A database per case costs more than a folder: a quarter of the cases.
    #![proptest_config(ProptestConfig { cases: (cases() / 4).max(4), ..ProptestConfig::default() })]

    #[test]
    fn point_in_time_answers_equal_a_fold_of_the_counted_events_on_postgres(
        steps in log(),
        every in 2u64..9,
        probes in proptest::collection::vec((any::<u16>(), any::<u16>()), 12),
    ) {
        answers_equal_a_fold(Backend::Postgres, &steps, every, &probes)?;
    }
}

fn answers_equal_a_fold(
    backend: Backend,
    steps: &[(Step, u16, u16)],
    every: u64,
    probes: &[(u16, u16)],
) -> Result<(), TestCaseError> {
    let place = backend.fresh();
    let config = || LedgerConfig {
        checkpoint_every: every,
        balances_checkpoint_multiple: 1 + every % 3,
        holder: "query test".into(),
    };
    let ledger = place.open(config());
    build(&ledger, steps);
    let log = envelopes(&ledger);
    if log.is_empty() {
        return Ok(());
    }
    let (lo, hi) = (log.iter().map(|e| e.occurred_at.nanos()).min().unwrap(), log.last().unwrap().recorded_at.nanos());
    let span = (hi - lo).max(1);
    let moment =
        |x: u16| Timestamp::from_nanos(lo - MINUTE + (i128::from(x) * i128::from(span + 2 * MINUTE) / 65_535) as i64);
    for &(a, k) in probes {
        let (as_of, known_at) = (moment(a), moment(k));
        let bound = ledger.bound(Some(as_of), Some(known_at), None).unwrap();
        let counts = |e: &Envelope| e.occurred_at <= as_of && e.recorded_at <= known_at;
        prop_assert_eq!(
            bound.known_seq,
            log.iter().filter(|e| e.recorded_at <= known_at).map(|e| e.seq).max().unwrap_or(0)
        );
        prop_assert_eq!(
            actual_balances(&ledger, &bound),
            expected_balances(&log, counts),
            "balances as_of {} known_at {}",
            as_of,
            known_at
        );
        prop_assert_eq!(
            actual_losses(&ledger, &bound),
            expected_losses(&log, as_of, bound.known_seq),
            "losses as_of {} known_at {}",
            as_of,
            known_at
        );
        // One account from its own stream agrees with the full answer.
        let acct = custos_tests::account(ACCOUNTS[(a % 4) as usize]);
        let one: BTreeMap<Key, Decimal> = ledger
            .account_balances_at(&acct, &bound)
            .unwrap()
            .rows(None, None, false)
            .into_iter()
            .map(|r| ((r.account.to_string(), r.asset.to_string()), r.balance))
            .collect();
        let all = expected_balances(&log, counts);
        let want: BTreeMap<Key, Decimal> = all.into_iter().filter(|((acc, _), _)| acc == acct.as_str()).collect();
        prop_assert_eq!(one, want);
        // At a seq: the log as it stood right after it.
        let n = u64::from(k) % (log.len() as u64 + 1);
        let at_seq = ledger.bound(None, None, Some(n)).unwrap();
        prop_assert_eq!(actual_balances(&ledger, &at_seq), expected_balances(&log, |e| e.seq <= n));
        prop_assert_eq!(actual_losses(&ledger, &at_seq), expected_losses(&log, Timestamp::MAX, n));
        // A replay window ends on the totals as of its end.
        let (from, to) = if as_of <= known_at { (as_of, known_at) } else { (known_at, as_of) };
        let window = Bound { as_of: to, ..ledger.bound(None, None, None).unwrap() };
        let (start, rows) = ledger.replay(from, to, &window, ReplayOrder::Valid).unwrap();
        let classified = expected_classification(&log, window.known_seq);
        // Each row's balance is its account's after every event up to it in valid-time order.
        for r in &rows {
            let (Some(acct), Some(asset)) = (r.stream.account(), r.asset) else { continue };
            let upto = |e: &Envelope| e.seq <= window.known_seq && (e.occurred_at, e.seq) <= (r.occurred_at, r.seq);
            let want =
                expected_balances(&log, upto).get(&(acct.to_string(), asset.to_string())).copied().unwrap_or_default();
            prop_assert_eq!(r.balance_after, Some(want), "balance after seq {} in replay {} .. {}", r.seq, from, to);
        }
        for r in &rows {
            prop_assert_eq!(r.classified, concerned(&log, r.seq).and_then(|w| classified.get(&w).copied()));
        }
        let end = rows.last().map(|r| r.totals.clone()).unwrap_or_else(|| start.clone());
        prop_assert_eq!(end, ledger.losses_at(&window).unwrap().rows(false), "replay {} .. {}", from, to);
        recorded_order_replay_agrees(&ledger, &log, from, to, &window)?;
        // An account's history classifies its withdrawals the same way.
        for r in ledger.history(&acct, None, None, None, &bound).unwrap() {
            let known = expected_classification(&log, bound.known_seq);
            prop_assert_eq!(r.classified, concerned(&log, r.seq).and_then(|w| known.get(&w).copied()));
        }
    }
    // Incremental == rebuilt == checkpoint + replay, and checkpoints match a refold.
    let now = ledger.bound(None, None, None).unwrap();
    let before = (actual_balances(&ledger, &now), actual_losses(&ledger, &now));
    ledger.rebuild("balances", &mut |_, _| {}).unwrap();
    ledger.rebuild("losses", &mut |_, _| {}).unwrap();
    prop_assert_eq!(&(actual_balances(&ledger, &now), actual_losses(&ledger, &now)), &before);
    ledger.close().unwrap();
    drop(ledger);
    let reopened = place.open(config());
    prop_assert_eq!(&(actual_balances(&reopened, &now), actual_losses(&reopened, &now)), &before);
    let report = reopened.verify(None, &mut |_, _| {}).unwrap();
    prop_assert!(report.clean(), "{:?}", report.discrepancies);
    Ok(())
}

#[test]
fn a_withdrawal_flagged_later_is_unauthorized_only_as_known_after_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(
        dir.path(),
        LedgerConfig { checkpoint_every: 2, balances_checkpoint_multiple: 1, holder: "bitemporal".into() },
    )
    .unwrap();
    let with_rec = |mut c: Command, rec: &str| {
        c.recorded_at = Some(t(rec));
        l.submit_batch_blocking(vec![c]).unwrap().pop().unwrap().unwrap();
    };
    with_rec(deposit("d", "2022-01-17T10:00:00Z", "acct-v", "ETH", "10"), "2022-01-17T10:00:01Z");
    with_rec(withdraw("w", "2022-01-17T21:00:00Z", "acct-v", "ETH", "4", Some("12516"), false), "2022-01-17T21:00:01Z");
    with_rec(deposit("pad", "2022-01-18T01:00:00Z", "acct-x", "BTC", "1"), "2022-01-18T01:00:01Z");
    with_rec(reference("flag", "f", "2022-01-18T05:00:00Z", "w"), "2022-01-18T05:00:01Z");
    let as_of = t("2022-01-17T22:00:00Z"); // after the withdrawal, before the flag in valid time
    let attempted = |known_at: &str| {
        let b = l.bound(Some(as_of), Some(t(known_at)), None).unwrap();
        let losses = l.losses_at(&b).unwrap();
        let row = losses.rows(false).into_iter().find(|r| r.group == "ETH").unwrap();
        (row.cols.attempted, row.cols.attempted_usd, row.accounts_affected, b.as_of)
    };
    let (units, usd, accounts, a1) = attempted("2022-01-18T05:00:00Z");
    assert_eq!((units, usd, accounts), (Decimal::ZERO, Decimal::ZERO, 0), "not yet flagged");
    let (units, usd, accounts, a2) = attempted("2022-01-18T05:00:01Z");
    assert_eq!((units, usd, accounts), (Decimal::from(4), Decimal::from(12516), 1), "flagged from its recorded_at");
    assert_eq!(a1, a2, "as_of is unchanged");
    // And its balance effect does not depend on the classification.
    let b = l.bound(Some(as_of), Some(t("2022-01-18T05:00:00Z")), None).unwrap();
    assert_eq!(
        l.account_balances_at(&custos_tests::account("acct-v"), &b)
            .unwrap()
            .balance(&custos_tests::account("acct-v"), &custos_tests::asset("ETH")),
        Decimal::from(6)
    );
}

/// A replay in recorded order over the investigation: the window holds flags of withdrawals
/// made before it, and a flag recorded during it that says it happened before it. The totals
/// (as of the window's end) start from what was known before the first row and change only at
/// a row, the early-dated flag included.
#[test]
fn a_recorded_order_replay_changes_its_totals_only_at_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(
        dir.path(),
        LedgerConfig { checkpoint_every: 2, balances_checkpoint_multiple: 1, holder: "recorded order".into() },
    )
    .unwrap();
    let with_rec = |mut c: Command, rec: &str| {
        c.recorded_at = Some(t(rec));
        l.submit_batch_blocking(vec![c]).unwrap().pop().unwrap().unwrap();
    };
    with_rec(deposit("d0", "2022-01-17T10:00:00Z", "acct-v", "ETH", "10"), "2022-01-17T10:00:01Z");
    with_rec(deposit("d00", "2022-01-17T10:00:00Z", "acct-w", "ETH", "1"), "2022-01-17T10:00:02Z");
    with_rec(
        withdraw("w1", "2022-01-17T21:00:00Z", "acct-v", "ETH", "4", Some("12000"), false),
        "2022-01-17T21:00:01Z",
    );
    with_rec(withdraw("w2", "2022-01-17T22:00:00Z", "acct-w", "ETH", "1", Some("3000"), false), "2022-01-17T22:00:01Z");
    // The window 03:50 .. 08:00 on the 18th: a flag of w1 in it, a deposit, a flag of w2 dated
    // 03:40 (before the window) but recorded at 04:10, another deposit.
    with_rec(reference("flag", "f1", "2022-01-18T03:56:00Z", "w1"), "2022-01-18T03:56:01Z");
    with_rec(deposit("d1", "2022-01-18T04:00:00Z", "acct-x", "BTC", "1"), "2022-01-18T04:00:01Z");
    with_rec(reference("flag", "f2", "2022-01-18T03:40:00Z", "w2"), "2022-01-18T04:10:00Z");
    with_rec(deposit("d2", "2022-01-18T05:00:00Z", "acct-x", "BTC", "1"), "2022-01-18T05:00:01Z");
    let bound = l.bound(None, None, None).unwrap();
    let (start, rows) =
        l.replay(t("2022-01-18T03:50:00Z"), t("2022-01-18T08:00:00Z"), &bound, ReplayOrder::Recorded).unwrap();
    let usd = |rows: &[custos_projection::LossRow]| {
        rows.iter().find(|r| r.group == "total").unwrap().cols.attempted_usd.to_string()
    };
    assert_eq!(usd(&start), "0", "nothing was known unauthorized before the first row");
    let got: Vec<(String, String, bool)> =
        rows.iter().map(|r| (r.event_id.to_string(), usd(&r.totals), r.unauthorized)).collect();
    assert_eq!(
        got,
        [
            ("f1".to_string(), "12000".to_string(), true),
            ("d1".to_string(), "12000".to_string(), false),
            ("f2".to_string(), "15000".to_string(), true),
            ("d2".to_string(), "15000".to_string(), false),
        ]
    );
}
