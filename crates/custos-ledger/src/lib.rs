//! The Custos ledger runtime: the handle that runs the command side (`custos-command`) over a
//! log on any engine (`custos-log`): the group-commit writer, the projector and the follower,
//! rebuilds, point-in-time queries over the projections and their checkpoints, `verify` and
//! `migrate`. The import formats (`custos-formats`) and the command side are re-exported.
//!
//! The log is a [`custos_log::Log`]: this crate sees records, typed index entries and
//! metadata, and nothing of sled or PostgreSQL beyond opening them by location.

mod ledger;
mod merkle;
mod metrics;
mod migrate;
mod query;
mod verify;

pub use custos_command::{command_of, reimbursement_usd, Decision, NewEvent, Rejection, WriteModel};
pub use custos_formats::{
    json_line, parse_csv, parse_json_command, parse_jsonl, ImportFormat, ImportLine, LineError, LineSplitter, RawLine,
    IMPORT_FIELDS, LINE_BYTES_MAX,
};
pub use custos_query::{
    AssetRow, Bound, Classification, Classified, HistoryRow, QueryError, ReplayOrder, ReplayRow, WithdrawalRow,
};
pub use ledger::{Appended, DryRun, ErrorKind, Ledger, LedgerConfig, LedgerError, Outcome, Queued, RebuildReport};
pub use merkle::{ConsistencyProof, InclusionProof, TreeHead};
pub use metrics::{Histogram, Metrics, LATENCY_BUCKETS_US};
pub use migrate::MigrateReport;
pub use verify::{Discrepancy, VerifyReport};

pub use custos_log::{Head, Log, LogError};
