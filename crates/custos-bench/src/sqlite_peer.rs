//! The peer an auditor would pick instead: the same events loaded into SQLite (rusqlite,
//! bundled; WAL; `synchronous=FULL`), asked the same questions in SQL with DESIGN.md's
//! semantics, with the indexes an expert would give each question and `ANALYZE` after the
//! load. Each question is timed in its own loop over the moments, its statement prepared
//! once, and every answer is reduced to the same canonical text as Custos's (see
//! [`crate::answers`]) so that the two are compared value by value, not counted.
//!
//! The peer gets it easier than the ledger: amounts are stored as integers (millionths: the
//! workload's assets have at most 6 decimals), reversal, flag and reimbursement amounts are
//! resolved at load time, nothing is validated, hashed or indexed for idempotency.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{named_params, params, Connection};

use crate::answers::Canon;

const DEPOSIT: i64 = 0;
const WITHDRAWAL: i64 = 1;
const REVERSAL: i64 = 2;
const REIMBURSEMENT: i64 = 3;
const FLAG: i64 = 4;

fn micro(s: &str) -> i64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<6}");
    int.parse::<i64>().unwrap_or(0) * 1_000_000 + frac[..6].parse::<i64>().unwrap_or(0)
}

fn cents(s: &str) -> i64 {
    if s.is_empty() {
        return 0;
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<2}");
    int.parse::<i64>().unwrap_or(0) * 100 + frac[..2].parse::<i64>().unwrap_or(0)
}

fn nanos(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0)
}

pub struct Peer {
    conn: Connection,
}

/// The indexes, one per question: a covering index in (account, asset) order (one account's
/// balances, and all balances grouped without a sort), time for windows, kind+ref for flags
/// and the events that refer to a withdrawal.
const INDEXES: &str = "
    CREATE INDEX events_balance ON events(account, asset, occurred_at, kind, amount, recorded_at);
    CREATE INDEX events_time ON events(occurred_at);
    CREATE INDEX events_kind_ref ON events(kind, ref, recorded_at);
    ANALYZE;";

/// Loads the workload CSV; returns the peer and the load rate (rows/s, durable per batch,
/// the indexes and ANALYZE included).
pub fn load(csv_path: &Path, db_path: &Path) -> Result<(Peer, f64)> {
    let conn = Connection::open(db_path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, occurred_at INTEGER NOT NULL,
           recorded_at INTEGER NOT NULL, account TEXT NOT NULL, kind INTEGER NOT NULL, asset TEXT NOT NULL,
           amount INTEGER NOT NULL, usd INTEGER NOT NULL, ref TEXT, unauthorized INTEGER NOT NULL);",
    )?;
    let mut rdr = csv::Reader::from_path(csv_path)?;
    let mut withdrawals: HashMap<String, (String, i64, i64)> = HashMap::new();
    let started = Instant::now();
    let mut rows = 0u64;
    let mut records = rdr.records();
    loop {
        let tx = conn.unchecked_transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events (id, occurred_at, recorded_at, account, kind, asset, amount, usd, ref, unauthorized)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in records.by_ref() {
                let r = r?;
                let (id, occurred, recorded, account, kind) = (&r[0], nanos(&r[1]), nanos(&r[2]), &r[3], &r[4]);
                let reference = (!r[8].is_empty()).then(|| r[8].to_string());
                let (kind, asset, amount, usd) = match kind {
                    "deposit" => (DEPOSIT, r[5].to_string(), micro(&r[6]), cents(&r[7])),
                    "withdrawal" => {
                        withdrawals.insert(id.to_string(), (r[5].to_string(), micro(&r[6]), cents(&r[7])));
                        (WITHDRAWAL, r[5].to_string(), micro(&r[6]), cents(&r[7]))
                    }
                    other => {
                        let (asset, amount, usd) =
                            withdrawals.get(reference.as_deref().unwrap_or("")).cloned().unwrap_or_default();
                        let k = match other {
                            "reversal" => REVERSAL,
                            "reimbursement" => REIMBURSEMENT,
                            _ => FLAG,
                        };
                        // A partial reimbursement carries its own amount.
                        let amount = if r[6].is_empty() { amount } else { micro(&r[6]) };
                        (k, asset, amount, usd)
                    }
                };
                stmt.execute(params![
                    id,
                    occurred,
                    recorded,
                    account,
                    kind,
                    asset,
                    amount,
                    usd,
                    reference,
                    (&r[9] == "true") as i64
                ])?;
                n += 1;
                if n == 4096 {
                    break;
                }
            }
        }
        tx.commit()?;
        rows += n;
        if n < 4096 {
            break;
        }
    }
    conn.execute_batch(INDEXES)?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((Peer { conn }, rate))
}

pub fn open_existing(db_path: &Path) -> Result<Peer> {
    Ok(Peer { conn: Connection::open(db_path).context("sqlite")? })
}

/// The peers' SQL (peers/queries.sql, shared with the DuckDB peer).
const QUERIES: &str = include_str!("../peers/queries.sql");

/// The query `name` of peers/queries.sql, with its {change} and {unauth} filled in.
pub fn query(name: &str) -> String {
    let section = |n: &str| -> String {
        let start = QUERIES.find(&format!("-- name: {n}\n")).unwrap_or_else(|| panic!("queries.sql has no {n}"));
        let body = QUERIES[start..].split_once('\n').map_or("", |x| x.1);
        body.split("\n-- name: ").next().unwrap_or_default().trim().to_string()
    };
    section(name).replace("{change}", &section("change")).replace("{unauth}", &section("unauth"))
}

/// One question over the moments: each answer's time (the statement run and its rows
/// fetched), and its canonical digest (made after the clock stops).
type Timed = (Vec<Duration>, Vec<String>);

impl Peer {
    /// Each of `moments` (as_of nanos, account): one account's balances (known now).
    pub fn one_account(&self, moments: &[(i64, String)]) -> Result<Timed> {
        let mut stmt = self.conn.prepare(&query("one"))?;
        let mut out: Timed = Default::default();
        for (t, account) in moments {
            let s = Instant::now();
            let rows: Vec<(String, i64)> = stmt
                .query_map(named_params! {":account": account, ":t": t, ":k": i64::MAX}, |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            out.0.push(s.elapsed());
            let mut c = Canon::default();
            for (asset, b) in rows {
                c.line(&[asset, b.to_string()]);
            }
            out.1.push(c.digest());
        }
        Ok(out)
    }

    /// All balances at each moment; also the number of rows at the last.
    pub fn all_balances(&self, moments: &[(i64, String)]) -> Result<(Timed, usize)> {
        let mut stmt = self.conn.prepare(&query("all"))?;
        let mut out: Timed = Default::default();
        let mut n = 0;
        for (t, _) in moments {
            let s = Instant::now();
            let rows: Vec<(String, String, i64)> = stmt
                .query_map(named_params! {":t": t, ":k": i64::MAX}, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            out.0.push(s.elapsed());
            n = rows.len();
            let mut c = Canon::default();
            for (account, asset, b) in rows {
                c.line(&[account, asset, b.to_string()]);
            }
            out.1.push(c.digest());
        }
        Ok((out, n))
    }

    /// Loss sums per asset at each moment (attempted, prevented, reimbursed; units and USD).
    pub fn losses(&self, moments: &[(i64, String)]) -> Result<Timed> {
        let mut stmt = self.conn.prepare(&query("losses"))?;
        let mut out: Timed = Default::default();
        for (t, _) in moments {
            let s = Instant::now();
            let rows = loss_rows(&mut stmt, *t)?;
            out.0.push(s.elapsed());
            out.1.push(losses_canon(&rows)?.digest());
        }
        Ok(out)
    }

    /// The 14-hour window ending at each moment: rows only (`like = false`), or the same
    /// question Custos answers (`like = true`): the totals before the window, each row's
    /// account balance after it and the running loss totals, by window functions. Also the
    /// number of rows in the last window.
    pub fn replay(&self, moments: &[(i64, String)], like: bool) -> Result<(Timed, usize)> {
        let mut rows_only = self.conn.prepare(&query("replay_rows"))?;
        let mut before = self.conn.prepare(&query("losses"))?;
        let mut full = self.conn.prepare(&query("replay"))?;
        let mut out: Timed = Default::default();
        let mut n = 0;
        for (t, _) in moments {
            let from = t - 14 * 3_600_000_000_000;
            let p = named_params! {":lo": from, ":hi": t, ":k": i64::MAX};
            let s = Instant::now();
            let mut c = Canon::default();
            if like {
                // The totals before the window, then each row's running totals on top.
                let start = losses_sums(&loss_rows(&mut before, from - 1)?)?;
                let rows: Vec<[i64; 11]> = full
                    .query_map(p, |r| {
                        let mut v = [0i64; 11];
                        for (i, x) in v.iter_mut().enumerate() {
                            *x = r.get(i)?;
                        }
                        Ok(v)
                    })?
                    .collect::<Result<_, _>>()?;
                out.0.push(s.elapsed());
                n = rows.len();
                let mut first = vec!["start".to_string()];
                first.extend(start.iter().map(i64::to_string));
                c.line(&first);
                for v in rows {
                    let mut cells = vec![v[0].to_string(), v[1].to_string()];
                    for (base, x) in start.iter().zip(&v[2..]) {
                        let mut total = *base;
                        add(&mut total, *x)?;
                        cells.push(total.to_string());
                    }
                    c.line(&cells);
                }
            } else {
                let rows: Vec<i64> = rows_only.query_map(p, |r| r.get(0))?.collect::<Result<_, _>>()?;
                out.0.push(s.elapsed());
                n = rows.len();
                for seq in rows {
                    c.line(&[seq.to_string()]);
                }
            }
            out.1.push(c.digest());
        }
        Ok((out, n))
    }
}

/// The loss query's rows: (asset, kind, units, USD).
fn loss_rows(stmt: &mut rusqlite::Statement<'_>, t: i64) -> Result<Vec<(String, i64, i64, i64)>> {
    Ok(stmt
        .query_map(named_params! {":t": t, ":k": i64::MAX}, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?)
}

fn column(kind: i64) -> usize {
    match kind {
        WITHDRAWAL => 0,
        REVERSAL => 1,
        _ => 2,
    }
}

/// `*to += x`, checked: the peer's sums are SQLite's 64-bit integers, and a sum past i64 is
/// said, not wrapped.
fn add(to: &mut i64, x: i64) -> Result<()> {
    *to = to.checked_add(x).context("a peer's loss sum passed 64 bits")?;
    Ok(())
}

/// The loss rows in canonical lines: asset, then attempted, prevented, reimbursed units, then
/// their USD.
fn losses_canon(rows: &[(String, i64, i64, i64)]) -> Result<Canon> {
    let mut per: std::collections::BTreeMap<&str, [i64; 6]> = Default::default();
    for (asset, kind, units, usd) in rows {
        let (e, col) = (per.entry(asset).or_default(), column(*kind));
        add(&mut e[col], *units)?;
        add(&mut e[col + 3], *usd)?;
    }
    let mut c = Canon::default();
    for (asset, v) in per.iter().filter(|(_, v)| v.iter().any(|x| *x != 0)) {
        let mut cells = vec![asset.to_string()];
        cells.extend(v.iter().map(i64::to_string));
        c.line(&cells);
    }
    Ok(c)
}

/// The replay's starting totals from the loss rows: ETH and BTC attempted, prevented,
/// reimbursed units, then the USD of all three over every asset.
fn losses_sums(rows: &[(String, i64, i64, i64)]) -> Result<[i64; 9]> {
    let mut out = [0i64; 9];
    for (asset, kind, units, usd) in rows {
        let col = column(*kind);
        match asset.as_str() {
            "ETH" => add(&mut out[col], *units)?,
            "BTC" => add(&mut out[3 + col], *units)?,
            _ => {}
        }
        add(&mut out[6 + col], *usd)?;
    }
    Ok(out)
}
