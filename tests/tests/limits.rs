//! Exactness at the limits (DESIGN.md, "Exactness and limits"): amounts and USD values at,
//! near and past the largest quantity a `Decimal` keeps exactly at each scale, driven through
//! the real ledger (with restarts and tiny checkpoint intervals, so checkpoints hold them too)
//! and through a reference that counts in integer units, which cannot round. Every command is
//! appended exactly as the reference says or refused with the reference's reason; every balance
//! and loss total equals the reference's to the last unit; nothing panics (a writer or
//! projector that died would answer "writer has stopped" or fail the queries).
//!
//! Cases: `PROPTEST_CASES` (default 24).

use std::collections::{BTreeMap, HashMap};

use custos_domain::{Amount, Command, CommandBody, Usd};
use custos_ledger::{Ledger, LedgerConfig, Outcome};
use custos_tests::{account, asset, cmd, id};
use num_bigint::BigUint;
use proptest::prelude::*;
use rust_decimal::Decimal;

const ACCOUNTS: [&str; 2] = ["acct-a", "acct-b"];
const ASSETS: [&str; 3] = ["ETH", "BTC", "USDC"];
/// 2^96 - 1: the most units of 10^-scale a quantity of that scale holds exactly.
const UNITS_MAX: i128 = (1 << 96) - 1;

#[derive(Debug, Clone)]
enum Op {
    Deposit { acct: usize, asset: usize, units: i128 },
    Withdraw { acct: usize, asset: usize, units: i128, cents: Option<i128>, unauthorized: bool },
    Reverse { target: usize },
    Reimburse { target: usize, part: Option<u8> },
    Flag { target: usize },
    Restart,
}

/// Unit counts near the interesting places: tiny, a fraction of the limit, the limit itself,
/// and just past it.
fn units() -> impl Strategy<Value = i128> {
    prop_oneof![
        1 => 1i128..1_000,
        2 => (1i128..=12).prop_map(|k| UNITS_MAX / k),
        2 => (0i128..3).prop_map(|d| UNITS_MAX - d),
        1 => Just(UNITS_MAX / 11 + 1),
        1 => 1i128..1 << 90,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, units()).prop_map(|(acct, asset, units)| Op::Deposit { acct, asset, units }),
        4 => (0..2usize, 0..3usize, units(), proptest::option::of(units()), any::<bool>())
            .prop_map(|(acct, asset, units, cents, unauthorized)| Op::Withdraw { acct, asset, units, cents, unauthorized }),
        1 => (0..8usize).prop_map(|target| Op::Reverse { target }),
        2 => (0..8usize, proptest::option::of(1u8..=100)).prop_map(|(target, part)| Op::Reimburse { target, part }),
        1 => (0..8usize).prop_map(|target| Op::Flag { target }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone)]
struct W {
    acct: usize,
    asset: usize,
    units: i128,
    cents: Option<i128>,
    marked: bool,
    flagged: bool,
    reversed: bool,
    reimbursed: i128,
}

/// Loss sums of one asset: attempted, prevented, reimbursed in units, then in cents.
type LossSums = [i128; 6];

/// The reference: DESIGN.md's rules for these commands, counting in integer units.
#[derive(Default)]
struct Reference {
    balances: BTreeMap<(usize, usize), i128>,
    credited: HashMap<usize, i128>,
    withdrawn_cents: i128,
    withdrawals: Vec<(String, W)>,
    losses: BTreeMap<usize, LossSums>,
}

fn scale(asset: usize) -> u32 {
    [18, 8, 6][asset]
}

fn dec(units: i128, scale: u32) -> Decimal {
    Decimal::from_i128_with_scale(units, scale).normalize()
}

/// round(cents * part / whole), half up, in big integers.
fn share(cents: i128, part: i128, whole: i128) -> i128 {
    let (c, p, w) = (BigUint::from(cents as u128), BigUint::from(part as u128), BigUint::from(whole as u128));
    let q = (BigUint::from(2u8) * c * p + &w) / (BigUint::from(2u8) * w);
    i128::try_from(q).unwrap()
}

impl Reference {
    /// Credits `units` of `asset` to `acct` if both the balance and the asset's credited total
    /// stay within the limit; else the reason.
    fn credit_ok(&self, acct: usize, asset: usize, units: i128) -> Result<(), &'static str> {
        if self.balances.get(&(acct, asset)).copied().unwrap_or(0) + units > UNITS_MAX {
            return Err("amount_exceeds_balance_limit");
        }
        if self.credited.get(&asset).copied().unwrap_or(0) + units > UNITS_MAX {
            return Err("amount_exceeds_asset_total_limit");
        }
        Ok(())
    }

    fn credit(&mut self, acct: usize, asset: usize, units: i128) {
        *self.balances.entry((acct, asset)).or_default() += units;
        *self.credited.entry(asset).or_default() += units;
    }

    fn loss(&mut self, asset: usize, col: usize, units: i128, cents: Option<i128>) {
        let l = self.losses.entry(asset).or_default();
        l[col] += units;
        l[col + 3] += cents.unwrap_or(0);
    }

    /// What the ledger must answer: `Ok(())` appended, or the rejection code.
    fn apply(&mut self, op: &Op, ident: &str) -> Result<(), &'static str> {
        match *op {
            Op::Deposit { acct, asset, units } => {
                self.credit_ok(acct, asset, units)?;
                self.credit(acct, asset, units);
            }
            Op::Withdraw { acct, asset, units, cents, unauthorized } => {
                let b = self.balances.entry((acct, asset)).or_default();
                if *b < units {
                    return Err("insufficient_balance");
                }
                if cents.is_some_and(|c| self.withdrawn_cents + c > UNITS_MAX) {
                    return Err("usd_value_exceeds_total_limit");
                }
                *self.balances.get_mut(&(acct, asset)).unwrap() -= units;
                self.withdrawn_cents += cents.unwrap_or(0);
                let w = W {
                    acct,
                    asset,
                    units,
                    cents,
                    marked: unauthorized,
                    flagged: false,
                    reversed: false,
                    reimbursed: 0,
                };
                self.withdrawals.push((ident.to_string(), w));
                if unauthorized {
                    self.loss(asset, 0, units, cents);
                }
            }
            Op::Reverse { target } => {
                let n = self.withdrawals.len();
                let w = self.withdrawals.get(target % n.max(1)).ok_or("unknown_withdrawal")?.1.clone();
                if w.reversed {
                    return Err("already_reversed");
                }
                if w.reimbursed > 0 {
                    return Err("reversal_after_reimbursement");
                }
                self.credit_ok(w.acct, w.asset, w.units)?;
                self.credit(w.acct, w.asset, w.units);
                self.withdrawals[target % n].1.reversed = true;
                if w.marked || w.flagged {
                    self.loss(w.asset, 1, w.units, w.cents);
                }
            }
            Op::Reimburse { target, part } => {
                let n = self.withdrawals.len();
                let w = self.withdrawals.get(target % n.max(1)).ok_or("unknown_withdrawal")?.1.clone();
                if !(w.marked || w.flagged) {
                    return Err("reimbursement_of_authorized_withdrawal");
                }
                if w.reversed {
                    return Err("reimbursement_after_reversal");
                }
                let left = w.units - w.reimbursed;
                if left == 0 {
                    return Err("already_fully_reimbursed");
                }
                let units = part.map_or(left, |p| (left * i128::from(p) / 100).max(1));
                self.credit_ok(w.acct, w.asset, units)?;
                self.credit(w.acct, w.asset, units);
                let cents = w.cents.map(|c| share(c, w.reimbursed + units, w.units) - share(c, w.reimbursed, w.units));
                self.withdrawals[target % n].1.reimbursed += units;
                self.loss(w.asset, 2, units, cents);
            }
            Op::Flag { target } => {
                let n = self.withdrawals.len();
                let w = self.withdrawals.get(target % n.max(1)).ok_or("unknown_withdrawal")?.1.clone();
                if w.marked {
                    return Err("flag_of_withdrawal_marked_unauthorized");
                }
                if w.flagged {
                    return Err("already_flagged");
                }
                self.withdrawals[target % n].1.flagged = true;
                self.loss(w.asset, 0, w.units, w.cents);
                if w.reversed {
                    self.loss(w.asset, 1, w.units, w.cents);
                }
            }
            Op::Restart => {}
        }
        Ok(())
    }
}

fn amount(units: i128, asset_ix: usize) -> Amount {
    Amount::new(dec(units, scale(asset_ix)), &asset(ASSETS[asset_ix])).expect("positive, within scale")
}

/// The command for `op`; `None` for a restart. Reference commands name withdrawals the
/// reference knows (or a missing one while there are none).
fn command(op: &Op, ident: &str, at: &str, model: &Reference) -> Option<Command> {
    let target = |t: usize| match model.withdrawals.len() {
        0 => id("w-missing"),
        n => id(&model.withdrawals[t % n].0),
    };
    let body = match *op {
        Op::Deposit { acct, asset: a, units } => CommandBody::Deposit {
            account: account(ACCOUNTS[acct]),
            asset: asset(ASSETS[a]),
            amount: amount(units, a),
            usd_value: None,
        },
        Op::Withdraw { acct, asset: a, units, cents, unauthorized } => CommandBody::Withdraw {
            account: account(ACCOUNTS[acct]),
            asset: asset(ASSETS[a]),
            amount: amount(units, a),
            usd_value: cents.map(|c| Usd::new(dec(c, 2)).expect("cents")),
            unauthorized,
            destination: None,
            auth_factor: None,
        },
        Op::Reverse { target: t } => {
            CommandBody::Reverse { withdrawal: target(t), account: None, asset: None, amount: None }
        }
        Op::Reimburse { target: t, part } => {
            let amount = part.and_then(|p| {
                let (_, w) = model.withdrawals.get(t % model.withdrawals.len().max(1))?;
                let left = w.units - w.reimbursed;
                (left > 0).then(|| dec((left * i128::from(p) / 100).max(1), scale(w.asset)))
            });
            CommandBody::Reimburse { withdrawal: target(t), account: None, asset: None, amount }
        }
        Op::Flag { target: t } => CommandBody::Flag { withdrawal: target(t), account: None, asset: None },
        Op::Restart => return None,
    };
    Some(cmd(ident, at, body))
}

fn open(dir: &std::path::Path) -> Ledger {
    let config = LedgerConfig { checkpoint_every: 3, balances_checkpoint_multiple: 2, holder: "limits test".into() };
    Ledger::open(dir, config).expect("opens")
}

fn said(o: &Outcome) -> Result<(), &'static str> {
    match o {
        Ok(a) if !a.duplicate => Ok(()),
        Ok(a) => panic!("unexpected duplicate {a:?}"),
        Err(r) => Err(r.code()),
    }
}

/// Every balance and every loss total of the ledger against the reference.
fn compare(ledger: &Ledger, model: &Reference, step: usize) -> Result<(), TestCaseError> {
    let bound = ledger.bound(None, None, None).unwrap();
    let balances = ledger.balances_at(&bound).unwrap();
    for (acct, name) in ACCOUNTS.iter().enumerate() {
        for (a, sym) in ASSETS.iter().enumerate() {
            let want = dec(model.balances.get(&(acct, a)).copied().unwrap_or(0), scale(a));
            let got = balances.balance(&account(name), &asset(sym));
            prop_assert_eq!(got.normalize(), want, "step {}: balance of {} {}", step, name, sym);
            let one = ledger.account_balances_at(&account(name), &bound).unwrap();
            prop_assert_eq!(one.balance(&account(name), &asset(sym)).normalize(), want);
        }
    }
    let losses = ledger.losses_at(&bound).unwrap();
    let mut total_cents = [0i128; 3];
    for (a, sym) in ASSETS.iter().enumerate() {
        let want = model.losses.get(&a).copied().unwrap_or_default();
        let got = losses.by_asset().get(&asset(sym)).copied().unwrap_or_default();
        let s = scale(a);
        let got_units = [got.attempted, got.prevented, got.reimbursed].map(|d| d.normalize());
        prop_assert_eq!(got_units, [dec(want[0], s), dec(want[1], s), dec(want[2], s)], "step {}: {} units", step, sym);
        let got_usd = [got.attempted_usd, got.prevented_usd, got.reimbursed_usd].map(|d| d.normalize());
        prop_assert_eq!(got_usd, [dec(want[3], 2), dec(want[4], 2), dec(want[5], 2)], "step {}: {} usd", step, sym);
        for (t, w) in total_cents.iter_mut().zip(&want[3..]) {
            *t += w;
        }
    }
    let total = losses.rows(false).into_iter().find(|r| r.group == "total").unwrap();
    let got = [total.cols.attempted_usd, total.cols.prevented_usd, total.cols.reimbursed_usd].map(|d| d.normalize());
    prop_assert_eq!(got, total_cents.map(|c| dec(c, 2)), "step {}: total usd", step);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn amounts_at_and_past_the_limits_are_exact_or_refused(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Some(open(dir.path()));
        let mut model = Reference::default();
        for (step, op) in ops.iter().enumerate() {
            if let Op::Restart = op {
                ledger.take().unwrap().close().unwrap();
                ledger = Some(open(dir.path()));
                compare(ledger.as_ref().unwrap(), &model, step)?;
                continue;
            }
            let ident = format!("c{step}");
            let at = format!("2022-01-01T00:{:02}:{:02}Z", step / 60, step % 60);
            let command = command(op, &ident, &at, &model).expect("not a restart");
            let want = model.apply(op, &ident);
            let got = ledger.as_ref().unwrap().submit_batch_blocking(vec![command.clone()]).unwrap().pop().unwrap();
            prop_assert_eq!(said(&got), want, "step {}: {:?} -> {:?}", step, command, got);
            compare(ledger.as_ref().unwrap(), &model, step)?;
        }
        let l = ledger.unwrap();
        let report = l.verify(None, &mut |_, _| {}).unwrap();
        prop_assert!(report.clean(), "verify: {:?}", report.discrepancies);
    }
}

/// The issue's cases, one by one: deposits of 7.9e27 USDC (past the limit of a 6-place asset at
/// once), 11 deposits that reach the limit in one account and then across accounts, and a
/// reimbursement whose pro rata USD overflowed a `Decimal` product.
#[test]
fn the_reported_overflows_are_refused_by_name_and_the_ledger_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let usdc = asset("USDC");
    let deposit = |ident: &str, acct: &str, sym: &str, amount: &str| {
        let a = asset(sym);
        let body = CommandBody::Deposit {
            account: account(acct),
            asset: a,
            amount: Amount::parse(amount, &a).unwrap(),
            usd_value: None,
        };
        cmd(ident, "2022-01-01T00:00:00Z", body)
    };
    let code = |o: &Outcome| o.as_ref().err().map(|r| r.code());
    let huge = ledger.submit_batch_blocking(vec![deposit("huge", "acct-one", "USDC", "7900000000000000000000000000")]);
    assert_eq!(code(&huge.unwrap()[0]), Some("amount_exceeds_balance_limit"));
    // One account: ten of 7.9e21 fit under 79,228,162,514,264,337,593,543.950335; the 11th not.
    let one: Vec<Command> =
        (0..11).map(|i| deposit(&format!("d{i}"), "acct-one", "USDC", "7900000000000000000000")).collect();
    let outcomes = ledger.submit_batch_blocking(one).unwrap();
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert!(codes[..10].iter().all(Option::is_none), "{codes:?}");
    assert_eq!(codes[10], Some("amount_exceeds_balance_limit"), "{:?}", outcomes[10]);
    let message = outcomes[10].as_ref().unwrap_err().to_string();
    assert!(message.contains("acct-one") && message.contains("79228162514264337593543.950335"), "{message}");
    // Another account: now the asset's ledger-wide total is what refuses.
    let other = ledger.submit_batch_blocking(vec![deposit("d-two", "acct-two", "USDC", "7900000000000000000000")]);
    assert_eq!(code(&other.unwrap()[0]), Some("amount_exceeds_asset_total_limit"));
    // The writer and the projector are alive and every answer is exact.
    let bound = ledger.bound(None, None, None).unwrap();
    let b = ledger.balances_at(&bound).unwrap();
    assert_eq!(b.balance(&account("acct-one"), &usdc).normalize().to_string(), "79000000000000000000000");
    assert!(ledger.verify(None, &mut |_, _| {}).unwrap().clean());

    // Deposit 1e22 DAI, withdraw it worth 1e20 USD, unauthorized; reimburse 1e21 of it.
    let dai = asset("DAI");
    let w = CommandBody::Withdraw {
        account: account("acct-three"),
        asset: dai,
        amount: Amount::parse("10000000000000000000000", &dai).unwrap(),
        usd_value: Some(Usd::parse("100000000000000000000").unwrap()),
        unauthorized: true,
        destination: None,
        auth_factor: None,
    };
    let r = CommandBody::Reimburse {
        withdrawal: id("w"),
        account: None,
        asset: None,
        amount: Some("1000000000000000000000".parse().unwrap()),
    };
    let commands = vec![
        deposit("d-dai", "acct-three", "DAI", "10000000000000000000000"),
        cmd("w", "2022-01-02T00:00:00Z", w),
        cmd("r", "2022-01-03T00:00:00Z", r),
    ];
    for o in ledger.submit_batch_blocking(commands).unwrap() {
        o.unwrap();
    }
    let bound = ledger.bound(None, None, None).unwrap();
    let l = ledger.losses_at(&bound).unwrap();
    let cols = l.by_asset()[&dai];
    assert_eq!(cols.reimbursed_usd.normalize().to_string(), "10000000000000000000");
    assert_eq!(cols.outstanding_usd().normalize().to_string(), "90000000000000000000");
}
