//! `custos demo`: the January 2022 incident, imported into a ledger, verified, and reported the
//! way an auditor would first ask for it. The data set is compiled into the binary, so the demo
//! runs from any directory.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use custos_domain::{Event, StreamId, Timestamp};
use custos_ledger::{ImportFormat, Ledger};
use serde_json::{json, Value};

use crate::cli::{open_ledger, render};
use crate::{import, plot, Exit};
use custos_report::{loss_cells, losses, LOSS_COLUMNS};

/// Where the USD columns start in `LOSS_COLUMNS` (after the five unit columns).
const USD_COLUMNS_FROM: usize = 5;
use custos_report::{Cell, Format, Report};

/// The incident's command file (fixtures/incident-2022-01/commands.csv).
pub const INCIDENT_CSV: &[u8] = include_bytes!("../../../fixtures/incident-2022-01/commands.csv");

pub const WINDOW_FROM: &str = "2022-01-17T19:00:00Z";
pub const WINDOW_TO: &str = "2022-01-19T12:00:00Z";

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid constant")
}

/// The moments the report shows the loss table at, from the ledger's own events: (what
/// happened, when the ledger recorded it). Each is shown as known then (`as_of` = `known_at`
/// = that moment), so the table reads as the incident unfolded.
fn moments(ledger: &Ledger) -> Result<Vec<(String, Timestamp)>> {
    let (mut suspended, mut resumed, mut first_flag, mut last_flag, mut last_reimbursement) =
        (None, None, None, None, None);
    ledger.for_each_envelope(1, |env| {
        let t = env.recorded_at;
        match &env.event {
            Event::WithdrawalsSuspended { .. } if suspended.is_none() => suspended = Some(t),
            Event::WithdrawalsResumed => resumed = Some(t),
            Event::WithdrawalFlagged(_) => {
                first_flag.get_or_insert(t);
                last_flag = Some(t);
            }
            Event::Reimbursed { .. } => last_reimbursement = Some(t),
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    })?;
    let mut v: Vec<(String, Timestamp)> = [
        ("withdrawals suspended", suspended),
        ("first withdrawal flagged unauthorized", first_flag),
        ("last withdrawal flagged unauthorized", last_flag),
        ("withdrawals resumed", resumed),
        ("last reimbursement", last_reimbursement),
    ]
    .into_iter()
    .filter_map(|(what, t)| t.map(|t| (format!("{what} (as known then)"), t)))
    .collect();
    v.sort_by_key(|(_, t)| *t);
    Ok(v)
}

/// Refuses what the demo cannot do, before it does any work.
pub fn check_options(format: Format, plot: Option<&Path>) -> Result<()> {
    if format == Format::Csv {
        bail!(
            "the demo's report is several tables: use --format table or json (for CSV, keep the ledger with --db DIR and run e.g. `custos --db DIR losses --format csv`)"
        );
    }
    if let Some(p) = plot {
        let svg = p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if !svg {
            bail!("--plot {}: the chart is drawn as SVG; name the file .svg", p.display());
        }
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("--plot {}: the folder {} does not exist", p.display(), parent.display());
        }
    }
    Ok(())
}

pub async fn run(format: Format, plot_path: Option<&Path>, keep: Option<&str>) -> Result<Exit> {
    check_options(format, plot_path)?;
    let temp;
    let dir = match keep {
        Some(d) => d.to_string(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_str().context("the temporary folder's path is not UTF-8")?.to_string()
        }
    };
    let ledger = open_ledger(&dir, "custos demo")?;
    let summary = import::import_reader(
        &ledger,
        INCIDENT_CSV,
        ImportFormat::Csv,
        INCIDENT_CSV.len() as u64,
        import::IMPORT_BATCH_COMMANDS as usize,
        "importing",
    )
    .await?;
    if summary.rejected > 0 {
        bail!("the incident data set did not import cleanly: {}", summary.rejections.join("; "));
    }
    eprintln!("{}", summary.line("imported the incident data set"));
    let verify = ledger.verify(None, &mut |_, _| {})?;
    if !verify.clean() {
        bail!("the demo ledger does not verify: {:?}", verify.discrepancies);
    }
    let report = build(&ledger)?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report.json)?)?,
        _ => write!(out, "{}", report.text)?,
    }
    if let Some(p) = plot_path {
        // At the head's seq, so the chart says what it was drawn from, not when.
        let bound = ledger.bound(None, None, Some(ledger.head().seq))?;
        let svg = plot::incident_svg(&ledger, ts(WINDOW_FROM), ts(WINDOW_TO), &bound)?;
        std::fs::write(p, svg).with_context(|| format!("cannot write the chart to {}", p.display()))?;
        eprintln!("wrote the incident chart to {}", p.display());
    }
    if keep.is_some() {
        eprintln!("the demo ledger is kept in {}", dir);
    }
    ledger.close()?;
    Ok(Exit::Ok)
}

pub struct DemoReport {
    pub json: Value,
    pub text: String,
}

pub fn build(ledger: &Arc<Ledger>) -> Result<DemoReport> {
    let head = ledger.head();
    let digest = format!("{}:{}", head.seq, hex::encode(head.hash));
    let now_bound = ledger.bound(None, None, None)?;
    let now = now_bound.as_of;

    // The suspension window, from the ledger's own control stream.
    let control = ledger.stream_events(&StreamId::Ledger, head.seq)?;
    let mut windows = Vec::new();
    for env in &control {
        match &env.event {
            Event::WithdrawalsSuspended { .. } => windows.push((env.occurred_at, None)),
            Event::WithdrawalsResumed => {
                if let Some(last) = windows.last_mut() {
                    last.1 = Some(env.occurred_at);
                }
            }
            _ => {}
        }
    }
    let mut suspension = Report::new("Withdrawal suspensions", &["suspended_at", "resumed_at", "hours"]);
    for (s, r) in &windows {
        // A duration in hours for the table: an i64 of nanoseconds over a constant cannot
        // overflow a Decimal.
        #[allow(clippy::arithmetic_side_effects)]
        let hours = r.map(|r| {
            rust_decimal::Decimal::from(r.nanos() - s.nanos()) / rust_decimal::Decimal::from(3_600_000_000_000i64)
        });
        suspension.push(vec![
            s.to_rfc3339().into(),
            r.map(|r| r.to_rfc3339()).into(),
            hours.map(|h| h.round_dp(2)).into(),
        ]);
    }

    // The published table: after reimbursement, as known today.
    let now_losses = ledger.losses_at(&now_bound)?;
    let published = losses(&now_losses, &now_bound, false);

    // Affected accounts: prevented in full, or completed (and then reimbursed).
    let detail = now_losses.rows(true);
    let per_account: Vec<_> = detail.iter().filter(|r| r.account.is_some() && !r.cols.attempted.is_zero()).collect();
    let mut accounts = std::collections::BTreeMap::new();
    for r in &per_account {
        let e = accounts.entry(r.account.clone().expect("account rows")).or_insert((false, false));
        if !r.cols.completed().is_zero() {
            e.1 = true;
        } else {
            e.0 = true;
        }
    }
    let completed_accounts = accounts.values().filter(|(_, c)| *c).count() as u64;
    let prevented_accounts = accounts.len() as u64 - completed_accounts;

    // The same table at other moments.
    // The USD columns of the loss table (units would mix assets across groups here).
    let mut columns = vec!["moment", "as_of", "known_at", "group"];
    columns.extend(&LOSS_COLUMNS[USD_COLUMNS_FROM..]);
    let mut moment_rows = Report::new("The loss table at other moments", &columns);
    let mut all_moments = vec![];
    let mut named: Vec<(String, Timestamp, Timestamp)> =
        moments(ledger)?.into_iter().map(|(what, t)| (what, t, t)).collect();
    named.push(("today".to_string(), now, now));
    for (name, as_of, known_at) in &named {
        let bound = ledger.bound(Some(*as_of), Some(*known_at), None)?;
        let l = ledger.losses_at(&bound)?;
        let rep = losses(&l, &bound, false);
        for row in l.rows(false) {
            let mut cells: Vec<Cell> = vec![
                name.clone().into(),
                as_of.to_rfc3339().into(),
                known_at.to_rfc3339().into(),
                row.group.clone().into(),
            ];
            cells.extend(loss_cells(&row).into_iter().skip(USD_COLUMNS_FROM));
            moment_rows.push(cells);
        }
        all_moments.push(json!({"moment": name, "report": rep.to_json()}));
    }

    let json = json!({
        "ledger": {"events": head.seq, "digest": digest, "verified": true},
        "losses": published.to_json(),
        "suspensions": suspension.to_json()["rows"].clone(),
        "affected_accounts": {
            "count": accounts.len(),
            "prevented_in_full": prevented_accounts,
            "completed_and_reimbursed": completed_accounts,
        },
        "moments": all_moments,
    });

    let mut text = String::new();
    text.push_str("Custos demo: the January 2022 custody incident\n");
    text.push_str(&format!(
        "  ledger: {} events, verified clean (hash chain, invariants, indexes); digest {digest}\n\n",
        head.seq
    ));
    text.push_str(&render(&published, Format::Table));
    text.push('\n');
    text.push_str(&render(&suspension, Format::Table));
    text.push_str(&format!(
        "\nAffected accounts: {} ({} prevented in full, {} completed and reimbursed)\n\n",
        accounts.len(),
        prevented_accounts,
        completed_accounts
    ));
    text.push_str(&render(&moment_rows, Format::Table));
    text.push_str("\nNext: custos replay --from 2022-01-17T20:00:00Z --to 2022-01-18T17:46:00Z   (with --db to keep the ledger)\n");
    Ok(DemoReport { json, text })
}
