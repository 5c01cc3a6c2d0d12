//! The peer an auditor would pick instead: the same events loaded into SQLite (rusqlite,
//! bundled; WAL; `synchronous=FULL`; indexed on account, time and reference), asked the same
//! questions in SQL with DESIGN.md's semantics.
//!
//! The peer gets it easier than the ledger: amounts are stored as integers (millionths: the
//! workload's assets have at most 6 decimals), reversal and reimbursement amounts are resolved
//! at load time, nothing is validated, hashed or indexed for idempotency, and a replay returns
//! the window's rows without running totals.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

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

/// Loads the workload CSV; returns the peer and the load rate (rows/s, durable per batch).
pub fn load(csv_path: &Path, db_path: &Path) -> Result<(Peer, f64)> {
    let conn = Connection::open(db_path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, occurred_at INTEGER NOT NULL,
           recorded_at INTEGER NOT NULL, account TEXT NOT NULL, kind INTEGER NOT NULL, asset TEXT NOT NULL,
           amount INTEGER NOT NULL, usd INTEGER NOT NULL, ref TEXT, unauthorized INTEGER NOT NULL);
         CREATE INDEX events_account ON events(account, occurred_at);
         CREATE INDEX events_time ON events(occurred_at);
         CREATE INDEX events_ref ON events(ref);",
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
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((Peer { conn }, rate))
}

impl Peer {
    pub fn time_one_account(&self, account: &str, t: i64) -> Result<Duration> {
        let s = Instant::now();
        let mut stmt = self.conn.prepare_cached(
            "SELECT asset, SUM(CASE kind WHEN 1 THEN -amount ELSE amount END) FROM events
             WHERE account = ?1 AND occurred_at <= ?2 AND recorded_at <= ?3 AND kind IN (0, 1, 2, 3) GROUP BY asset",
        )?;
        let n = stmt.query_map(params![account, t, i64::MAX], |r| r.get::<_, i64>(1))?.count();
        let _ = n;
        Ok(s.elapsed())
    }

    pub fn time_all_balances(&self, t: i64) -> Result<(Duration, usize)> {
        let s = Instant::now();
        let mut stmt = self.conn.prepare_cached(
            "SELECT account, asset, SUM(CASE kind WHEN 1 THEN -amount ELSE amount END) AS b FROM events
             WHERE occurred_at <= ?1 AND recorded_at <= ?2 AND kind IN (0, 1, 2, 3)
             GROUP BY account, asset HAVING b != 0 ORDER BY account, asset",
        )?;
        let n = stmt.query_map(params![t, i64::MAX], |r| r.get::<_, i64>(2))?.count();
        Ok((s.elapsed(), n))
    }

    pub fn time_losses(&self, t: i64) -> Result<Duration> {
        let s = Instant::now();
        let mut stmt = self.conn.prepare_cached(
            "WITH flagged AS (SELECT ref FROM events WHERE kind = 4 AND recorded_at <= ?2),
                  unauth AS (SELECT id FROM events WHERE kind = 1 AND recorded_at <= ?2
                             AND (unauthorized = 1 OR id IN (SELECT ref FROM flagged)))
             SELECT asset, kind, SUM(amount), SUM(usd) FROM events
             WHERE occurred_at <= ?1 AND recorded_at <= ?2 AND (
                   (kind = 1 AND id IN (SELECT id FROM unauth))
                OR (kind IN (2, 3) AND ref IN (SELECT id FROM unauth)))
             GROUP BY asset, kind",
        )?;
        let n = stmt.query_map(params![t, i64::MAX], |r| r.get::<_, i64>(2))?.count();
        let _ = n;
        Ok(s.elapsed())
    }

    pub fn time_replay(&self, from: i64, to: i64) -> Result<(Duration, usize)> {
        let s = Instant::now();
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, id, occurred_at, recorded_at, account, kind, asset, amount, usd, ref FROM events
             WHERE occurred_at BETWEEN ?1 AND ?2 AND recorded_at <= ?3 ORDER BY occurred_at, seq",
        )?;
        let n = stmt.query_map(params![from, to, i64::MAX], |r| r.get::<_, i64>(0))?.count();
        Ok((s.elapsed(), n))
    }
}

pub fn open_existing(db_path: &Path) -> Result<Peer> {
    Ok(Peer { conn: Connection::open(db_path).context("sqlite")? })
}
