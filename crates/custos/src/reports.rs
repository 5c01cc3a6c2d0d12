//! The query commands' reports, built from the ledger's answers.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{bail, Context, Result};
use custos_domain::{AccountId, Asset, Envelope, Event, Hash, Seq, Timestamp};
use custos_ledger::{Bound, Ledger};
use custos_projection::{Balances, LossRow, Losses, Projection};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::output::{Cell, Format, Report};
use crate::Exit;

fn time(t: Timestamp) -> Value {
    Value::String(t.to_rfc3339())
}

/// The facts every point-in-time report states.
pub fn with_bound(report: Report, bound: &Bound) -> Report {
    let r = report.meta("as_of", time(bound.as_of)).meta("known_at", time(bound.known_at));
    match bound.at_seq {
        Some(s) => r.meta("at_seq", s),
        None => r.meta("known_seq", bound.known_seq),
    }
}

pub fn balances(
    ledger: &Ledger,
    bound: &Bound,
    account: Option<&AccountId>,
    asset: Option<&Asset>,
    all: bool,
) -> Result<Report> {
    let state = match account {
        Some(a) => ledger.account_balances_at(a, bound)?,
        None => ledger.balances_at(bound)?,
    };
    let mut report = with_bound(Report::new("Balances", &["account", "asset", "balance"]), bound);
    for row in state.rows(account, asset, all) {
        report.push(vec![row.account.to_string().into(), row.asset.to_string().into(), row.balance.into()]);
    }
    Ok(report)
}

pub const LOSS_COLUMNS: [&str; 11] = [
    "attempted",
    "prevented",
    "completed",
    "reimbursed",
    "outstanding",
    "attempted_usd",
    "prevented_usd",
    "completed_usd",
    "reimbursed_usd",
    "outstanding_usd",
    "accounts_affected",
];

pub fn loss_cells(row: &LossRow) -> Vec<Cell> {
    let c = &row.cols;
    let units = |d: Decimal| if row.units { Cell::Dec(d) } else { Cell::Null };
    vec![
        units(c.attempted),
        units(c.prevented),
        units(c.completed()),
        units(c.reimbursed),
        units(c.outstanding()),
        Cell::Usd(c.attempted_usd),
        Cell::Usd(c.prevented_usd),
        Cell::Usd(c.completed_usd()),
        Cell::Usd(c.reimbursed_usd),
        Cell::Usd(c.outstanding_usd()),
        row.accounts_affected.into(),
    ]
}

pub fn losses(losses: &Losses, bound: &Bound, detail: bool) -> Report {
    let mut columns = vec!["group"];
    if detail {
        columns.extend(["asset", "account"]);
    }
    columns.extend(LOSS_COLUMNS);
    let mut report = with_bound(Report::new("Losses from unauthorized withdrawals", &columns), bound);
    for row in losses.rows(detail) {
        let mut cells: Vec<Cell> = vec![row.group.clone().into()];
        if detail {
            cells.push(row.asset.as_ref().map(|a| a.to_string()).into());
            cells.push(row.account.as_ref().map(|a| a.to_string()).into());
        }
        cells.extend(loss_cells(&row));
        report.push(cells);
    }
    report
}

pub fn history(
    ledger: &Ledger,
    account: &AccountId,
    asset: Option<&Asset>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    bound: &Bound,
) -> Result<Report> {
    let rows = ledger.history(account, asset, from, to, bound)?;
    let mut report = Report::new(
        format!("History of {account}"),
        &[
            "seq",
            "occurred_at",
            "recorded_at",
            "id",
            "kind",
            "asset",
            "change",
            "usd_value",
            "ref",
            "unauthorized",
            "balance_after",
        ],
    )
    .meta("account", account.to_string())
    .meta("known_at", time(bound.known_at));
    for r in rows {
        report.push(vec![
            r.seq.into(),
            r.occurred_at.to_rfc3339().into(),
            r.recorded_at.to_rfc3339().into(),
            r.event_id.to_string().into(),
            r.kind.event_name().into(),
            r.asset.map(|a| a.to_string()).into(),
            r.change.into(),
            r.usd_value.map(Cell::Usd).into(),
            r.reference.map(|x| x.to_string()).into(),
            r.unauthorized.into(),
            r.balance_after.into(),
        ]);
    }
    Ok(report)
}

pub fn replay(ledger: &Ledger, from: Timestamp, to: Timestamp, bound: &Bound, format: Format) -> Result<Report> {
    let (start, rows) = ledger.replay(from, to, bound)?;
    let narrow = format == Format::Table;
    let columns = vec![
        "seq",
        "occurred_at",
        "recorded_at",
        "id",
        "account",
        "kind",
        "asset",
        "change",
        "unauthorized",
        "balance_after",
    ];
    let groups = ["eth", "btc", "misc", "total"];
    let totals: Vec<String> = if narrow {
        ["eth_completed", "btc_completed", "total_prevented_usd", "total_completed_usd", "total_outstanding_usd"]
            .map(String::from)
            .to_vec()
    } else {
        groups.iter().flat_map(|g| LOSS_COLUMNS.iter().map(move |c| format!("{g}_{c}"))).collect()
    };
    let mut columns: Vec<String> = columns.into_iter().map(String::from).collect();
    columns.extend(totals);
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let start_total = start.iter().find(|r| r.group == "total").map(|r| r.cols.completed_usd()).unwrap_or_default();
    // A replay has no single as_of: each row is as of its own occurred_at.
    let mut report = Report::new(format!("Replay of {from} .. {to} in valid-time order"), &columns)
        .meta("known_at", time(bound.known_at))
        .meta("known_seq", bound.known_seq)
        .meta("from", time(from))
        .meta("to", time(to))
        .meta("events", rows.len() as u64)
        .meta("completed_usd_before_window", format!("{start_total:.2}"));
    for r in rows {
        let mut cells: Vec<Cell> = vec![
            r.seq.into(),
            r.occurred_at.to_rfc3339().into(),
            r.recorded_at.to_rfc3339().into(),
            r.event_id.to_string().into(),
            r.stream.to_string().into(),
            r.kind.event_name().into(),
            r.asset.as_ref().map(|a| a.to_string()).into(),
            r.asset.as_ref().map(|_| r.change).into(),
            r.unauthorized.into(),
            r.balance_after.into(),
        ];
        let by = |g: &str| r.totals.iter().find(|row| row.group == g).expect("group rows");
        if narrow {
            cells.push(by("ETH").cols.completed().into());
            cells.push(by("BTC").cols.completed().into());
            let t = by("total");
            cells.push(Cell::Usd(t.cols.prevented_usd));
            cells.push(Cell::Usd(t.cols.completed_usd()));
            cells.push(Cell::Usd(t.cols.outstanding_usd()));
        } else {
            for g in ["ETH", "BTC", "misc", "total"] {
                cells.extend(loss_cells(by(g)));
            }
        }
        report.push(cells);
    }
    Ok(report)
}

fn short_hash(h: &Hash) -> String {
    hex::encode(&h[..8])
}

pub fn log(ledger: &Ledger, from_seq: Seq, limit: u64) -> Result<Report> {
    let mut report = Report::new(
        "Log",
        &[
            "seq",
            "recorded_at",
            "occurred_at",
            "stream",
            "version",
            "id",
            "kind",
            "asset",
            "amount",
            "usd_value",
            "ref",
            "unauthorized",
            "schema",
            "hash",
        ],
    )
    .meta("head_seq", ledger.head().seq);
    let mut n = 0;
    ledger.for_each_envelope(from_seq, |env| {
        report.push(log_row(&env));
        n += 1;
        if n >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(report)
}

fn log_row(env: &Envelope) -> Vec<Cell> {
    let (asset, amount) = match env.event.asset_amount() {
        Some((a, m)) => (Cell::from(a.to_string()), Cell::from(m.value())),
        None => (Cell::Null, Cell::Null),
    };
    let unauthorized = matches!(env.event, Event::Withdrawn { unauthorized: true, .. });
    vec![
        env.seq.into(),
        env.recorded_at.to_rfc3339().into(),
        env.occurred_at.to_rfc3339().into(),
        env.stream.to_string().into(),
        env.stream_version.into(),
        env.event_id.to_string().into(),
        env.event.kind().event_name().into(),
        asset,
        amount,
        env.event.usd_value().map(|u| Cell::Usd(u.value())).into(),
        env.event.withdrawal_ref().map(|(id, _)| id.to_string()).into(),
        unauthorized.into(),
        u64::from(env.schema_version).into(),
        short_hash(&env.hash).into(),
    ]
}

/// `SEQ:HEX` or `HEX`.
pub fn parse_digest(s: &str) -> Result<(Option<Seq>, Hash)> {
    let (seq, hex_part) = match s.split_once(':') {
        Some((seq, h)) => (Some(seq.trim().parse::<Seq>().with_context(|| format!("digest seq {seq:?}"))?), h),
        None => (None, s),
    };
    let bytes = hex::decode(hex_part.trim()).with_context(|| format!("digest {s:?} is not SEQ:HEX or HEX"))?;
    let hash: Hash = bytes.try_into().map_err(|_| anyhow::anyhow!("digest {s:?} is not a 32-byte SHA-256 hash"))?;
    Ok((seq, hash))
}

pub fn verify(ledger: &Ledger, digest: Option<&str>, format: Format, out: &mut impl Write) -> Result<Exit> {
    let digest = digest.map(parse_digest).transpose()?;
    let bar = crate::import::bar(ledger.head().seq, "verifying");
    let report = ledger.verify(digest, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let digest_token = format!("{}:{}", report.head.seq, hex::encode(report.head.hash));
    match format {
        Format::Json => {
            let d: Vec<Value> =
                report.discrepancies.iter().map(|d| serde_json::json!({"seq": d.seq, "what": d.what})).collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "clean": report.clean(),
                    "events": report.events,
                    "head_seq": report.head.seq,
                    "digest": digest_token,
                    "first_bad_seq": report.first_bad_seq(),
                    "digest_found_at": report.digest_found_at,
                    "discrepancies": d,
                }))?
            )?;
        }
        _ => {
            if report.clean() {
                writeln!(out, "verified {} events: hash chain, invariants and indexes are clean", report.events)?;
                if let Some(s) = report.digest_found_at {
                    writeln!(out, "the given digest is the chain's link at seq {s}: nothing up to it has changed")?;
                }
                writeln!(out, "digest {digest_token}")?;
            } else {
                writeln!(out, "verify found {} discrepancies in {} events", report.discrepancies.len(), report.events)?;
                if let Some(s) = report.first_bad_seq() {
                    writeln!(out, "first bad seq: {s}")?;
                }
                for d in &report.discrepancies {
                    writeln!(out, "- {}", d.what)?;
                }
            }
        }
    }
    Ok(if report.clean() { Exit::Ok } else { Exit::Refused })
}

pub fn rebuild(ledger: &Ledger, projection: Option<&str>, dry_run: bool, out: &mut impl Write) -> Result<Exit> {
    let names: Vec<&str> = match projection {
        Some(p) if p == Balances::NAME || p == Losses::NAME => vec![p],
        Some(p) => bail!("unknown projection {p:?} (known: balances, losses)"),
        None => vec![Balances::NAME, Losses::NAME],
    };
    if dry_run {
        let bound = ledger.bound(None, None, None)?;
        let stored_b = ledger.balances_at(&bound)?;
        let stored_l = ledger.losses_at(&bound)?;
        let (mut fresh_b, mut fresh_l) = (Balances::default(), Losses::default());
        ledger.for_each_envelope(1, |env| {
            fresh_b.apply(&env, Timestamp::MAX);
            fresh_l.apply(&env, Timestamp::MAX);
            ControlFlow::Continue(())
        })?;
        fresh_b.assert_conserved();
        let mut diffs = Report::new(
            "Rebuild dry run: scratch fold vs stored projection",
            &["projection", "key", "stored", "rebuilt"],
        );
        if names.contains(&Balances::NAME) {
            let index = |b: &Balances| -> BTreeMap<(String, String), Decimal> {
                b.rows(None, None, true)
                    .into_iter()
                    .map(|r| ((r.account.to_string(), r.asset.to_string()), r.balance))
                    .collect()
            };
            let (a, b) = (index(&stored_b), index(&fresh_b));
            for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
                let (x, y) = (a.get(key).copied().unwrap_or_default(), b.get(key).copied().unwrap_or_default());
                if x != y {
                    diffs.push(vec!["balances".into(), format!("{} {}", key.0, key.1).into(), x.into(), y.into()]);
                }
            }
        }
        if names.contains(&Losses::NAME) {
            let (a, b) = (stored_l.rows(true), fresh_l.rows(true));
            if a != b {
                for (x, y) in a.iter().zip(b.iter()).filter(|(x, y)| x != y) {
                    diffs.push(vec![
                        "losses".into(),
                        format!("{} {}", x.group, x.account.as_ref().map(|a| a.to_string()).unwrap_or_default()).into(),
                        x.cols.completed_usd().into(),
                        y.cols.completed_usd().into(),
                    ]);
                }
                if a.len() != b.len() {
                    diffs.push(vec![
                        "losses".into(),
                        "row count".into(),
                        (a.len() as u64).into(),
                        (b.len() as u64).into(),
                    ]);
                }
            }
        }
        write!(out, "{}", diffs.render_table())?;
        writeln!(out, "{}", if diffs.rows.is_empty() { "no differences" } else { "differences found" })?;
        return Ok(if diffs.rows.is_empty() { Exit::Ok } else { Exit::Refused });
    }
    for name in names {
        let bar = crate::import::bar(ledger.head().seq, &format!("rebuilding {name}"));
        let r = ledger.rebuild(name, &mut |done, _| bar.set_position(done))?;
        bar.finish_and_clear();
        let rate = if r.seconds > 0.0 { r.events as f64 / r.seconds } else { 0.0 };
        writeln!(
            out,
            "rebuilt {}: {} events in {:.2} s ({:.0} events/s), {} checkpoints, swapped in atomically",
            r.projection, r.events, r.seconds, rate, r.checkpoints
        )?;
    }
    Ok(Exit::Ok)
}
