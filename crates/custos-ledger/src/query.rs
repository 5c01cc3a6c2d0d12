//! The ledger as a source of the point-in-time query engine (`custos-query`), and the queries
//! as methods of the ledger handle.

use custos_domain::{AccountId, Asset, Envelope, EventId, Seq, StreamId, Timestamp};
use custos_log::{Head, Log, LogError};
use custos_projection::{Balances, LossRow, Losses, Projection};
use custos_query::{
    AssetRow, Bound, Bounds, HeadState, HistoryRow, Query, QueryError, ReplayOrder, ReplayRow, Source, WithdrawalRow,
};

use crate::ledger::{Ledger, LedgerError};

impl From<QueryError> for LedgerError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadRequest(s) => LedgerError::BadRequest(s),
            QueryError::Log(e) => LedgerError::Log(e),
            QueryError::Corruption { seq, what } => LedgerError::Corruption { seq, what },
        }
    }
}

/// A runtime error met while answering, in the query engine's terms (the runtime's reads fail
/// only as the log does, or on corruption).
fn to_query(e: LedgerError) -> QueryError {
    match e {
        LedgerError::BadRequest(s) => QueryError::BadRequest(s),
        LedgerError::Log(e) => QueryError::Log(e),
        LedgerError::Corruption { seq, what } => QueryError::Corruption { seq, what },
        other => QueryError::Log(LogError::Io {
            what: other.to_string(),
            source: std::io::Error::other("the ledger runtime could not answer"),
        }),
    }
}

impl Source for Ledger {
    fn log(&self) -> &dyn Log {
        self.store()
    }

    fn head(&self) -> Head {
        Ledger::head(self)
    }

    fn refresh(&self) -> Result<Head, QueryError> {
        Ledger::refresh(self).map_err(to_query)
    }

    fn with_bounds<R>(&self, f: impl FnOnce(&Bounds<'_>) -> R) -> R {
        self.with_stored_bounds(f)
    }

    fn checkpoint<P: Projection>(&self, seq: Seq) -> Result<Option<P>, QueryError> {
        Ledger::checkpoint::<P>(self, seq).map_err(to_query)
    }

    fn balances_checkpoint_of(&self, seq: Seq, keep: &dyn Fn(&str) -> bool) -> Result<Option<Balances>, QueryError> {
        Ledger::balances_checkpoint_of(self, seq, keep).map_err(to_query)
    }

    fn with_head_state<R>(&self, seq: Seq, f: impl FnOnce(&HeadState) -> R) -> Result<Option<R>, QueryError> {
        self.with_current(seq, f).map_err(to_query)
    }

    fn loss_block(&self, last: Seq) -> Result<Option<Vec<u8>>, QueryError> {
        // A cache like a checkpoint: one that cannot be read costs speed, never an answer (the
        // query reads those events from the log); `verify` reports it, `rebuild` rewrites it.
        match crate::ledger::loss_block(&self.shared, last) {
            Ok(block) => Ok(block),
            Err(e) => {
                tracing::warn!("skipped the loss block at seq {last} ({e}); reading its events from the log");
                Ok(None)
            }
        }
    }
}

impl Ledger {
    /// Resolves a query's moment. Defaults: `as_of` and `known_at` now; with `at_seq`, the log
    /// as it stood right after that seq.
    pub fn bound(
        &self,
        as_of: Option<Timestamp>,
        known_at: Option<Timestamp>,
        at_seq: Option<Seq>,
    ) -> Result<Bound, LedgerError> {
        Ok(Query(self).bound(as_of, known_at, at_seq)?)
    }

    /// All balances at the bound.
    pub fn balances_at(&self, bound: &Bound) -> Result<Balances, LedgerError> {
        Ok(Query(self).balances_at(bound)?)
    }

    /// Loss totals at the bound.
    pub fn losses_at(&self, bound: &Bound) -> Result<Losses, LedgerError> {
        Ok(Query(self).losses_at(bound)?)
    }

    /// One account's balances at the bound, from its own events only.
    pub fn account_balances_at(&self, account: &AccountId, bound: &Bound) -> Result<Balances, LedgerError> {
        Ok(Query(self).account_balances_at(account, bound)?)
    }

    /// The events of a stream up to `known_seq`, in seq order.
    pub fn stream_events(&self, stream: &StreamId, known_seq: Seq) -> Result<Vec<Envelope>, LedgerError> {
        Ok(Query(self).stream_events(stream, known_seq)?)
    }

    /// The event with this id, if any.
    pub fn find_event(&self, id: &EventId) -> Result<Option<Envelope>, LedgerError> {
        Ok(Query(self).find_event(id)?)
    }

    /// Every event of an account (optionally one asset, optionally a valid-time range), with the
    /// balance of the event's asset after it.
    pub fn history(
        &self,
        account: &AccountId,
        asset: Option<&Asset>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        bound: &Bound,
    ) -> Result<Vec<HistoryRow>, LedgerError> {
        Ok(Query(self).history(account, asset, from, to, bound)?)
    }

    /// Every asset symbol the log holds up to `known_seq`, with its first event and count.
    pub fn assets(&self, known_seq: Seq) -> Result<Vec<AssetRow>, LedgerError> {
        Ok(Query(self).assets(known_seq)?)
    }

    /// Whether any event up to `known_seq` is on this account's stream.
    pub fn knows_account(&self, account: &AccountId, known_seq: Seq) -> Result<bool, LedgerError> {
        Ok(!self.stream_events(&StreamId::Account(account.clone()), known_seq)?.is_empty())
    }

    /// The withdrawal register at the bound (optionally one account's), in seq order.
    pub fn withdrawals(&self, bound: &Bound, account: Option<&AccountId>) -> Result<Vec<WithdrawalRow>, LedgerError> {
        Ok(Query(self).withdrawals(bound, account)?)
    }

    /// The window `[from, to]` event by event, in valid-time or recorded order, with running
    /// loss totals (starting from the totals just before `from`) and the balance of each
    /// event's account.
    pub fn replay(
        &self,
        from: Timestamp,
        to: Timestamp,
        bound: &Bound,
        order: ReplayOrder,
    ) -> Result<(Vec<LossRow>, Vec<ReplayRow>), LedgerError> {
        Ok(Query(self).replay(from, to, bound, order)?)
    }
}
