//! Model-based property test: random command sequences (valid and invalid, with restarts that
//! close and reopen the ledger) applied to the real crates and to a tiny reference ledger
//! written from DESIGN.md alone, compared after every step: the outcome (seq, idempotent
//! replay, or which rule refused it), every balance, and the loss totals.
//!
//! Cases: `PROPTEST_CASES` (default 48). Failing seeds are printed by proptest and persisted
//! under `tests/proptest-regressions/`.

use std::collections::{BTreeMap, HashMap};

use custos_domain::{Command, CommandBody, Timestamp};
use custos_ledger::{Ledger, LedgerConfig, Outcome};
use custos_tests::{deposit, reference, resume, suspend, withdraw, Backend};
use proptest::prelude::*;
use rust_decimal::Decimal;

const ACCOUNTS: [&str; 3] = ["acct-a", "acct-b", "acct-c"];
const ASSETS: [&str; 3] = ["ETH", "BTC", "USDC"];

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        id: u8,
        acct: u8,
        asset: u8,
        cents: u32,
        dt: i8,
    },
    Withdraw {
        id: u8,
        acct: u8,
        asset: u8,
        cents: u32,
        unauthorized: bool,
        usd: u32,
        dt: i8,
    },
    Reverse {
        id: u8,
        target: u8,
        dt: i8,
    },
    Reimburse {
        id: u8,
        target: u8,
        dt: i8,
    },
    Flag {
        id: u8,
        target: u8,
        dt: i8,
    },
    Suspend {
        id: u8,
        dt: i8,
    },
    Resume {
        id: u8,
        dt: i8,
    },
    /// Send an earlier command again, unchanged.
    Resend {
        nth: u8,
    },
    /// Close the ledger and open it again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u8..60;
    let dt = -3i8..20;
    prop_oneof![
        5 => (id.clone(), 0u8..3, 0u8..3, 1u32..5_000, dt.clone()).prop_map(|(id, acct, asset, cents, dt)| Op::Deposit { id, acct, asset, cents, dt }),
        5 => (id.clone(), 0u8..3, 0u8..3, 1u32..5_000, any::<bool>(), 0u32..100_000, dt.clone())
            .prop_map(|(id, acct, asset, cents, unauthorized, usd, dt)| Op::Withdraw { id, acct, asset, cents, unauthorized, usd, dt }),
        2 => (id.clone(), 0u8..60, dt.clone()).prop_map(|(id, target, dt)| Op::Reverse { id, target, dt }),
        2 => (id.clone(), 0u8..60, dt.clone()).prop_map(|(id, target, dt)| Op::Reimburse { id, target, dt }),
        2 => (id.clone(), 0u8..60, dt.clone()).prop_map(|(id, target, dt)| Op::Flag { id, target, dt }),
        1 => (id.clone(), dt.clone()).prop_map(|(id, dt)| Op::Suspend { id, dt }),
        1 => (id, dt).prop_map(|(id, dt)| Op::Resume { id, dt }),
        1 => any::<u8>().prop_map(|nth| Op::Resend { nth }),
        1 => Just(Op::Restart),
    ]
}

/// What the reference says happened to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    Appended(u64),
    Duplicate(u64),
    Refused(&'static str),
}

#[derive(Debug, Clone)]
struct W {
    acct: String,
    asset: String,
    amount: Decimal,
    usd: Decimal,
    marker: bool,
    flagged: bool,
    reversed: bool,
    reimbursed: Decimal,
}

/// The reference ledger: DESIGN.md's rules over plain maps.
#[derive(Default)]
struct Reference {
    seq: u64,
    ids: HashMap<String, (u64, Command)>,
    last_time: HashMap<String, Timestamp>,
    balances: BTreeMap<(String, String), Decimal>,
    withdrawals: HashMap<String, W>,
    suspensions: Vec<(Timestamp, Option<Timestamp>)>,
    // Loss sums per asset: attempted, prevented, reimbursed, in units then USD.
    losses: BTreeMap<String, [Decimal; 6]>,
}

impl Reference {
    fn apply(&mut self, c: &Command) -> Said {
        let id = c.id.as_str().to_string();
        if let Some((seq, prev)) = self.ids.get(&id) {
            return if prev == c { Said::Duplicate(*seq) } else { Said::Refused("id_reused_with_different_content") };
        }
        let at = c.occurred_at.expect("tests give times");
        let stream = match &c.body {
            CommandBody::Deposit { account, .. } | CommandBody::Withdraw { account, .. } => account.to_string(),
            CommandBody::Reverse { withdrawal, .. }
            | CommandBody::Reimburse { withdrawal, .. }
            | CommandBody::Flag { withdrawal, .. } => match self.withdrawals.get(withdrawal.as_str()) {
                Some(w) => w.acct.clone(),
                None => return Said::Refused("unknown_withdrawal"),
            },
            _ => "$ledger".to_string(),
        };
        if self.last_time.get(&stream).is_some_and(|last| at < *last) {
            return Said::Refused("occurred_before_stream_head");
        }
        let in_suspension =
            |s: &[(Timestamp, Option<Timestamp>)]| s.iter().any(|(a, b)| *a <= at && b.is_none_or(|b| at < b));
        match &c.body {
            CommandBody::Deposit { account, asset, amount, .. } => {
                *self.balances.entry((account.to_string(), asset.to_string())).or_default() += amount.value();
            }
            CommandBody::Withdraw { account, asset, amount, usd_value, unauthorized, .. } => {
                if in_suspension(&self.suspensions) {
                    return Said::Refused("withdrawal_during_suspension");
                }
                let b = self.balances.entry((account.to_string(), asset.to_string())).or_default();
                if *b < amount.value() {
                    return Said::Refused("insufficient_balance");
                }
                *b -= amount.value();
                self.withdrawals.insert(
                    id.clone(),
                    W {
                        acct: account.to_string(),
                        asset: asset.to_string(),
                        amount: amount.value(),
                        usd: usd_value.map(|u| u.value()).unwrap_or_default(),
                        marker: *unauthorized,
                        flagged: false,
                        reversed: false,
                        reimbursed: Decimal::ZERO,
                    },
                );
                if *unauthorized {
                    let l = self.losses.entry(asset.to_string()).or_default();
                    l[0] += amount.value();
                    l[3] += usd_value.map(|u| u.value()).unwrap_or_default();
                }
            }
            CommandBody::Reverse { withdrawal, .. } => {
                let w = self.withdrawals.get_mut(withdrawal.as_str()).expect("checked");
                if w.reversed {
                    return Said::Refused("already_reversed");
                }
                if w.reimbursed > Decimal::ZERO {
                    return Said::Refused("reversal_after_reimbursement");
                }
                w.reversed = true;
                *self.balances.entry((w.acct.clone(), w.asset.clone())).or_default() += w.amount;
                if w.marker || w.flagged {
                    let l = self.losses.entry(w.asset.clone()).or_default();
                    l[1] += w.amount;
                    l[4] += w.usd;
                }
            }
            CommandBody::Reimburse { withdrawal, .. } => {
                let w = self.withdrawals.get_mut(withdrawal.as_str()).expect("checked");
                if !(w.marker || w.flagged) {
                    return Said::Refused("reimbursement_of_authorized_withdrawal");
                }
                if w.reversed {
                    return Said::Refused("reimbursement_after_reversal");
                }
                let left = w.amount - w.reimbursed;
                if left.is_zero() {
                    return Said::Refused("already_fully_reimbursed");
                }
                w.reimbursed += left;
                *self.balances.entry((w.acct.clone(), w.asset.clone())).or_default() += left;
                let l = self.losses.entry(w.asset.clone()).or_default();
                l[2] += left;
                l[5] += w.usd;
            }
            CommandBody::Flag { withdrawal, .. } => {
                let w = self.withdrawals.get_mut(withdrawal.as_str()).expect("checked");
                if w.marker {
                    return Said::Refused("flag_of_withdrawal_marked_unauthorized");
                }
                if w.flagged {
                    return Said::Refused("already_flagged");
                }
                w.flagged = true;
                let l = self.losses.entry(w.asset.clone()).or_default();
                l[0] += w.amount;
                l[3] += w.usd;
                if w.reversed {
                    l[1] += w.amount;
                    l[4] += w.usd;
                }
            }
            CommandBody::SuspendWithdrawals { .. } => {
                if self.suspensions.last().is_some_and(|s| s.1.is_none()) {
                    return Said::Refused("already_suspended");
                }
                self.suspensions.push((at, None));
            }
            CommandBody::ResumeWithdrawals => match self.suspensions.last_mut() {
                Some(s) if s.1.is_none() => s.1 = Some(at),
                _ => return Said::Refused("not_suspended"),
            },
        }
        self.seq += 1;
        self.last_time.insert(stream, at);
        self.ids.insert(id, (self.seq, c.clone()));
        Said::Appended(self.seq)
    }
}

fn said(o: &Outcome) -> Said {
    match o {
        Ok(a) if a.duplicate => Said::Duplicate(a.seq),
        Ok(a) => Said::Appended(a.seq),
        Err(r) => Said::Refused(r.code()),
    }
}

fn open(location: &str) -> Ledger {
    Ledger::open_at(
        location,
        LedgerConfig { checkpoint_every: 7, balances_checkpoint_multiple: 1, holder: "model test".into() },
    )
    .expect("opens")
}

fn compare(ledger: &Ledger, model: &Reference, step: usize) -> Result<(), TestCaseError> {
    let bound = ledger.bound(None, None, None).unwrap();
    let real: BTreeMap<(String, String), Decimal> = ledger
        .balances_at(&bound)
        .unwrap()
        .rows(None, None, false)
        .into_iter()
        .map(|r| ((r.account.to_string(), r.asset.to_string()), r.balance))
        .collect();
    let want: BTreeMap<(String, String), Decimal> =
        model.balances.iter().filter(|(_, b)| !b.is_zero()).map(|(k, v)| (k.clone(), *v)).collect();
    prop_assert_eq!(&real, &want, "balances after step {}", step);
    let losses = ledger.losses_at(&bound).unwrap();
    for (asset, want) in &model.losses {
        let c = losses.by_asset().iter().find(|(a, _)| a.as_str() == asset).map(|(_, c)| *c).unwrap_or_default();
        let got = [c.attempted, c.prevented, c.reimbursed, c.attempted_usd, c.prevented_usd, c.reimbursed_usd];
        prop_assert_eq!(&got, want, "losses of {} after step {}", asset, step);
    }
    Ok(())
}

fn build(op: &Op, clock: &mut Timestamp, model: &Reference, sent: &[Command]) -> Option<Command> {
    let mut tick = |dt: i8| {
        *clock = Timestamp::from_nanos(clock.nanos() + i64::from(dt) * 60_000_000_000);
        clock.to_rfc3339()
    };
    let ident = |n: u8| format!("c{n}");
    let amount = |cents: u32| (Decimal::from(cents) / Decimal::from(100)).normalize().to_string();
    // A withdrawal the model knows, or a made-up id when there is none.
    let target = |n: u8| {
        let mut ids: Vec<&String> = model.withdrawals.keys().collect();
        ids.sort();
        if ids.is_empty() || n.is_multiple_of(7) {
            format!("w-missing-{n}")
        } else {
            ids[n as usize % ids.len()].clone()
        }
    };
    Some(match op {
        Op::Deposit { id, acct, asset, cents, dt } => {
            deposit(&ident(*id), &tick(*dt), ACCOUNTS[*acct as usize], ASSETS[*asset as usize], &amount(*cents))
        }
        Op::Withdraw { id, acct, asset, cents, unauthorized, usd, dt } => withdraw(
            &ident(*id),
            &tick(*dt),
            ACCOUNTS[*acct as usize],
            ASSETS[*asset as usize],
            &amount(*cents),
            Some(&amount(*usd)),
            *unauthorized,
        ),
        Op::Reverse { id, target: t, dt } => reference("reverse", &ident(*id), &tick(*dt), &target(*t)),
        Op::Reimburse { id, target: t, dt } => reference("reimburse", &ident(*id), &tick(*dt), &target(*t)),
        Op::Flag { id, target: t, dt } => reference("flag", &ident(*id), &tick(*dt), &target(*t)),
        Op::Suspend { id, dt } => suspend(&ident(*id), &tick(*dt)),
        Op::Resume { id, dt } => resume(&ident(*id), &tick(*dt)),
        Op::Resend { nth } => {
            if sent.is_empty() {
                return None;
            }
            sent[*nth as usize % sent.len()].clone()
        }
        Op::Restart => return None,
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_reference_after_every_step_on_sled(ops in proptest::collection::vec(op(), 1..70)) {
        agrees(Backend::Sled, &ops)?;
    }
}

proptest! {
    // A database per case costs more than a folder: a quarter of the cases (PROPTEST_CASES
    // raises both).
    #![proptest_config(ProptestConfig { cases: (cases() / 4).max(4), ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_agrees_with_the_reference_after_every_step_on_postgres(ops in proptest::collection::vec(op(), 1..70)) {
        agrees(Backend::Postgres, &ops)?;
    }
}

fn agrees(backend: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let place = backend.fresh();
    let mut ledger = Some(open(&place.location));
    let mut model = Reference::default();
    let mut clock = custos_tests::t("2022-01-01T00:00:00Z");
    let mut sent: Vec<Command> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        if let Op::Restart = op {
            ledger.take().unwrap().close().unwrap();
            ledger = Some(open(&place.location));
            compare(ledger.as_ref().unwrap(), &model, step)?;
            continue;
        }
        let Some(command) = build(op, &mut clock, &model, &sent) else { continue };
        let want = model.apply(&command);
        let got = ledger.as_ref().unwrap().submit_batch_blocking(vec![command.clone()]).unwrap().pop().unwrap();
        prop_assert_eq!(said(&got), want, "step {}: {:?}", step, command);
        sent.push(command);
        compare(ledger.as_ref().unwrap(), &model, step)?;
    }
    let l = ledger.unwrap();
    let report = l.verify(None, &mut |_, _| {}).unwrap();
    prop_assert!(report.clean(), "verify: {:?}", report.discrepancies);
    Ok(())
}
