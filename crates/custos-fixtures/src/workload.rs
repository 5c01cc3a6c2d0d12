//! A deterministic benchmark workload: N events over A accounts in the import format, with the
//! mix of a custody platform (mostly deposits and withdrawals in ETH, BTC and misc assets, about
//! 1% unauthorized withdrawals, flags, reversals and reimbursements of them).

use std::io::Write;

use chrono::{DateTime, Duration, Utc};

use crate::Rng;

const ASSETS: [(&str, u32, u64); 6] = [
    ("ETH", 4, 400_000),
    ("BTC", 6, 2_000_000),
    ("USDC", 2, 5_000_000),
    ("SOL", 2, 50_000),
    ("CRO", 2, 500_000),
    ("LINK", 2, 100_000),
];

/// The header of the import format, as the workload writes it.
pub const HEADER: &str = "id,occurred_at,recorded_at,account,kind,asset,amount,usd_value,ref,unauthorized";

/// Writes the workload as CSV; returns the first and last `occurred_at`.
pub fn write_csv(
    out: &mut impl Write,
    events: u64,
    accounts: u64,
    seed: u64,
) -> std::io::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let mut rng = Rng(seed);
    let start = DateTime::parse_from_rfc3339("2022-01-01T00:00:00Z").expect("valid").with_timezone(&Utc);
    // Balances in smallest units per (account, asset), to keep every withdrawal affordable.
    let mut balance = vec![0u64; (accounts as usize) * ASSETS.len()];
    // Withdrawals that may still be flagged, reversed or reimbursed: (id, account, unauthorized).
    let mut open: Vec<(u64, u64, bool)> = Vec::new();
    let mut flagged: Vec<(u64, u64)> = Vec::new();
    writeln!(out, "{HEADER}")?;
    let mut at = start;
    let mut last_at = start;
    for i in 0..events {
        // Two seconds apart on average: a million events span about 23 days.
        at += Duration::milliseconds(rng.range(1, 4000));
        let t = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let rec = (at + Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        last_at = at;
        let roll = rng.below(1000);
        if roll < 10 && !open.is_empty() {
            // Flag an earlier authorized withdrawal (it turns out it was not).
            let k = rng.below(open.len() as u64) as usize;
            let (w, acct, marked) = open.swap_remove(k);
            if !marked {
                writeln!(out, "e{i},{t},{rec},acct-{acct:06},flag,,,,w{w},")?;
                flagged.push((w, acct));
                continue;
            }
            open.push((w, acct, marked));
        } else if roll < 15 && !flagged.is_empty() {
            let k = rng.below(flagged.len() as u64) as usize;
            let (w, acct) = flagged.swap_remove(k);
            let kind = if rng.below(2) == 0 { "reversal" } else { "reimbursement" };
            writeln!(out, "e{i},{t},{rec},acct-{acct:06},{kind},,,,w{w},")?;
            continue;
        }
        let acct = rng.below(accounts);
        let a = rng.below(ASSETS.len() as u64) as usize;
        let (sym, scale, max) = ASSETS[a];
        let slot = acct as usize * ASSETS.len() + a;
        let unit = 10u64.pow(scale);
        let withdraw = balance[slot] > 0 && rng.below(100) < 40;
        let amount = if withdraw { 1 + rng.below(balance[slot]) } else { 1 + rng.below(max) };
        let text = format!("{}.{:0width$}", amount / unit, amount % unit, width = scale as usize);
        let usd = format!("{}.{:02}", amount / unit * 3, rng.below(100));
        if withdraw {
            balance[slot] -= amount;
            let unauthorized = rng.below(100) == 0;
            writeln!(out, "w{i},{t},{rec},acct-{acct:06},withdrawal,{sym},{text},{usd},,{unauthorized}")?;
            if unauthorized {
                flagged.push((i, acct));
            } else if open.len() < 100_000 {
                open.push((i, acct, false));
            }
        } else {
            balance[slot] += amount;
            writeln!(out, "d{i},{t},{rec},acct-{acct:06},deposit,{sym},{text},{usd},,")?;
        }
    }
    Ok((start, last_at))
}
