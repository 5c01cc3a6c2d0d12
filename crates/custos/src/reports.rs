//! The CLI's `verify` and `rebuild` output.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{bail, Result};
use custos_domain::Timestamp;
use custos_ledger::Ledger;
use custos_projection::{Balances, Losses, Projection};
use custos_report::{parse_digest, Format, Report};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::Exit;

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
                    "discrepancies_not_listed": report.omitted,
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
                let listed = report.discrepancies.len() as u64;
                writeln!(out, "verify found {} discrepancies in {} events", listed + report.omitted, report.events)?;
                if report.omitted > 0 {
                    writeln!(out, "(the first {listed} are listed; {} more are not)", report.omitted)?;
                }
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
        ledger.try_for_each_envelope(1, |env| {
            fresh_b.apply(&env, Timestamp::MAX)?;
            fresh_l.apply(&env, Timestamp::MAX)?;
            Ok(ControlFlow::Continue(()))
        })?;
        fresh_b.check_conserved().map_err(custos_ledger::LedgerError::from)?;
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
    let bar = crate::import::bar(ledger.head().seq, "rebuilding");
    let reports = ledger.rebuild_all(&names, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let (events, seconds) = reports.first().map_or((0, 0.0), |r| (r.events, r.seconds));
    let rate = if seconds > 0.0 { events as f64 / seconds } else { 0.0 };
    let what: Vec<String> =
        reports.iter().map(|r| format!("{} ({} checkpoints)", r.projection, r.checkpoints)).collect();
    writeln!(
        out,
        "rebuilt {} from {events} events in one scan: {seconds:.2} s ({rate:.0} events/s), swapped in atomically",
        what.join(" and ")
    )?;
    Ok(Exit::Ok)
}
