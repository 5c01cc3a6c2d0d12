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

use crate::Exit;

pub fn verify(ledger: &Ledger, digest: Option<&str>, format: Format, out: &mut impl Write) -> Result<Exit> {
    let digest = digest.map(parse_digest).transpose()?;
    let bar = crate::import::bar(ledger.head().seq, "verifying");
    let report = ledger.verify(digest, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let v = custos_report::verify_json(&report);
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
        _ => write!(out, "{}", custos_report::verify_text(&v))?,
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
        // The Merkle tree's stored nodes, which a rebuild rewrites when they differ.
        for name in ledger.stale_tree_nodes()? {
            diffs.push(vec!["merkle tree".into(), name.into(), "differs or missing".into(), "from the records".into()]);
        }
        write!(out, "{}", diffs.render_table())?;
        writeln!(out, "{}", if diffs.rows.is_empty() { "no differences" } else { "differences found" })?;
        return Ok(if diffs.rows.is_empty() { Exit::Ok } else { Exit::Refused });
    }
    let bar = crate::import::bar(ledger.head().seq, "rebuilding");
    let reports = ledger.rebuild_all(&names, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    for notice in ledger.take_notices() {
        eprintln!("note: {notice}");
    }
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

/// After a rebuild: the Merkle tree's stored nodes that differ from the records are rewritten
/// only when asked (`--rewrite-tree`), saying the root before and after; otherwise said and
/// left. With the hash chain intact, a differing node is damage to the node, or a log
/// rewritten with its chain recomputed: rewriting it silently would erase the evidence.
pub fn tree_after_rebuild(ledger: &Ledger, rewrite: bool, out: &mut impl Write) -> Result<()> {
    if rewrite {
        let (n, before, after) = ledger.rewrite_tree()?;
        if n > 0 {
            writeln!(
                out,
                "rewrote {n} Merkle tree node(s) from the records: the root at the head was {}, is {}",
                hex::encode(before),
                hex::encode(after)
            )?;
        }
        return Ok(());
    }
    let stale = ledger.stale_tree_nodes()?;
    if !stale.is_empty() {
        eprintln!(
            "note: {} Merkle tree node(s) differ from the records ({}{}) and were left as they are: check the log against a digest or signed checkpoint taken earlier, then `custos rebuild --rewrite-tree`",
            stale.len(),
            stale[0],
            if stale.len() > 1 { ", ..." } else { "" }
        );
    }
    Ok(())
}
