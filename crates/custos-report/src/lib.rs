//! Custos reports: the ledger's answers as one description (`Report`: a title, the facts it
//! answered for, columns and rows) rendered as an aligned table, CSV or JSON. The CLI and the
//! server share it, so the same question gets the same bytes from either.

pub mod liabilities;
pub mod proofs;
mod queries;
mod report;

pub use queries::{
    assets, balances, history, log, loss_cells, losses, never_seen, never_seen_message, parse_digest,
    parse_replay_order, replay, verify_json, verify_text, with_bound, withdrawals, LogFilter, ReportError, Result,
    LOSS_COLUMNS,
};
pub use report::{html_escape, Cell, Format, Report};
