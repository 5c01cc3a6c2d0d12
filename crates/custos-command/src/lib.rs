//! The command side of Custos, as pure functions: the write model a writer keeps, `decide`
//! (a command against the state: one event, a duplicate, or a [`Rejection`] naming the rule),
//! and `apply` (an event into the state). No IO: the ledger runtime feeds it the log.

mod model;
mod rejection;
mod snapshot;

pub use model::{command_of, reimbursement_usd, Decision, NewEvent, WriteModel};
pub use rejection::Rejection;
pub use snapshot::SNAPSHOT_FORMAT;
