//! The January 2022 incident data set, generated deterministically from a seed.
//!
//! Published figures (INCIDENT.md) are reproduced exactly: 483 affected accounts; completed
//! unauthorized withdrawals of 4,836.26 ETH worth $15,132,516, 443.93 BTC worth $18,613,630 and
//! misc worth $66,200 (total $33,812,346); suspension 2022-01-18T03:46:00Z to 17:46:00Z.
//! Everything else (accounts, background activity, the split between prevented and completed,
//! prices along the window) is invented and documented in `fixtures/incident-2022-01/README.md`.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

pub mod workload;

pub const SEED: u64 = 20_220_117;

pub const ACCOUNTS: usize = 5_200;
pub const AFFECTED: usize = 483;
/// Affected accounts whose unauthorized withdrawal was prevented (reversed): the majority.
pub const PREVENTED_ACCOUNTS: usize = 300;
/// Completed (then reimbursed) accounts per group: ETH, BTC, misc. 80 + 55 + 48 = 183.
pub const COMPLETED_ACCOUNTS: [usize; 3] = [80, 55, 48];

pub const ETH_COMPLETED: &str = "4836.26";
pub const ETH_COMPLETED_USD: &str = "15132516";
pub const BTC_COMPLETED: &str = "443.93";
pub const BTC_COMPLETED_USD: &str = "18613630";
pub const MISC_COMPLETED_USD: &str = "66200";
pub const TOTAL_COMPLETED_USD: &str = "33812346";

pub const ATTACK_FROM: &str = "2022-01-17T20:00:00Z";
pub const DETECTED_AT: &str = "2022-01-17T23:40:00Z";
pub const SUSPENDED_AT: &str = "2022-01-18T03:46:00Z";
pub const RESUMED_AT: &str = "2022-01-18T17:46:00Z";

const MISC: [&str; 5] = ["USDC", "CRO", "SOL", "MATIC", "LINK"];
/// Rough January 2022 prices of the misc assets (USD).
const MISC_PRICE: [&str; 5] = ["1", "0.45", "140", "2.1", "24"];
/// Seconds between an event happening and the ledger recording it (the exchange's feed lag).
const RECORDING_LAG_S: i64 = 2;

pub struct Incident {
    pub commands_csv: String,
    pub rejected_csv: String,
    pub commands: usize,
    pub rejected: usize,
}

/// SplitMix64: tiny, deterministic, good enough for invented data.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("valid decimal")
}

fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[derive(Clone)]
struct Row {
    id: String,
    at: DateTime<Utc>,
    account: String,
    kind: &'static str,
    asset: String,
    amount: String,
    usd: String,
    reference: String,
    unauthorized: bool,
    order: u64,
}

/// A ledger-wide command (suspend, resume): no account, asset or amount.
fn control(id: &str, at: DateTime<Utc>, kind: &'static str) -> Row {
    Row {
        id: id.into(),
        at,
        account: String::new(),
        kind,
        asset: String::new(),
        amount: String::new(),
        usd: String::new(),
        reference: String::new(),
        unauthorized: false,
        order: 0,
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A price that drifts from `start` to `end` over January with a daily wave, in USD.
fn price(start: Decimal, end: Decimal, at: DateTime<Utc>) -> Decimal {
    let month_start = t("2022-01-01T00:00:00Z");
    let secs = (at - month_start).num_seconds().clamp(0, 31 * 86_400);
    let frac = Decimal::from(secs) / Decimal::from(31 * 86_400);
    // A triangle wave with a 26-hour period, +-1.5%: no floats anywhere.
    let phase = Decimal::from(secs % 93_600) / Decimal::from(93_600);
    let tri = if phase < d("0.5") { phase * d("4") - d("1") } else { d("3") - phase * d("4") };
    cents((start + (end - start) * frac) * (Decimal::ONE + tri * d("0.015")))
}

fn eth_price(at: DateTime<Utc>) -> Decimal {
    price(d("3760"), d("2600"), at)
}
fn btc_price(at: DateTime<Utc>) -> Decimal {
    price(d("47300"), d("37900"), at)
}

/// Splits `total` (in units of 10^-scale) into `n` positive parts of varied size.
fn partition(rng: &mut Rng, total: Decimal, scale: u32, n: usize) -> Vec<Decimal> {
    let unit = Decimal::new(1, scale);
    let total_units = (total / unit).trunc();
    let weights: Vec<u64> = (0..n).map(|_| 30 + rng.below(140)).collect();
    let sum: u64 = weights.iter().sum();
    let mut parts: Vec<Decimal> =
        weights.iter().map(|w| (total_units * Decimal::from(*w) / Decimal::from(sum)).trunc()).collect();
    let mut rest = total_units - parts.iter().copied().sum::<Decimal>();
    let mut i = 0;
    while rest > Decimal::ZERO {
        parts[i % n] += Decimal::ONE;
        rest -= Decimal::ONE;
        i += 1;
    }
    parts.into_iter().map(|p| (p * unit).normalize()).collect()
}

/// USD values for `amounts` at `prices`, scaled so they add up to exactly `target` (the last
/// one absorbs the rounding remainder of a few cents).
fn priced_to(amounts: &[Decimal], prices: &[Decimal], target: Decimal) -> Vec<Decimal> {
    let raw: Decimal = amounts.iter().zip(prices).map(|(a, p)| a * p).sum();
    let factor = target / raw;
    let mut usd: Vec<Decimal> = amounts.iter().zip(prices).map(|(a, p)| cents(a * p * factor)).collect();
    let sum: Decimal = usd.iter().copied().sum();
    *usd.last_mut().expect("non-empty") += target - sum;
    usd
}

pub fn incident(seed: u64) -> Incident {
    let mut rng = Rng(seed);
    let mut rows: Vec<Row> = Vec::new();
    let mut order = 0u64;
    let mut push = |rows: &mut Vec<Row>, mut r: Row| {
        order += 1;
        r.order = order;
        rows.push(r);
    };
    let month = t("2022-01-01T00:00:00Z");
    let (attack_from, suspended, resumed) = (t(ATTACK_FROM), t(SUSPENDED_AT), t(RESUMED_AT));
    let in_suspension = |at: DateTime<Utc>| at >= suspended && at < resumed;
    let account_name = |i: usize| format!("acct-{:06}", i + 1);

    // Victims: the first AFFECTED accounts of a shuffled order.
    let mut order_accounts: Vec<usize> = (0..ACCOUNTS).collect();
    for i in (1..ACCOUNTS).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order_accounts.swap(i, j);
    }
    let victims = &order_accounts[..AFFECTED];

    // Background: every account deposits early in the month, then deposits and withdraws.
    for i in 0..ACCOUNTS {
        let account = account_name(i);
        let mut at = month + Duration::seconds(rng.range(0, 9 * 86_400));
        let mut bal = [Decimal::ZERO; 7]; // ETH, BTC, misc...
        let n_events = 8 + rng.below(5) as usize;
        for e in 0..n_events {
            let which = (rng.below(7)) as usize;
            let (asset, scale, px) = match which {
                0 => ("ETH".to_string(), 4, eth_price(at)),
                1 => ("BTC".to_string(), 6, btc_price(at)),
                m => (MISC[m - 2].to_string(), 2, d(MISC_PRICE[m - 2])),
            };
            let deposit = e < 2 || bal[which].is_zero() || rng.below(100) < 45;
            let amount = if deposit {
                let base = match which {
                    0 => Decimal::new(rng.range(5_000, 400_000), scale),
                    1 => Decimal::new(rng.range(5_000, 2_000_000), scale),
                    _ => Decimal::new(rng.range(1_000, 5_000_000), scale),
                };
                base.normalize()
            } else {
                let share = Decimal::new(rng.range(5, 60), 2);
                (bal[which] * share).round_dp_with_strategy(scale, RoundingStrategy::ToZero).normalize()
            };
            if amount <= Decimal::ZERO || (!deposit && in_suspension(at)) {
                at += Duration::seconds(rng.range(3_600, 3 * 86_400));
                continue;
            }
            // Background withdrawals stay clear of the attack window, so the incident is the
            // only withdrawal activity on victims while it runs.
            if !deposit && at >= attack_from && at < resumed {
                at = resumed + Duration::seconds(rng.range(60, 6 * 3600));
            }
            if deposit {
                bal[which] += amount;
            } else {
                bal[which] -= amount;
            }
            push(
                &mut rows,
                Row {
                    id: format!("{}-{}-{e:02}", if deposit { "dep" } else { "wd" }, &account[5..]),
                    at,
                    account: account.clone(),
                    kind: if deposit { "deposit" } else { "withdrawal" },
                    asset,
                    amount: amount.to_string(),
                    usd: cents(amount * px).to_string(),
                    reference: String::new(),
                    unauthorized: false,
                    order: 0,
                },
            );
            at += Duration::seconds(rng.range(3_600, 4 * 86_400));
            if at > t("2022-01-31T20:00:00Z") {
                break;
            }
        }
    }

    // The incident. Completed victims first (by group), then prevented ones.
    let [eth_n, btc_n, misc_n] = COMPLETED_ACCOUNTS;
    let eth_amounts = partition(&mut rng, d(ETH_COMPLETED), 2, eth_n);
    let btc_amounts = partition(&mut rng, d(BTC_COMPLETED), 2, btc_n);
    let window = (suspended - attack_from).num_seconds();
    let attack_time = |rng: &mut Rng| attack_from + Duration::seconds(rng.range(0, window));
    let mut attacks: Vec<(usize, String, Decimal, DateTime<Utc>, bool)> = Vec::new(); // account, asset, amount, at, completed
    for (k, amount) in eth_amounts.iter().enumerate() {
        attacks.push((victims[k], "ETH".into(), *amount, attack_time(&mut rng), true));
    }
    for (k, amount) in btc_amounts.iter().enumerate() {
        attacks.push((victims[eth_n + k], "BTC".into(), *amount, attack_time(&mut rng), true));
    }
    let misc_usd_parts = partition(&mut rng, d(MISC_COMPLETED_USD), 0, misc_n);
    let mut misc_completed = Vec::new();
    for (k, usd) in misc_usd_parts.iter().enumerate() {
        let m = k % MISC.len();
        // Units from the USD share at the asset's price, rounded to the data's 2 decimals.
        let amount = cents(*usd / d(MISC_PRICE[m])).max(d("0.01"));
        misc_completed.push(*usd);
        attacks.push((victims[eth_n + btc_n + k], MISC[m].into(), amount, attack_time(&mut rng), true));
    }
    for k in 0..PREVENTED_ACCOUNTS {
        let v = victims[eth_n + btc_n + misc_n + k];
        let (asset, amount) = match k % 3 {
            0 => ("ETH".to_string(), Decimal::new(rng.range(50, 9_000), 2)),
            1 => ("BTC".to_string(), Decimal::new(rng.range(5, 1_200), 2)),
            _ => (MISC[k % MISC.len()].to_string(), Decimal::new(rng.range(1_000, 500_000), 2)),
        };
        attacks.push((v, asset, amount.normalize(), attack_time(&mut rng), false));
    }
    // USD values: the completed ones priced along the window and scaled to the published sums.
    let usd_of = |asset: &str, at: DateTime<Utc>, amount: Decimal| match asset {
        "ETH" => amount * eth_price(at),
        "BTC" => amount * btc_price(at),
        other => amount * d(MISC_PRICE[MISC.iter().position(|m| *m == other).expect("misc")]),
    };
    let mut usd: Vec<Decimal> = attacks.iter().map(|(_, a, amt, at, _)| cents(usd_of(a, *at, *amt))).collect();
    for (asset, target) in [("ETH", d(ETH_COMPLETED_USD)), ("BTC", d(BTC_COMPLETED_USD))] {
        let idx: Vec<usize> = (0..attacks.len()).filter(|i| attacks[*i].4 && attacks[*i].1 == asset).collect();
        let amounts: Vec<Decimal> = idx.iter().map(|i| attacks[*i].2).collect();
        let prices: Vec<Decimal> = idx
            .iter()
            .map(|i| if asset == "ETH" { eth_price(attacks[*i].3) } else { btc_price(attacks[*i].3) })
            .collect();
        for (i, v) in idx.iter().zip(priced_to(&amounts, &prices, target)) {
            usd[*i] = v;
        }
    }
    for (k, i) in (eth_n + btc_n..eth_n + btc_n + misc_n).enumerate() {
        usd[i] = misc_completed[k];
    }

    for (n, ((account, asset, amount, at, completed), usd)) in attacks.iter().zip(&usd).enumerate() {
        let account = account_name(*account);
        let wid = format!("unauth-{:03}", n + 1);
        // The victim's holdings: a deposit early in January that covers the theft.
        push(
            &mut rows,
            Row {
                id: format!("hold-{:03}", n + 1),
                at: t("2022-01-10T12:00:00Z") + Duration::seconds(n as i64 * 37),
                account: account.clone(),
                kind: "deposit",
                asset: asset.clone(),
                amount: (amount * d("1.25")).normalize().to_string(),
                usd: String::new(),
                reference: String::new(),
                unauthorized: false,
                order: 0,
            },
        );
        let mk = |id: String, at: DateTime<Utc>, kind: &'static str| Row {
            id,
            at,
            account: account.clone(),
            kind,
            asset: String::new(),
            amount: String::new(),
            usd: String::new(),
            reference: wid.clone(),
            unauthorized: false,
            order: 0,
        };
        push(
            &mut rows,
            Row {
                id: wid.clone(),
                at: *at,
                account: account.clone(),
                kind: "withdrawal",
                asset: asset.clone(),
                amount: amount.to_string(),
                usd: usd.to_string(),
                reference: String::new(),
                unauthorized: false,
                order: 0,
            },
        );
        let flag_at = suspended + Duration::seconds(600 + (n as i64 * 97) % (4 * 3600));
        push(&mut rows, mk(format!("flag-{:03}", n + 1), flag_at, "flag"));
        if *completed {
            let reimb_at = resumed + Duration::seconds(1800 + (n as i64 * 131) % (20 * 3600));
            push(&mut rows, mk(format!("reimb-{:03}", n + 1), reimb_at, "reimbursement"));
        } else {
            let rev_at = suspended + Duration::seconds(5 * 3600 + (n as i64 * 61) % (8 * 3600));
            push(&mut rows, mk(format!("rev-{:03}", n + 1), rev_at, "reversal"));
        }
    }
    push(&mut rows, control("suspend-2022-01-18", suspended, "suspend"));
    push(&mut rows, control("resume-2022-01-18", resumed, "resume"));

    // Background withdrawals never fall in [attack_from, resumed), and each account's events
    // were generated in time order, so sorting by time keeps every account's order.
    rows.sort_by_key(|r| (r.at, r.order));
    let mut csv = String::from("id,occurred_at,recorded_at,account,kind,asset,amount,usd_value,ref,unauthorized\n");
    for r in &rows {
        let recorded = r.at + Duration::seconds(RECORDING_LAG_S);
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.id,
            fmt_time(r.at),
            fmt_time(recorded),
            r.account,
            r.kind,
            r.asset,
            r.amount,
            r.usd,
            r.reference,
            if r.unauthorized { "true" } else { "" }
        ));
    }
    // Attempts the ledger refuses, submitted after the fact (recorded now): two withdrawals
    // inside the suspension from an account whose history ends before it, a second
    // reimbursement of a fully reimbursed withdrawal, a reversal of a withdrawal that does not
    // exist, and an amount finer than its asset allows.
    let mut last_at: std::collections::HashMap<&str, DateTime<Utc>> = std::collections::HashMap::new();
    for r in &rows {
        last_at.insert(r.account.as_str(), r.at);
    }
    let quiet = (0..ACCOUNTS)
        .map(account_name)
        .find(|a| last_at.get(a.as_str()).is_some_and(|t| *t < suspended))
        .expect("some account has no activity after the suspension began");
    let rejected = [
        format!("late-wd-1,2022-01-18T10:15:00Z,{quiet},withdrawal,ETH,0.5,1550.00,,"),
        format!("late-wd-2,2022-01-18T17:45:59Z,{quiet},withdrawal,BTC,0.01,420.00,,"),
        "double-reimb,2022-02-01T12:00:00Z,,reimbursement,,,,unauth-001,".to_string(),
        "ghost-rev,2022-01-18T12:00:00Z,,reversal,,,,unauth-999,".to_string(),
        "bad-scale,2022-01-20T12:00:00Z,acct-000001,deposit,BTC,0.123456789,,,".to_string(),
    ];
    let mut rejected_csv = String::from("id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n");
    for r in &rejected {
        rejected_csv.push_str(r);
        rejected_csv.push('\n');
    }
    Incident { commands: rows.len(), commands_csv: csv, rejected: rejected.len(), rejected_csv }
}
