//! `custos report --html FILE`: one self-contained page an auditor can hand over (no network,
//! no external files): the loss table, the chart, the knowledge timeline of the window, the
//! register of unauthorized withdrawals, and the digest it was computed at with how to check
//! it. Everything on it is computed at one bound; nothing reads the clock but the bound's
//! defaults, so the same bound draws the same bytes.

use std::path::Path;

use anyhow::{bail, Context, Result};
use custos_domain::{EventKind, StreamId, Timestamp};
use custos_ledger::{Bound, Ledger, ReplayOrder};
use custos_report::{html_escape as esc, losses, withdrawals, Cell, Report};

use crate::plot;

/// Refuses, before any work, a page name that is not .html, a folder that does not exist, and
/// a backwards window.
pub fn check_options(path: &Path, from: Option<Timestamp>, to: Option<Timestamp>) -> Result<()> {
    let html = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if !html {
        bail!("--html {}: the report is one HTML page; name the file .html", path.display());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("--html {}: the folder {} does not exist", path.display(), parent.display());
        }
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            bail!("--from {f} is after --to {t}");
        }
    }
    Ok(())
}

/// The window the timeline and the chart cover: as given, else from the hour before the first
/// unauthorized withdrawal known at the bound to the hour after the last thing that happened
/// to any of them (reversal, reimbursement) or the end of a suspension, cut at `as_of`.
/// `None`: nothing unauthorized is known at the bound.
fn window(
    ledger: &Ledger,
    bound: &Bound,
    given: (Option<Timestamp>, Option<Timestamp>),
) -> Result<Option<(Timestamp, Timestamp)>> {
    // Nothing after as_of counts on this page: the window ends there at the latest.
    if let (Some(f), Some(t)) = given {
        return Ok((f <= bound.as_of).then(|| (f, t.min(bound.as_of))));
    }
    let rows = ledger.withdrawals(bound, None)?;
    let unauthorized: Vec<_> = rows.iter().filter(|r| r.classified.is_some()).collect();
    let Some(first) = unauthorized.iter().map(|r| r.occurred_at).min() else {
        return Ok(None);
    };
    let mut last = first;
    for r in &unauthorized {
        last = last.max(r.occurred_at);
        last = last.max(r.reversed.map_or(r.occurred_at, |x| x.1));
        last = last.max(r.reimbursed.map_or(r.occurred_at, |x| x.2));
    }
    for env in ledger.stream_events(&StreamId::Ledger, bound.known_seq)? {
        if env.occurred_at >= first && env.occurred_at <= bound.as_of {
            last = last.max(env.occurred_at);
        }
    }
    const HOUR: i64 = 3_600_000_000_000;
    let floor = |t: Timestamp| Timestamp::from_nanos(t.nanos().div_euclid(HOUR).saturating_sub(1).saturating_mul(HOUR));
    let ceil = |t: Timestamp| Timestamp::from_nanos(t.nanos().div_euclid(HOUR).saturating_add(2).saturating_mul(HOUR));
    let from = given.0.unwrap_or_else(|| floor(first));
    let to = given.1.unwrap_or_else(|| ceil(last)).min(bound.as_of);
    Ok((from <= to).then_some((from, to)))
}

/// The window's facts in the order the ledger learned them, the rows that changed what was
/// known (a flag, a reversal, a reimbursement, a withdrawal marked when recorded) and the
/// suspensions, each with the loss totals known right after it.
fn timeline(ledger: &Ledger, from: Timestamp, to: Timestamp, bound: &Bound) -> Result<Report> {
    let (_, rows) = ledger.replay(from, to, bound, ReplayOrder::Recorded)?;
    let mut report = Report::new(
        "Knowledge timeline: what the ledger learned, in the order it learned it",
        &[
            "seq",
            "recorded_at",
            "occurred_at",
            "kind",
            "id",
            "account",
            "asset",
            "change",
            "ref",
            "classified_how",
            "total_attempted_usd",
            "total_prevented_usd",
            "total_completed_usd",
            "total_reimbursed_usd",
            "total_outstanding_usd",
        ],
    );
    for r in rows {
        let learned = match r.kind {
            EventKind::Flag
            | EventKind::Reversal
            | EventKind::Reimbursement
            | EventKind::Suspend
            | EventKind::Resume => true,
            EventKind::Withdrawal => r.unauthorized,
            EventKind::Deposit => false,
        };
        if !learned {
            continue;
        }
        let total = r.totals.iter().find(|t| t.group == "total").map(|t| t.cols).unwrap_or_default();
        report.push(vec![
            r.seq.into(),
            r.recorded_at.to_rfc3339().into(),
            r.occurred_at.to_rfc3339().into(),
            r.kind.event_name().into(),
            r.event_id.to_string().into(),
            r.stream.account().map(|a| a.to_string()).into(),
            r.asset.map(|a| a.to_string()).into(),
            r.asset.map(|_| r.change).into(),
            r.reference.map(|x| x.to_string()).into(),
            r.classified.map(|c| c.1.name().to_string()).into(),
            Cell::Usd(total.attempted_usd),
            Cell::Usd(total.prevented_usd),
            Cell::Usd(total.completed_usd()),
            Cell::Usd(total.reimbursed_usd),
            Cell::Usd(total.outstanding_usd()),
        ]);
    }
    Ok(report)
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1250px;color:#222}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}\
table{border-collapse:collapse;font-size:.78em;margin:.5em 0}caption{text-align:left;font-weight:bold;padding:.3em 0}\
th,td{border:1px solid #ddd;padding:.2em .45em;white-space:nowrap}th{background:#f3f3f3}td.num{text-align:right}\
code,pre{background:#f6f6f6;padding:.1em .3em}pre{padding:.6em;overflow-x:auto}.scroll{overflow-x:auto}\
@media print{body{max-width:none;margin:0}.scroll{overflow:visible}table{font-size:.55em}}";

/// The page.
pub fn incident_html(ledger: &Ledger, bound: &Bound, given: (Option<Timestamp>, Option<Timestamp>)) -> Result<String> {
    let known_seq = bound.known_seq;
    // The chain's link at the bound's seq (none for an empty log).
    let digest = match known_seq {
        0 => None,
        seq => Some(ledger.envelope(seq)?.with_context(|| format!("seq {seq} is not in the log"))?),
    }
    .map(|env| format!("{known_seq}:{}", hex::encode(env.hash)));
    let loss_state = ledger.losses_at(bound)?;
    let loss_table = losses(&loss_state, bound, false);
    let register = withdrawals(ledger, bound, None, true)?;
    let window = window(ledger, bound, given)?;

    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<title>Custos incident report: unauthorized withdrawals</title>\n");
    h.push_str(&format!("<style>{STYLE}</style>\n</head>\n<body>\n"));
    h.push_str("<h1>Incident report: unauthorized withdrawals</h1>\n");
    h.push_str("<p>Computed by Custos from its event log at one bound: every figure below counts the events that happened by <em>as of</em> (valid time) and that the ledger had recorded by <em>known at</em> (transaction time).</p>\n");
    h.push_str("<dl id=\"bound\">\n");
    let mut fact = |name: &str, value: String| h.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", esc(name), value));
    fact("as of", format!("<code>{}</code>", esc(&bound.as_of.to_rfc3339())));
    fact(
        "known at",
        match bound.at_seq {
            Some(0) => "the log as it stood at seq 0: empty".to_string(),
            Some(s) => format!(
                "the log as it stood at seq {s} (recorded up to <code>{}</code>)",
                esc(&bound.known_at.to_rfc3339())
            ),
            None => format!("<code>{}</code> (the log up to seq {known_seq})", esc(&bound.known_at.to_rfc3339())),
        },
    );
    fact(
        "digest at that seq",
        match &digest {
            Some(d) => format!("<code id=\"digest\">{}</code>", esc(d)),
            None => "none: the log was empty at that bound".to_string(),
        },
    );
    fact(
        "window",
        match window {
            Some((f, t)) => format!(
                "<code>{}</code> to <code>{}</code>{}",
                esc(&f.to_rfc3339()),
                esc(&t.to_rfc3339()),
                if given.1.is_some_and(|g| g > t) { " (cut at as of)" } else { "" }
            ),
            None if given.0.is_some() => "none: the window starts after as of".to_string(),
            None => "none: no withdrawal is known unauthorized at this bound".to_string(),
        },
    );
    fact("unauthorized withdrawals", register.rows.len().to_string());
    h.push_str("</dl>\n");

    h.push_str("<h2>Losses</h2>\n<p>Completed = attempted - prevented (reversed); outstanding = completed - reimbursed. Units for ETH and BTC; the misc group (many assets) in USD only. A withdrawal without a USD value is counted in <code>withdrawals_without_usd</code>, never as $0.</p>\n");
    h.push_str(&format!("<div class=\"scroll\">{}</div>\n", loss_table.html_table("losses")));

    if let Some((from, to)) = window {
        h.push_str("<h2>The window</h2>\n");
        let svg = plot::incident_svg(ledger, from, to, bound)?;
        h.push_str(&format!("<figure id=\"chart\">\n{svg}</figure>\n"));
        let tl = timeline(ledger, from, to, bound)?;
        h.push_str(&format!("<p>{} facts learned in the window. A withdrawal that was not marked when recorded counts from its flag's row: the totals grow as the investigation unfolds.</p>\n", tl.rows.len()));
        h.push_str(&format!("<div class=\"scroll\">{}</div>\n", tl.html_table("timeline")));
    }

    h.push_str("<h2>Register of unauthorized withdrawals</h2>\n<p>Each withdrawal known unauthorized at the bound: when and how the ledger learned it (<code>classified_at</code>: its own recorded_at if marked, else its first flag's), its reversal, its reimbursements and what is still owed.</p>\n");
    h.push_str(&format!("<div class=\"scroll\">{}</div>\n", register.html_table("register")));

    let as_of = bound.as_of.to_rfc3339();
    h.push_str("<h2>How to check this report</h2>\n<ol>\n");
    if let Some(d) = &digest {
        h.push_str(&format!(
            "<li>On the ledger, <code>custos verify --digest {}</code> re-reads the whole log and checks that it still holds, at seq {known_seq}, exactly the events this report was computed from (the hash chain, the invariants and the indexes).</li>\n",
            esc(d)
        ));
    }
    h.push_str(&format!(
        "<li><code>custos report --as-of {} --at-seq {known_seq} --html FILE</code> computes this page again from the log as it stood at that seq; <code>custos losses --as-of {} --at-seq {known_seq} --format json</code> gives the loss table alone.</li>\n",
        esc(&as_of),
        esc(&as_of)
    ));
    h.push_str("<li>Every figure is an exact decimal from the events; none is rounded except USD values, which are recorded in cents.</li>\n</ol>\n");
    h.push_str("</body>\n</html>\n");
    Ok(h)
}
