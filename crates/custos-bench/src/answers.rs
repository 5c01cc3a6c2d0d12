//! Every answer of every engine reduced to one canonical text, and that text to a SHA-256
//! digest, so that Custos's answers and the peers' are compared value by value (an answer of
//! 100,000 balances is not kept 100 times over). Quantities are integers of millionths (the
//! workload's assets have at most 6 decimals), USD integers of cents. The same text is made by
//! `peers/duckdb_peer.py`; its format, per question:
//!
//! - one account, all balances: `account|asset|micro` (one account: `asset|micro`), balances
//!   that are not zero, in (account, asset) order;
//! - loss sums: `asset|attempted|prevented|reimbursed|attempted_usd|prevented_usd|reimbursed_usd`
//!   per asset with any of them not zero, in asset order;
//! - replay with totals: `start|` and the nine totals before the window (ETH attempted,
//!   prevented, reimbursed; BTC the same; USD of the three over every asset), then per row in
//!   (occurred_at, seq) order `seq|balance_after|` and the nine running totals;
//! - replay rows only: `seq` per row.

use anyhow::{bail, Result};
use custos_ledger::ReplayRow;
use custos_projection::{BalanceRow, LossRow, Losses};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

/// Lines of `|`-separated cells, hashed as they come.
#[derive(Default)]
pub struct Canon(Sha256);

impl Canon {
    pub fn line<S: AsRef<str>>(&mut self, cells: &[S]) {
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                self.0.update(b"|");
            }
            self.0.update(c.as_ref().as_bytes());
        }
        self.0.update(b"\n");
    }
    pub fn digest(self) -> String {
        hex::encode(self.0.finalize())
    }
}

fn scaled(d: Decimal, places: u32) -> Result<String> {
    let Some(x) = d.checked_mul(Decimal::from(10i64.pow(places))) else {
        bail!("{d} is too large for the canonical form");
    };
    if !x.fract().is_zero() {
        bail!("{d} has more than {places} decimals: the canonical form cannot hold it");
    }
    Ok(x.trunc().normalize().to_string())
}

/// Millionths of a unit.
pub fn micro(d: Decimal) -> Result<String> {
    scaled(d, 6)
}

/// Cents.
pub fn cents(d: Decimal) -> Result<String> {
    scaled(d, 2)
}

/// Balances (one account's or all), in (account, asset) order, zero ones left out.
pub fn balances(rows: &[BalanceRow], with_account: bool) -> Result<String> {
    let mut rows: Vec<&BalanceRow> = rows.iter().filter(|r| !r.balance.is_zero()).collect();
    rows.sort_by(|a, b| (a.account.as_str(), a.asset.as_str()).cmp(&(b.account.as_str(), b.asset.as_str())));
    let mut c = Canon::default();
    for r in rows {
        if with_account {
            c.line(&[r.account.as_str(), r.asset.as_str(), &micro(r.balance)?]);
        } else {
            c.line(&[r.asset.as_str(), &micro(r.balance)?]);
        }
    }
    Ok(c.digest())
}

/// Loss sums per asset.
pub fn losses(l: &Losses) -> Result<String> {
    let mut c = Canon::default();
    for (asset, v) in l.by_asset() {
        let cols = [v.attempted, v.prevented, v.reimbursed, v.attempted_usd, v.prevented_usd, v.reimbursed_usd];
        if cols.iter().all(Decimal::is_zero) {
            continue;
        }
        let mut cells = vec![asset.to_string()];
        for (i, x) in cols.iter().enumerate() {
            cells.push(if i < 3 { micro(*x)? } else { cents(*x)? });
        }
        c.line(&cells);
    }
    Ok(c.digest())
}

/// The nine totals of a replay row (or of the totals before the window).
fn totals(rows: &[LossRow]) -> Result<Vec<String>> {
    let group = |g: &str| rows.iter().find(|r| r.group == g).map(|r| r.cols).unwrap_or_default();
    let (eth, btc, total) = (group("ETH"), group("BTC"), group("total"));
    let mut out = Vec::new();
    for c in [eth, btc] {
        for x in [c.attempted, c.prevented, c.reimbursed] {
            out.push(micro(x)?);
        }
    }
    for x in [total.attempted_usd, total.prevented_usd, total.reimbursed_usd] {
        out.push(cents(x)?);
    }
    Ok(out)
}

/// A replay with its totals, or (`rows_only`) its rows' seqs.
pub fn replay(start: &[LossRow], rows: &[ReplayRow], rows_only: bool) -> Result<String> {
    let mut c = Canon::default();
    if rows_only {
        for r in rows {
            c.line(&[r.seq.to_string()]);
        }
        return Ok(c.digest());
    }
    let mut first = vec!["start".to_string()];
    first.extend(totals(start)?);
    c.line(&first);
    for r in rows {
        let mut cells = vec![r.seq.to_string(), r.balance_after.map_or(Ok("-".to_string()), micro)?];
        cells.extend(totals(&r.totals)?);
        c.line(&cells);
    }
    Ok(c.digest())
}
