//! Custos projections: the pure fold of envelopes into read models. No IO.
//!
//! One fold serves the incremental path (events as they are appended), the rebuild (the whole
//! log) and point-in-time queries (a checkpoint plus the counted events after it), so they
//! cannot disagree. For a query at valid time `as_of` and transaction time `known_at`, the
//! caller feeds exactly the events with `recorded_at <= known_at`, in seq order, and the fold
//! counts those with `occurred_at <= as_of`; a `WithdrawalFlagged` counts from its `recorded_at`
//! alone, and classifies its withdrawal from the withdrawal's own `occurred_at` (DESIGN.md).

mod balances;
mod codec;
mod loss_block;
mod losses;

pub use balances::{BalanceRow, Balances, Flows, Holdings};
pub use loss_block::{decode_loss_block, encode_loss_block, LossBlock, LossBlockEntry, LOSS_BLOCK_FORMAT};
pub use losses::{LossCols, LossRow, Losses, GROUP_TOTAL};

use custos_domain::{Envelope, Seq, Timestamp};

/// Stored events that break a rule a fold relies on: a balance below zero, a quantity past its
/// limit, a reference to nothing. The ledger never appends such events (they are refused when
/// decided), so only a log that `verify` rejects makes a fold return this; the caller reports it
/// as corruption at `seq`. After an error the state is partly updated and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct FoldError {
    pub seq: Seq,
    pub what: String,
}

impl FoldError {
    pub fn new(seq: Seq, what: impl Into<String>) -> Self {
        FoldError { seq, what: what.into() }
    }
}

/// What every projection shares: a name and schema version stored beside its state, the seq it
/// has folded up to, and one fold.
pub trait Projection: Default + Clone + Send + Sync + 'static {
    const NAME: &'static str;
    /// Bumped whenever the state's meaning or encoding changes; stored state of another version
    /// is rebuilt from the log rather than read.
    const SCHEMA_VERSION: u32;

    /// Folds one event. `as_of` is the query's valid time (`Timestamp::MAX` for "everything").
    /// Every sum is exact; an event that would break that (or another rule of the fold) is a
    /// [`FoldError`].
    fn apply(&mut self, env: &Envelope, as_of: Timestamp) -> Result<(), FoldError>;
    /// The last seq folded.
    fn last_seq(&self) -> Seq;
    /// Appends the state's stored form to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// Whether `env` counts at valid time `as_of` (the caller has already applied `known_at`).
pub fn counted(env: &Envelope, as_of: Timestamp) -> bool {
    env.occurred_at <= as_of
}
