//! The point-in-time query engine: what the projections said at valid time `as_of`, as known
//! at transaction time `known_at` (or at a seq), from a stored checkpoint and the events an
//! index says count after it. It reads a [`Source`] (a log, its boundary records, stored
//! checkpoints, the state at the head) and never writes: nothing here appends, stores metadata
//! or changes a projection that is kept.
//!
//! `recorded_at` is non-decreasing in seq, so "known at" is a seq prefix: `known_seq`. Valid
//! time is not monotone in seq (histories are backfilled, accounts interleave), so a checkpoint
//! at boundary `C` can start a query only if every event up to `C` counts (the largest
//! `occurred_at` up to `C` is `<= as_of`). After it, the counted events are found through an
//! index by time: for balances the `occurred_at` index, from the smallest `occurred_at` after
//! `C` up to `as_of`; for losses the loss-time index, which holds only the events a loss total
//! can count, and each flag under its withdrawal's `occurred_at` (flags count from their
//! `recorded_at` alone). That is one checkpoint plus a replay bounded by how far the log strays
//! from time order, not by its length.

use std::ops::ControlFlow;

use custos_domain::{
    AccountId, Asset, Envelope, Event, EventId, EventKind, FastMap, FastSet, Seq, StreamId, Timestamp,
};
use custos_log::{Head, Log, LogError, TimeIndex};
use custos_projection::{decode_loss_block, Balances, FoldError, LossRow, Losses, Projection};
use rust_decimal::Decimal;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The question cannot be answered as asked (a seq past the head).
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("corruption at seq {seq}: {what}")]
    Corruption { seq: Seq, what: String },
}

impl From<FoldError> for QueryError {
    fn from(e: FoldError) -> Self {
        QueryError::Corruption { seq: e.seq, what: e.what }
    }
}

fn corrupt(seq: Seq, what: String) -> QueryError {
    QueryError::Corruption { seq, what }
}

/// What is known about the log at a checkpoint boundary (one boundary record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundaryInfo {
    pub seq: Seq,
    /// The largest `occurred_at` of seqs `1..=seq`.
    pub max_occurred: Timestamp,
    /// The smallest `occurred_at` of the seqs since the previous boundary.
    pub min_occurred: Timestamp,
}

/// The boundary records as a source holds them for its head.
pub struct Bounds<'a> {
    pub boundaries: &'a [BoundaryInfo],
    /// The smallest `occurred_at` after the last boundary (`Timestamp::MAX` when none).
    pub tail_min: Timestamp,
    /// The largest `occurred_at` in the log, when recorded.
    pub max_occurred: Option<Timestamp>,
    /// The records are incomplete: trust none of them (read from the log's start).
    pub damaged: bool,
}

/// The projections folded up to the head.
#[derive(Clone)]
pub struct HeadState {
    pub balances: Balances,
    pub losses: Losses,
    /// The largest `occurred_at` of any event so far.
    pub max_occurred: Timestamp,
    /// Every event with a loss time after seq `loss_since` (a boundary), for the loss block
    /// written with the next losses checkpoint (`custos_projection::encode_loss_block`).
    pub loss_since: Seq,
    pub loss_events: Vec<Envelope>,
}

/// What the query engine reads: implemented by the ledger runtime over its log.
pub trait Source {
    /// The log the answers come from.
    fn log(&self) -> &dyn Log;
    /// The head the source answers for.
    fn head(&self) -> Head;
    /// The head after looking for appends by other processes.
    fn refresh(&self) -> Result<Head, QueryError>;
    /// Runs `f` on the boundary records for the current head.
    fn with_bounds<R>(&self, f: impl FnOnce(&Bounds<'_>) -> R) -> R;
    /// The latest stored checkpoint of `P` at or before `seq`.
    fn checkpoint<P: Projection>(&self, seq: Seq) -> Result<Option<P>, QueryError>;
    /// The latest balances checkpoint at or before `seq`, with only the accounts `keep` accepts.
    fn balances_checkpoint_of(&self, seq: Seq, keep: &dyn Fn(&str) -> bool) -> Result<Option<Balances>, QueryError>;
    /// Runs `f` on the projections folded exactly up to `seq` (at or before the head); `None`
    /// when the head state has moved past `seq` meanwhile.
    fn with_head_state<R>(&self, seq: Seq, f: impl FnOnce(&HeadState) -> R) -> Result<Option<R>, QueryError>;
    /// The stored loss block that ends at boundary `last`, if any (its bytes, undecoded).
    fn loss_block(&self, last: Seq) -> Result<Option<Vec<u8>>, QueryError>;
}

/// The queries, over a source.
pub struct Query<'a, S: Source>(pub &'a S);

/// Calls `f` with each stored envelope from `from` in seq order until it breaks; the first
/// error (a record that does not decode, or `f`'s own) stops the scan and is returned.
pub fn try_for_each_envelope(
    log: &dyn Log,
    from: Seq,
    f: &mut dyn FnMut(Envelope) -> Result<ControlFlow<()>, QueryError>,
) -> Result<(), QueryError> {
    let mut failure = None;
    log.for_each_record(from, &mut |seq, record| {
        let step = Envelope::decode(record).map_err(|e| corrupt(seq, e.to_string())).and_then(&mut *f);
        step.unwrap_or_else(|e| {
            failure = Some(e);
            ControlFlow::Break(())
        })
    })?;
    failure.map_or(Ok(()), Err)
}

/// The envelope stored at `seq`, checked to say that seq.
pub fn read_envelope(log: &dyn Log, seq: Seq) -> Result<Option<Envelope>, QueryError> {
    match log.record(seq)? {
        None => Ok(None),
        Some(r) => {
            let env = Envelope::decode(&r).map_err(|e| corrupt(seq, e.to_string()))?;
            if env.seq != seq {
                return Err(corrupt(seq, format!("record stored at seq {seq} says seq {}", env.seq)));
            }
            Ok(Some(env))
        }
    }
}

/// The moment a query answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Valid time: events with `occurred_at <= as_of` count.
    pub as_of: Timestamp,
    /// Transaction time: events with `recorded_at <= known_at` count.
    pub known_at: Timestamp,
    /// The last seq with `recorded_at <= known_at`.
    pub known_seq: Seq,
    /// Set when the query was asked at a seq (`--at-seq`).
    pub at_seq: Option<Seq>,
}

/// One event of an account's history, with the balance of its asset after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub seq: Seq,
    pub event_id: EventId,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub asset: Option<Asset>,
    /// The change to the balance (negative for a withdrawal; zero for a flag).
    pub change: Decimal,
    pub usd_value: Option<Decimal>,
    pub reference: Option<EventId>,
    pub unauthorized: bool,
    /// For an event that concerns a withdrawal: when and how the ledger learned it was
    /// unauthorized, as known at the bound.
    pub classified: Option<Classification>,
    pub balance_after: Option<Decimal>,
}

/// One event of a replay window, with the running loss totals and the account's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRow {
    pub seq: Seq,
    pub event_id: EventId,
    pub kind: EventKind,
    pub stream: StreamId,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub asset: Option<Asset>,
    pub change: Decimal,
    pub reference: Option<EventId>,
    /// Unauthorized as known at the replay's `known_at` (marked, or flagged by then); in
    /// recorded order, as known right after this row.
    pub unauthorized: bool,
    /// For an event that concerns a withdrawal: when and how the ledger learned it was
    /// unauthorized, as known at the replay's `known_at`.
    pub classified: Option<Classification>,
    /// The balance of the event's asset on its account right after it in valid time.
    pub balance_after: Option<Decimal>,
    /// ETH, BTC, misc and total rows after this event.
    pub totals: Vec<LossRow>,
}

/// The order of a replay's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayOrder {
    /// As things happened (`occurred_at`, then seq): each row's totals are as of its own
    /// `occurred_at`, with every flag known at `known_at`.
    #[default]
    Valid,
    /// As the ledger learned them (seq), flags of the window's withdrawals included: each row's
    /// totals are the loss totals as of the window's end as known right after that row (the
    /// first totals: as known just before the window's first fact). Anything else recorded
    /// between the first fact and the last that changes those totals is a row too.
    Recorded,
}

/// When and how the ledger learned a withdrawal was unauthorized: its own `recorded_at` if it
/// was marked, else the `recorded_at` of its first flag.
pub type Classification = (Timestamp, Classified);

/// The seq of the withdrawal an event concerns (its own for a withdrawal).
fn withdrawal_of(env: &Envelope) -> Option<Seq> {
    match &env.event {
        Event::Withdrawn { .. } => Some(env.seq),
        Event::Reversed { withdrawal_seq, .. } | Event::Reimbursed { withdrawal_seq, .. } => Some(*withdrawal_seq),
        Event::WithdrawalFlagged(f) => Some(f.withdrawal_seq),
        _ => None,
    }
}

/// The classification of every withdrawal among `events` (in seq order), from the events: a
/// marked withdrawal by itself, any other by its first flag among them.
fn classify<'a>(events: impl IntoIterator<Item = &'a Envelope>) -> FastMap<Seq, Classification> {
    let mut out = FastMap::default();
    for env in events {
        match &env.event {
            Event::Withdrawn { unauthorized: true, .. } => {
                out.insert(env.seq, (env.recorded_at, Classified::Marked));
            }
            Event::WithdrawalFlagged(f) => {
                out.entry(f.withdrawal_seq).or_insert((env.recorded_at, Classified::Flagged));
            }
            _ => {}
        }
    }
    out
}

/// The signed change an event makes to its account's balance.
pub fn change_of(event: &Event) -> Decimal {
    match event {
        Event::Deposited { amount, .. } | Event::Reversed { amount, .. } | Event::Reimbursed { amount, .. } => {
            amount.value()
        }
        Event::Withdrawn { amount, .. } => custos_domain::money::negate(amount.value()),
        _ => Decimal::ZERO,
    }
}

impl<S: Source> Query<'_, S> {
    /// Resolves a query's moment. Defaults: `as_of` and `known_at` now; with `at_seq`, the log
    /// as it stood right after that seq.
    pub fn bound(
        &self,
        as_of: Option<Timestamp>,
        known_at: Option<Timestamp>,
        at_seq: Option<Seq>,
    ) -> Result<Bound, QueryError> {
        let head = self.0.refresh()?;
        let now = Timestamp::now().max(if head.seq > 0 { head.recorded_at } else { Timestamp::MIN });
        if let Some(n) = at_seq {
            if n > head.seq {
                return Err(QueryError::BadRequest(format!(
                    "seq {n} is beyond the head of the log (seq {})",
                    head.seq
                )));
            }
            let known_at = match read_envelope(self.0.log(), n)? {
                Some(env) => env.recorded_at,
                None => Timestamp::MIN,
            };
            return Ok(Bound { as_of: as_of.unwrap_or(now), known_at, known_seq: n, at_seq: Some(n) });
        }
        let known_at = known_at.unwrap_or(now);
        Ok(Bound { as_of: as_of.unwrap_or(now), known_at, known_seq: self.known_seq(known_at)?, at_seq: None })
    }

    /// The last seq recorded at or before `known_at` (binary search: `recorded_at` is monotone).
    fn known_seq(&self, known_at: Timestamp) -> Result<Seq, QueryError> {
        let head = self.0.head();
        if head.seq == 0 || head.recorded_at <= known_at {
            return Ok(head.seq);
        }
        let (mut lo, mut hi) = (0, head.seq); // invariant: recorded(lo) <= known_at < recorded(hi)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let env = read_envelope(self.0.log(), mid)?.ok_or_else(|| corrupt(mid, "missing from the log".into()))?;
            if env.recorded_at <= known_at {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// All balances at the bound.
    pub fn balances_at(&self, bound: &Bound) -> Result<Balances, QueryError> {
        let state = self.state_at::<Balances>(
            bound,
            |c| &c.balances,
            |from| self.read_envelopes(&self.counted_seqs_after(from, bound)?),
        )?;
        state.check_conserved()?;
        Ok(state)
    }

    /// Loss totals at the bound.
    pub fn losses_at(&self, bound: &Bound) -> Result<Losses, QueryError> {
        let mut losses = self.state_at::<Losses>(bound, |c| &c.losses, |from| self.loss_events_after(from, bound))?;
        // The loss-time index skips flags of withdrawals after `as_of` (they add nothing to the
        // totals); the state still knows every flag known at the bound, as a replay needs.
        for (withdrawal, flag) in self.0.log().flags()? {
            if flag <= bound.known_seq {
                losses.mark_flagged(withdrawal);
            }
        }
        Ok(losses)
    }

    /// One account's balances at the bound, from its own events only.
    pub fn account_balances_at(&self, account: &AccountId, bound: &Bound) -> Result<Balances, QueryError> {
        let mut state = Balances::default();
        for env in self.stream_events(&StreamId::Account(account.clone()), bound.known_seq)? {
            state.apply(&env, bound.as_of)?;
        }
        Ok(state)
    }

    /// The events of a stream up to `known_seq`, in seq order, from the stream index.
    pub fn stream_events(&self, stream: &StreamId, known_seq: Seq) -> Result<Vec<Envelope>, QueryError> {
        let seqs: Vec<Seq> = self.0.log().stream_seqs(stream)?.into_iter().filter(|s| *s <= known_seq).collect();
        let mut out = self.read_envelopes(&seqs)?;
        // The index key is a hash: drop other streams that share it.
        out.retain(|env| &env.stream == stream);
        Ok(out)
    }

    /// The seq of the event with this id, if any.
    pub fn find_event(&self, id: &EventId) -> Result<Option<Envelope>, QueryError> {
        for seq in self.0.log().event_id_seqs(id)? {
            if let Some(env) = read_envelope(self.0.log(), seq)?.filter(|e| &e.event_id == id) {
                return Ok(Some(env));
            }
        }
        Ok(None)
    }

    /// The balances of `accounts` only at the bound (a partial state: its flows are not theirs).
    fn balances_of_at(&self, bound: &Bound, accounts: &FastSet<&str>) -> Result<Balances, QueryError> {
        let keep = |a: &str| accounts.contains(a);
        let start = self.start_boundary(bound);
        let mut state = if start == 0 { None } else { self.0.balances_checkpoint_of(start, &keep)? };
        let state = state.get_or_insert_with(Balances::default);
        let from = state.last_seq();
        for env in self.read_envelopes(&self.counted_seqs_after(from, bound)?)? {
            if env.stream.account().is_some_and(|a| keep(a.as_str())) {
                state.apply(&env, bound.as_of)?;
            }
        }
        Ok(std::mem::take(state))
    }

    /// The latest boundary where everything before it counts at the bound (0: none).
    fn start_boundary(&self, bound: &Bound) -> Seq {
        self.0.with_bounds(|b| {
            if b.damaged {
                return 0;
            }
            b.boundaries
                .iter()
                .rev()
                .find(|b| b.seq <= bound.known_seq && b.max_occurred <= bound.as_of)
                .map_or(0, |b| b.seq)
        })
    }

    /// `P` at the bound: the head state, or a checkpoint plus the counted events after it found
    /// through `by_time` (an index from `occurred_at` to every event `P` can count besides
    /// flags).
    fn state_at<P: Projection>(
        &self,
        bound: &Bound,
        pick: fn(&HeadState) -> &P,
        events_after: impl FnOnce(Seq) -> Result<Vec<Envelope>, QueryError>,
    ) -> Result<P, QueryError> {
        let head = self.0.head().seq;
        // A moment after every event of the log is the head state; when the log's largest
        // occurred_at is recorded, that is known without loading the head state.
        let recorded_max = self.0.with_bounds(|b| b.max_occurred);
        if bound.known_seq == head && recorded_max.is_none_or(|m| bound.as_of >= m) {
            let answer = self.0.with_head_state(head, |c| (bound.as_of >= c.max_occurred).then(|| pick(c).clone()))?;
            if let Some(Some(state)) = answer {
                return Ok(state);
            }
        }
        let start = self.start_boundary(bound);
        let mut state: P = if start == 0 { P::default() } else { self.0.checkpoint::<P>(start)?.unwrap_or_default() };
        let from = state.last_seq();
        for env in events_after(from)? {
            state.apply(&env, bound.as_of)?;
        }
        Ok(state)
    }

    /// The events in `(from, known_seq]` that a loss total can count at the bound, in seq order:
    /// from the loss blocks stored beside the losses checkpoints (one metadata value per
    /// interval, instead of one read per event: most are flags recorded long after their
    /// withdrawal), and from the loss-time index and the log for any interval without a usable
    /// block and after the last boundary.
    fn loss_events_after(&self, from: Seq, bound: &Bound) -> Result<Vec<Envelope>, QueryError> {
        if from >= bound.known_seq {
            return Ok(Vec::new());
        }
        let boundaries: Vec<Seq> = self.0.with_bounds(|b| {
            if b.damaged {
                return Vec::new();
            }
            b.boundaries.iter().map(|b| b.seq).filter(|s| *s > from && *s <= bound.known_seq).collect()
        });
        let mut out = Vec::new();
        // Ranges (lo, hi] to read through the index instead.
        let mut gaps: Vec<(Seq, Seq)> = Vec::new();
        let mut gap = |lo: Seq, hi: Seq| match gaps.last_mut() {
            Some(last) if last.1 == lo => last.1 = hi,
            _ => gaps.push((lo, hi)),
        };
        let mut pos = from;
        for last in boundaries {
            let stored = self.0.loss_block(last)?;
            let block = stored.as_deref().and_then(decode_loss_block).filter(|b| b.first <= pos && b.last == last);
            let counted = block.and_then(|b| {
                b.entries
                    .iter()
                    .filter(|e| e.seq > pos && e.loss_time <= bound.as_of)
                    .map(|e| e.envelope().ok())
                    .collect::<Option<Vec<Envelope>>>()
            });
            match counted {
                Some(events) => out.extend(events),
                None => gap(pos, last),
            }
            pos = last;
        }
        if pos < bound.known_seq {
            gap(pos, bound.known_seq);
        }
        if !gaps.is_empty() {
            let mut seqs = self.0.log().time_seqs(TimeIndex::LossTime, Timestamp::MIN, bound.as_of)?;
            seqs.retain(|s| gaps.iter().any(|(lo, hi)| s > lo && s <= hi));
            out.extend(self.read_envelopes(&seqs)?);
            out.sort_unstable_by_key(|e| e.seq);
        }
        Ok(out)
    }

    /// The seqs in `(from, known_seq]` whose events happened by `as_of` (what a balance counts),
    /// found through the `occurred_at` index between the smallest `occurred_at` after `from`
    /// and `as_of`. (Losses read theirs from the loss blocks: `loss_events_after`.)
    fn counted_seqs_after(&self, from: Seq, bound: &Bound) -> Result<Vec<Seq>, QueryError> {
        if from >= bound.known_seq {
            return Ok(Vec::new());
        }
        let lowest = self.min_occurred_after(from, bound.known_seq);
        if lowest > bound.as_of {
            return Ok(Vec::new());
        }
        let mut seqs = self.0.log().time_seqs(TimeIndex::OccurredAt, lowest, bound.as_of)?;
        seqs.retain(|s| *s > from && *s <= bound.known_seq);
        Ok(seqs)
    }

    /// A lower bound on the `occurred_at` of seqs in `(from, to]`, from the boundary records.
    fn min_occurred_after(&self, from: Seq, to: Seq) -> Timestamp {
        self.0.with_bounds(|bounds| {
            if bounds.damaged {
                return Timestamp::MIN;
            }
            let mut lowest = Timestamp::MAX;
            let mut covered = from;
            for b in bounds.boundaries.iter().filter(|b| b.seq > from) {
                lowest = lowest.min(b.min_occurred);
                covered = b.seq;
                if b.seq >= to {
                    return lowest;
                }
            }
            if covered < to {
                lowest = lowest.min(bounds.tail_min);
            }
            lowest
        })
    }

    /// Reads envelopes by seq (ascending): one by one when sparse, by scanning when dense.
    pub fn read_envelopes(&self, seqs: &[Seq]) -> Result<Vec<Envelope>, QueryError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(seqs.len());
        if (last - first + 1) / 8 < seqs.len() as u64 {
            // Dense: scan the records in order and decode only the wanted ones.
            let mut want = seqs.iter().peekable();
            let mut failure = None;
            self.0.log().for_each_record(first, &mut |seq, record| {
                if want.peek() == Some(&&seq) {
                    want.next();
                    match Envelope::decode(record) {
                        Ok(env) => out.push(env),
                        Err(e) => {
                            failure = Some(corrupt(seq, e.to_string()));
                            return ControlFlow::Break(());
                        }
                    }
                }
                if want.peek().is_none() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
        } else {
            for &seq in seqs {
                out.push(read_envelope(self.0.log(), seq)?.ok_or_else(|| corrupt(seq, "indexed but missing".into()))?);
            }
        }
        if out.len() != seqs.len() {
            return Err(corrupt(last, "an indexed event is missing from the log".into()));
        }
        Ok(out)
    }

    /// Every event of an account that counts at the bound (happened by `as_of`, recorded by
    /// `known_at`; optionally one asset, optionally a valid-time range), with the balance of
    /// the event's asset after it.
    pub fn history(
        &self,
        account: &AccountId,
        asset: Option<&Asset>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        bound: &Bound,
    ) -> Result<Vec<HistoryRow>, QueryError> {
        let mut balances = Balances::default();
        let mut losses = Losses::default();
        let mut rows = Vec::new();
        let events = self.stream_events(&StreamId::Account(account.clone()), bound.known_seq)?;
        // A withdrawal and its flags are on its account's stream.
        let classified = classify(&events);
        // Flags known at the bound classify withdrawals wherever they are in the stream.
        for env in &events {
            if let Event::WithdrawalFlagged(_) = env.event {
                losses.apply(env, Timestamp::MIN)?;
            }
        }
        for env in events.into_iter().filter(|e| e.occurred_at <= bound.as_of) {
            balances.apply(&env, Timestamp::MAX)?;
            let ev_asset = env.event.asset_amount().map(|(a, _)| *a);
            if asset.is_some_and(|want| Some(want) != ev_asset.as_ref())
                || from.is_some_and(|f| env.occurred_at < f)
                || to.is_some_and(|t| env.occurred_at > t)
            {
                continue;
            }
            rows.push(HistoryRow {
                seq: env.seq,
                event_id: env.event_id.clone(),
                kind: env.event.kind(),
                occurred_at: env.occurred_at,
                recorded_at: env.recorded_at,
                balance_after: ev_asset.as_ref().map(|a| balances.balance(account, a)),
                asset: ev_asset,
                change: change_of(&env.event),
                usd_value: env.event.usd_value().map(|u| u.value()),
                reference: env.event.withdrawal_ref().map(|(id, _)| id.clone()),
                unauthorized: unauthorized_as_known(&env, &losses),
                classified: withdrawal_of(&env).and_then(|w| classified.get(&w).copied()),
            });
        }
        Ok(rows)
    }

    /// The window `[from, to]` event by event, with running loss totals (starting from the
    /// totals just before `from`) and the balance of each event's account; in valid-time order,
    /// or in the order the ledger learned the window's facts (see [`ReplayOrder`]).
    pub fn replay(
        &self,
        from: Timestamp,
        to: Timestamp,
        bound: &Bound,
        order: ReplayOrder,
    ) -> Result<(Vec<LossRow>, Vec<ReplayRow>), QueryError> {
        let before = Bound { as_of: Timestamp::from_nanos(from.nanos().saturating_sub(1)), ..*bound };
        let mut seqs = self.0.log().time_seqs(TimeIndex::OccurredAt, from, to)?;
        seqs.retain(|s| *s <= bound.known_seq);
        let mut events = self.read_envelopes(&seqs)?;
        events.sort_by_key(|e| (e.occurred_at, e.seq));
        // The flag index, read once for every classification this replay makes.
        let flags = self.0.log().flags()?;
        let context = self.window_context(bound, &events, &flags)?;
        // Only the window's accounts need a balance before it, not all of them.
        let accounts: FastSet<&str> = events.iter().filter_map(|e| e.stream.account()).map(AccountId::as_str).collect();
        let mut balances = self.balances_of_at(&before, &accounts)?;
        drop(accounts);
        let mut rows = Vec::with_capacity(events.len().saturating_add(context.late_flags.len()));
        let row = |env: &Envelope, balances: &Balances, losses: &Losses| {
            let asset = env.event.asset_amount().map(|(a, _)| *a);
            ReplayRow {
                seq: env.seq,
                event_id: env.event_id.clone(),
                kind: env.event.kind(),
                occurred_at: env.occurred_at,
                recorded_at: env.recorded_at,
                balance_after: match (env.stream.account(), asset.as_ref()) {
                    (Some(acct), Some(a)) => Some(balances.balance(acct, a)),
                    _ => None,
                },
                asset,
                change: change_of(&env.event),
                reference: env.event.withdrawal_ref().map(|(id, _)| id.clone()),
                unauthorized: unauthorized_as_known(env, losses),
                classified: withdrawal_of(env).and_then(|w| context.classified.get(&w).copied()),
                stream: env.stream.clone(),
                totals: losses.rows(false),
            }
        };
        if order == ReplayOrder::Valid {
            // The totals just before the window (only valid order starts from them).
            let mut losses = self.losses_at(&before)?;
            let start_rows = losses.rows(false);
            for env in &events {
                losses.apply_in_window(env)?;
                balances.apply(env, Timestamp::MAX)?;
                rows.push(row(env, &balances, &losses));
            }
            return Ok((start_rows, rows));
        }
        // Recorded order. Each balance is the one right after the event in valid time (none for
        // a row that is not in the window's valid-time flow).
        for env in &events {
            balances.apply(env, Timestamp::MAX)?;
            rows.push(row(env, &balances, &Losses::default()));
        }
        let mut by_seq: Vec<(ReplayRow, &Envelope)> = rows.drain(..).zip(events.iter()).collect();
        by_seq.extend(
            context
                .late_flags
                .iter()
                .map(|env| (ReplayRow { balance_after: None, ..row(env, &balances, &Losses::default()) }, env)),
        );
        by_seq.sort_by_key(|(r, _)| r.seq);
        let (Some(first), Some(last)) = (by_seq.first().map(|r| r.0.seq), by_seq.last().map(|r| r.0.seq)) else {
            // No fact in the window: the totals as of its end, as known at the bound.
            return Ok((self.losses_at(&Bound { as_of: to, ..*bound })?.rows(false), rows));
        };
        // The totals as of the window's end, as known just before its first fact was recorded.
        let mut known = self.losses_at(&Bound { as_of: to, known_seq: first.saturating_sub(1), ..*bound })?;
        let start_rows = known.rows(false);
        // Anything else recorded between the first fact and the last that changes those totals
        // (an earlier withdrawal's flag, reversal or reimbursement, a backfill) is a row too:
        // otherwise a total would change between two rows with no row saying why.
        let facts: FastSet<Seq> = by_seq.iter().map(|(r, _)| r.seq).collect();
        let mut extra = self.0.log().time_seqs(TimeIndex::LossTime, Timestamp::MIN, to)?;
        extra.retain(|s| *s > first && *s <= last && !facts.contains(s));
        let extra = self.read_envelopes(&extra)?;
        let extra_classified = self.window_context(bound, &extra, &flags)?.classified;
        for env in &extra {
            let mut r = row(env, &balances, &Losses::default());
            r.balance_after = None;
            r.classified = withdrawal_of(env).and_then(|w| extra_classified.get(&w).copied());
            by_seq.push((r, env));
        }
        by_seq.sort_by_key(|(r, _)| r.seq);
        for (mut r, env) in by_seq {
            known.apply(env, to)?;
            r.unauthorized = unauthorized_as_known(env, &known);
            r.totals = known.rows(false);
            rows.push(r);
        }
        Ok((start_rows, rows))
    }

    /// What a replay needs besides the window's events: the first flags (known at the bound)
    /// of the window's withdrawals that occurred outside it, and the classification of every
    /// withdrawal the window's events concern, including earlier ones a reversal or
    /// reimbursement in the window refers to.
    fn window_context(
        &self,
        bound: &Bound,
        events: &[Envelope],
        flags: &[(Seq, Seq)],
    ) -> Result<WindowContext, QueryError> {
        let in_window: FastSet<Seq> = events.iter().map(|e| e.seq).collect();
        let concerned: FastSet<Seq> = events.iter().filter_map(withdrawal_of).collect();
        // The first flag known at the bound of each withdrawal concerned.
        let mut first_flag: FastMap<Seq, Seq> = FastMap::default();
        for &(withdrawal, flag) in flags {
            if flag <= bound.known_seq && concerned.contains(&withdrawal) {
                let f = first_flag.entry(withdrawal).or_insert(flag);
                *f = (*f).min(flag);
            }
        }
        let mut wanted: Vec<Seq> = concerned.iter().chain(first_flag.values()).copied().collect();
        wanted.retain(|s| !in_window.contains(s));
        wanted.sort_unstable();
        wanted.dedup();
        let outside = self.read_envelopes(&wanted)?;
        let mut all: Vec<&Envelope> = events.iter().chain(&outside).collect();
        all.sort_by_key(|e| e.seq);
        let classified = classify(all);
        // Flags of the window's withdrawals that are not in the window themselves.
        let late_flags = outside
            .into_iter()
            .filter(|e| match &e.event {
                Event::WithdrawalFlagged(f) => in_window.contains(&f.withdrawal_seq),
                _ => false,
            })
            .collect();
        Ok(WindowContext { late_flags, classified })
    }
}

struct WindowContext {
    /// The first flags (known at the bound) of the window's withdrawals, outside the window.
    late_flags: Vec<Envelope>,
    classified: FastMap<Seq, Classification>,
}

/// Whether a withdrawal (or the withdrawal an event refers to) is unauthorized as known to
/// `losses`' flags.
fn unauthorized_as_known(env: &Envelope, losses: &Losses) -> bool {
    match &env.event {
        Event::Withdrawn { unauthorized, .. } => *unauthorized || losses.is_flagged(env.seq),
        Event::Reversed { withdrawal_unauthorized, withdrawal_seq, .. } => {
            *withdrawal_unauthorized || losses.is_flagged(*withdrawal_seq)
        }
        Event::Reimbursed { .. } | Event::WithdrawalFlagged(_) => true,
        _ => false,
    }
}

/// How the ledger learned a withdrawal was unauthorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// Marked unauthorized when it was recorded.
    Marked,
    /// Flagged later by a flag event.
    Flagged,
}

impl Classified {
    pub fn name(self) -> &'static str {
        match self {
            Classified::Marked => "marked",
            Classified::Flagged => "flagged",
        }
    }
}

/// One row of the withdrawal register: a withdrawal and what became of it, at a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalRow {
    pub seq: Seq,
    pub id: EventId,
    pub account: AccountId,
    pub asset: Asset,
    pub amount: Decimal,
    pub usd_value: Option<Decimal>,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
    pub auth_factor: Option<&'static str>,
    /// When the ledger learned it was unauthorized (its own `recorded_at` if marked, else the
    /// first flag's), and how; `None`: not unauthorized as known at the bound.
    pub classified: Option<(Timestamp, Classified)>,
    /// The reversal counted at the bound: (amount, occurred_at).
    pub reversed: Option<(Decimal, Timestamp)>,
    /// Reimbursements counted at the bound: total amount, total USD, the last one's
    /// occurred_at, and how many.
    pub reimbursed: Option<(Decimal, Decimal, Timestamp, u64)>,
    /// What is still owed to the customer: completed (not reversed) minus reimbursed, for an
    /// unauthorized withdrawal; `None` for an authorized one.
    pub outstanding: Option<Decimal>,
}

impl<S: Source> Query<'_, S> {
    /// The withdrawal register at the bound: every withdrawal that happened by `as_of` and was
    /// recorded by `known_at` (optionally one account's, optionally only those unauthorized as
    /// known then), in seq order, with its classification, reversal and reimbursements as
    /// they count at the bound. One pass over the log up to the bound.
    pub fn withdrawals(&self, bound: &Bound, account: Option<&AccountId>) -> Result<Vec<WithdrawalRow>, QueryError> {
        let mut rows: Vec<WithdrawalRow> = Vec::new();
        let mut at: std::collections::HashMap<Seq, usize> = std::collections::HashMap::new();
        let counts = |env: &Envelope| env.occurred_at <= bound.as_of;
        try_for_each_envelope(self.0.log(), 1, &mut |env| {
            let seq = env.seq;
            if seq > bound.known_seq {
                return Ok(ControlFlow::Break(()));
            }
            let sum = |a: Decimal, b: Decimal, scale: u32| {
                custos_domain::money::add_exact(a, b, scale)
                    .ok_or_else(|| corrupt(seq, "a register total passed its limit".into()))
            };
            match &env.event {
                Event::Withdrawn { asset, amount, usd_value, unauthorized, auth_factor, .. } if counts(&env) => {
                    let Some(acct) = env.stream.account() else { return Ok(ControlFlow::Continue(())) };
                    if account.is_some_and(|a| a != acct) {
                        return Ok(ControlFlow::Continue(()));
                    }
                    at.insert(seq, rows.len());
                    rows.push(WithdrawalRow {
                        seq,
                        id: env.event_id.clone(),
                        account: acct.clone(),
                        asset: *asset,
                        amount: amount.value(),
                        usd_value: usd_value.map(|u| u.value()),
                        occurred_at: env.occurred_at,
                        recorded_at: env.recorded_at,
                        auth_factor: auth_factor.map(|f| f.name()),
                        classified: unauthorized.then_some((env.recorded_at, Classified::Marked)),
                        reversed: None,
                        reimbursed: None,
                        outstanding: None,
                    });
                }
                // A flag counts from its recorded_at alone (it is known at the bound).
                Event::WithdrawalFlagged(f) => {
                    if let Some(row) = at.get(&f.withdrawal_seq).map(|i| &mut rows[*i]) {
                        row.classified.get_or_insert((env.recorded_at, Classified::Flagged));
                    }
                }
                Event::Reversed { withdrawal_seq, amount, .. } if counts(&env) => {
                    if let Some(row) = at.get(withdrawal_seq).map(|i| &mut rows[*i]) {
                        row.reversed = Some((amount.value(), env.occurred_at));
                    }
                }
                Event::Reimbursed { withdrawal_seq, amount, usd_value, asset, .. } if counts(&env) => {
                    if let Some(row) = at.get(withdrawal_seq).map(|i| &mut rows[*i]) {
                        let (units, usd, _, n) =
                            row.reimbursed.unwrap_or((Decimal::ZERO, Decimal::ZERO, env.occurred_at, 0));
                        row.reimbursed = Some((
                            sum(units, amount.value(), asset.scale())?,
                            sum(
                                usd,
                                usd_value.map(|u| u.value()).unwrap_or_default(),
                                custos_domain::money::USD_SCALE,
                            )?,
                            env.occurred_at,
                            n.saturating_add(1),
                        ));
                    }
                }
                _ => {}
            }
            Ok(ControlFlow::Continue(()))
        })?;
        for row in &mut rows {
            if row.classified.is_some() {
                let scale = row.asset.scale();
                let reversed = row.reversed.map_or(Decimal::ZERO, |r| r.0);
                let reimbursed = row.reimbursed.map_or(Decimal::ZERO, |r| r.0);
                let completed = custos_domain::money::sub_exact(row.amount, reversed, scale);
                row.outstanding = completed.and_then(|c| custos_domain::money::sub_exact(c, reimbursed, scale));
                if row.outstanding.is_none() {
                    return Err(corrupt(row.seq, "its reversal and reimbursements exceed it".into()));
                }
            }
        }
        Ok(rows)
    }
}

/// One asset the ledger has seen: its symbol, decimal places, first event and event count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub asset: Asset,
    pub first_seq: Seq,
    pub first_recorded_at: Timestamp,
    pub events: u64,
}

impl<S: Source> Query<'_, S> {
    /// Every asset symbol in the log up to `known_seq`, in symbol order (one pass).
    pub fn assets(&self, known_seq: Seq) -> Result<Vec<AssetRow>, QueryError> {
        let mut seen: std::collections::BTreeMap<Asset, AssetRow> = std::collections::BTreeMap::new();
        try_for_each_envelope(self.0.log(), 1, &mut |env| {
            if env.seq > known_seq {
                return Ok(ControlFlow::Break(()));
            }
            if let Some((asset, _)) = env.event.asset_amount() {
                let row = seen.entry(*asset).or_insert(AssetRow {
                    asset: *asset,
                    first_seq: env.seq,
                    first_recorded_at: env.recorded_at,
                    events: 0,
                });
                row.events = row.events.saturating_add(1);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(seen.into_values().collect())
    }
}
