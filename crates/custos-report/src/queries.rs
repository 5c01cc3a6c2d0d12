//! The query reports, built from the ledger's answers: the same tables for the CLI and the
//! server.

use std::ops::ControlFlow;

use custos_domain::{AccountId, Asset, Envelope, Event, Hash, Seq, Timestamp};
use custos_ledger::{Bound, Classification, Ledger, LedgerError, ReplayOrder};
use custos_projection::{LossRow, Losses};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::report::{Cell, Format, Report};

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("digest {0:?} is not SEQ:HEX or HEX of a 32-byte SHA-256 hash")]
    BadDigest(String),
}

fn time(t: Timestamp) -> Value {
    Value::String(t.to_rfc3339())
}

/// The `classified_at` and `classified_how` cells of an event that concerns a withdrawal.
fn classified_cells(c: Option<Classification>) -> [Cell; 2] {
    [c.map(|c| c.0.to_rfc3339()).into(), c.map(|c| c.1.name().to_string()).into()]
}

/// `valid` or `recorded`.
pub fn parse_replay_order(s: &str) -> Result<ReplayOrder, String> {
    match s {
        "valid" => Ok(ReplayOrder::Valid),
        "recorded" => Ok(ReplayOrder::Recorded),
        _ => Err(format!(
            "{s:?} is not a replay order: valid (as things happened) or recorded (as the ledger learned them)"
        )),
    }
}

/// The facts every point-in-time report states.
pub fn with_bound(report: Report, bound: &Bound) -> Report {
    with_known(report.meta("as_of", time(bound.as_of)), bound)
}

/// The transaction-time half of the bound, for a report that takes no `as_of` (assets).
fn with_known(report: Report, bound: &Bound) -> Report {
    // Known at the beginning of time (`at_seq` 0: an empty log) has no moment to show.
    let known_at = if bound.known_at == Timestamp::MIN { Value::Null } else { time(bound.known_at) };
    let r = report.meta("known_at", known_at);
    match bound.at_seq {
        Some(s) => r.meta("at_seq", s),
        None => r.meta("known_seq", bound.known_seq),
    }
}

/// Balances at the bound: of every account (`accounts` empty), or of the accounts named, in
/// the order named, each from its own events.
pub fn balances(
    ledger: &Ledger,
    bound: &Bound,
    accounts: &[AccountId],
    asset: Option<&Asset>,
    all: bool,
) -> Result<Report> {
    let mut report = with_bound(Report::new("Balances", &["account", "asset", "balance"]), bound);
    let mut push = |state: &custos_projection::Balances, account: Option<&AccountId>| {
        for row in state.rows(account, asset, all) {
            report.push(vec![row.account.to_string().into(), row.asset.to_string().into(), row.balance.into()]);
        }
    };
    if accounts.is_empty() {
        push(&ledger.balances_at(bound)?, None);
    }
    for a in accounts {
        push(&ledger.account_balances_at(a, bound)?, Some(a));
    }
    Ok(report)
}

/// The accounts and asset a query named that the ledger has never seen up to `known_seq`
/// ("account X", "asset S"). With one name and rows to show, the name is known: nothing to
/// look up.
pub fn never_seen(
    ledger: &Ledger,
    known_seq: Seq,
    report: &Report,
    accounts: &[AccountId],
    asset: Option<&Asset>,
) -> Result<Vec<String>> {
    let names = accounts.len() + usize::from(asset.is_some());
    if names == 0 || (names == 1 && !report.rows.is_empty()) {
        return Ok(Vec::new());
    }
    let mut unknown = Vec::new();
    for a in accounts {
        if !ledger.knows_account(a, known_seq)? {
            unknown.push(format!("account {a}"));
        }
    }
    if let Some(s) = asset {
        if !ledger.assets(known_seq)?.iter().any(|r| &r.asset == s) {
            unknown.push(format!("asset {s}"));
        }
    }
    Ok(unknown)
}

/// What the CLI and the server say about names the ledger has never seen.
pub fn never_seen_message(unknown: &[String], known_seq: Seq) -> String {
    let hint = if unknown.iter().any(|u| u.starts_with("asset")) {
        "; `custos assets` lists the symbols it knows"
    } else {
        "; check the id (`custos log --account ID` lists an account's events)"
    };
    format!("the ledger has never seen {} (no event up to seq {known_seq}){hint}", unknown.join(", "))
}

pub const LOSS_COLUMNS: [&str; 12] = [
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
    "withdrawals_without_usd",
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
        c.unpriced.into(),
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
    let report = Report::new(
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
            "classified_at",
            "classified_how",
            "balance_after",
        ],
    )
    .meta("account", account.to_string());
    // The whole bound, as every point-in-time report states it (as_of included: it cuts the
    // history), so the answer can be asked again exactly.
    let mut report = with_bound(report, bound);
    for r in rows {
        let mut cells: Vec<Cell> = vec![
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
        ];
        cells.extend(classified_cells(r.classified));
        cells.push(r.balance_after.into());
        report.push(cells);
    }
    Ok(report)
}

pub fn replay(
    ledger: &Ledger,
    from: Timestamp,
    to: Timestamp,
    bound: &Bound,
    order: ReplayOrder,
    format: Format,
) -> Result<Report> {
    let (start, rows) = ledger.replay(from, to, bound, order)?;
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
        "ref",
        "unauthorized",
        "classified_at",
        "classified_how",
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
    let (title, order_name) = match order {
        // Each row is as of its own occurred_at: a replay in valid time has no single as_of.
        ReplayOrder::Valid => (format!("Replay of {from} .. {to} in valid-time order"), "valid"),
        // Each row's totals: before the window, plus the window's facts recorded up to it.
        ReplayOrder::Recorded => {
            (format!("Replay of {from} .. {to} in the order the ledger learned it (recorded order)"), "recorded")
        }
    };
    let mut report = with_known(Report::new(title, &columns).meta("order", order_name), bound)
        .meta("from", time(from))
        .meta("to", time(to))
        .meta("events", rows.len() as u64);
    report = match order {
        ReplayOrder::Valid => report.meta("completed_usd_before_window", format!("{start_total:.2}")),
        // The first totals in recorded order: as of the window's end, known before its first row.
        ReplayOrder::Recorded => report.meta("completed_usd_known_before_first_row", format!("{start_total:.2}")),
    };
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
            r.reference.as_ref().map(|x| x.to_string()).into(),
            r.unauthorized.into(),
        ];
        cells.extend(classified_cells(r.classified));
        cells.push(r.balance_after.into());
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

/// Which events a log listing shows (every condition given must hold).
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub kind: Option<custos_domain::EventKind>,
    pub account: Option<AccountId>,
    /// Valid time, inclusive.
    pub occurred: (Option<Timestamp>, Option<Timestamp>),
    /// Transaction time, inclusive.
    pub recorded: (Option<Timestamp>, Option<Timestamp>),
}

impl LogFilter {
    fn admits(&self, env: &Envelope) -> bool {
        let within = |t: Timestamp, (lo, hi): (Option<Timestamp>, Option<Timestamp>)| {
            lo.is_none_or(|l| t >= l) && hi.is_none_or(|h| t <= h)
        };
        self.kind.is_none_or(|k| env.event.kind() == k)
            && self.account.as_ref().is_none_or(|a| env.stream.account() == Some(a))
            && within(env.occurred_at, self.occurred)
            && within(env.recorded_at, self.recorded)
    }
}

pub fn log(ledger: &Ledger, from_seq: Seq, limit: u64, filter: &LogFilter) -> Result<Report> {
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
        // recorded_at is monotone in seq: past the upper bound nothing more can match.
        if filter.recorded.1.is_some_and(|h| env.recorded_at > h) {
            return ControlFlow::Break(());
        }
        if !filter.admits(&env) {
            return ControlFlow::Continue(());
        }
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
    // The withdrawal's own marker (set when it was recorded); other events have none.
    let unauthorized = match env.event {
        Event::Withdrawn { unauthorized, .. } => Cell::Bool(unauthorized),
        _ => Cell::Null,
    };
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
        unauthorized,
        u64::from(env.schema_version).into(),
        short_hash(&env.hash).into(),
    ]
}

/// `SEQ:HEX` or `HEX`.
pub fn parse_digest(s: &str) -> Result<(Option<Seq>, Hash)> {
    let bad = || ReportError::BadDigest(s.to_string());
    let (seq, hex_part) = match s.split_once(':') {
        Some((seq, h)) => (Some(seq.trim().parse::<Seq>().map_err(|_| bad())?), h),
        None => (None, s),
    };
    let bytes = hex::decode(hex_part.trim()).map_err(|_| bad())?;
    let hash: Hash = bytes.try_into().map_err(|_| bad())?;
    Ok((seq, hash))
}

/// The withdrawal register at the bound: one row per withdrawal, with when and how it became
/// known unauthorized, its reversal, its reimbursements and what is still owed.
pub fn withdrawals(
    ledger: &Ledger,
    bound: &Bound,
    account: Option<&AccountId>,
    unauthorized_only: bool,
) -> Result<Report> {
    let rows = ledger.withdrawals(bound, account)?;
    let mut report = with_bound(
        Report::new(
            "Withdrawal register",
            &[
                "seq",
                "id",
                "account",
                "asset",
                "amount",
                "usd_value",
                "occurred_at",
                "auth_factor",
                "unauthorized",
                "classified_at",
                "classified_how",
                "reversed",
                "reversed_at",
                "reimbursed",
                "reimbursed_usd",
                "reimbursed_at",
                "reimbursements",
                "outstanding",
            ],
        ),
        bound,
    );
    if let Some(a) = account {
        report = report.meta("account", a.to_string());
    }
    for r in rows.into_iter().filter(|r| !unauthorized_only || r.classified.is_some()) {
        let mut cells: Vec<Cell> = vec![
            r.seq.into(),
            r.id.to_string().into(),
            r.account.to_string().into(),
            r.asset.to_string().into(),
            r.amount.into(),
            r.usd_value.map(Cell::Usd).into(),
            r.occurred_at.to_rfc3339().into(),
            r.auth_factor.map(str::to_string).into(),
            r.classified.is_some().into(),
        ];
        cells.extend(classified_cells(r.classified));
        cells.extend([
            r.reversed.map(|x| x.0).into(),
            r.reversed.map(|x| x.1.to_rfc3339()).into(),
            r.reimbursed.map(|x| x.0).into(),
            r.reimbursed.map(|x| Cell::Usd(x.1)).into(),
            r.reimbursed.map(|x| x.2.to_rfc3339()).into(),
            r.reimbursed.map(|x| x.3).into(),
            r.outstanding.into(),
        ]);
        report.push(cells);
    }
    Ok(report)
}

/// Every asset the ledger has seen up to the bound: symbol, decimal places, first event, count.
pub fn assets(ledger: &Ledger, bound: &Bound) -> Result<Report> {
    let mut report = with_known(
        Report::new("Assets", &["asset", "decimal_places", "first_seq", "first_recorded_at", "events"]),
        bound,
    );
    for a in ledger.assets(bound.known_seq)? {
        report.push(vec![
            a.asset.to_string().into(),
            u64::from(a.asset.scale()).into(),
            a.first_seq.into(),
            a.first_recorded_at.to_rfc3339().into(),
            a.events.into(),
        ]);
    }
    Ok(report)
}

/// A verification's outcome as JSON: the CLI's `--format json`, the server's finished job,
/// and what [`verify_text`] prints.
pub fn verify_json(r: &custos_ledger::VerifyReport) -> Value {
    serde_json::json!({
        "clean": r.clean(),
        "events": r.events,
        "head_seq": r.head.seq,
        "digest": format!("{}:{}", r.head.seq, hex::encode(r.head.hash)),
        "first_bad_seq": r.first_bad_seq(),
        "digest_found_at": r.digest_found_at,
        "discrepancies_not_listed": r.omitted,
        "discrepancies": r.discrepancies.iter().map(|d| serde_json::json!({"seq": d.seq, "what": d.what})).collect::<Vec<_>>(),
    })
}

/// The text of a verification, from [`verify_json`] (locally or from the server: the same).
pub fn verify_text(v: &Value) -> String {
    let mut out = String::new();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    if v["clean"].as_bool().unwrap_or(false) {
        out.push_str(&format!(
            "verified {} events: hash chain, Merkle tree, invariants and indexes are clean\n",
            n("events")
        ));
        if let Some(s) = v["digest_found_at"].as_u64() {
            out.push_str(&format!("the given digest is the chain's link at seq {s}: nothing up to it has changed\n"));
        }
        out.push_str(&format!("digest {}\n", v["digest"].as_str().unwrap_or_default()));
        return out;
    }
    let listed = v["discrepancies"].as_array().map_or(0, Vec::len) as u64;
    let omitted = n("discrepancies_not_listed");
    let found = listed.saturating_add(omitted);
    let noun = if found == 1 { "discrepancy" } else { "discrepancies" };
    out.push_str(&format!("verify found {found} {noun} in {} events\n", n("events")));
    if omitted > 0 {
        out.push_str(&format!("(the first {listed} are listed; {omitted} more are not)\n"));
    }
    if let Some(s) = v["first_bad_seq"].as_u64() {
        out.push_str(&format!("first bad seq: {s}\n"));
    }
    for d in v["discrepancies"].as_array().into_iter().flatten() {
        out.push_str(&format!("- {}\n", d["what"].as_str().unwrap_or_default()));
    }
    out
}
