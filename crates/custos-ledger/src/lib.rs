//! The Custos command side and the ledger handle: deciding commands against the write model,
//! the group-commit writer, import, point-in-time queries over the projections, and `verify`.
//!
//! The log is a [`custos_log::Log`] on any engine: this crate sees records, typed index
//! entries and metadata, and nothing of sled or PostgreSQL beyond opening them.

mod import;
mod ledger;
mod metrics;
mod migrate;
mod model;
mod query;
mod rejection;
mod verify;

pub use import::{
    json_line, parse_csv, parse_json_command, parse_jsonl, ImportFormat, ImportLine, LineError, LineSplitter, RawLine,
    IMPORT_FIELDS, LINE_BYTES_MAX,
};
pub use ledger::{Appended, DryRun, ErrorKind, Ledger, LedgerConfig, LedgerError, Outcome, Queued, RebuildReport};
pub use metrics::{Histogram, Metrics, LATENCY_BUCKETS_US};
pub use migrate::MigrateReport;
pub use model::{command_of, reimbursement_usd, Decision, NewEvent, WriteModel};
pub use query::{Bound, HistoryRow, ReplayRow};
pub use rejection::Rejection;
pub use verify::{Discrepancy, VerifyReport};

pub use custos_log::{Head, Log, LogError};
