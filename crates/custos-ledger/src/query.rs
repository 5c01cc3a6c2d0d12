//! Point-in-time queries: what the projections said at valid time `as_of`, as known at
//! transaction time `known_at` (or at a seq).
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

use custos_domain::{AccountId, Asset, Envelope, Event, EventId, EventKind, FastSet, Seq, StreamId, Timestamp};
use custos_log::TimeIndex;
use custos_projection::{Balances, LossRow, Losses, Projection};
use rust_decimal::Decimal;

use crate::ledger::{corrupt, read_envelope, Current, Ledger, LedgerError};

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
    /// Unauthorized as known at the replay's `known_at` (marked, or flagged by then).
    pub unauthorized: bool,
    pub balance_after: Option<Decimal>,
    /// ETH, BTC, misc and total rows after this event.
    pub totals: Vec<LossRow>,
}

/// The signed change an event makes to its account's balance.
pub(crate) fn change_of(event: &Event) -> Decimal {
    match event {
        Event::Deposited { amount, .. } | Event::Reversed { amount, .. } | Event::Reimbursed { amount, .. } => {
            amount.value()
        }
        Event::Withdrawn { amount, .. } => custos_domain::money::negate(amount.value()),
        _ => Decimal::ZERO,
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
        let head = self.refresh()?;
        let now = Timestamp::now().max(if head.seq > 0 { head.recorded_at } else { Timestamp::MIN });
        if let Some(n) = at_seq {
            if n > head.seq {
                return Err(LedgerError::BadRequest(format!(
                    "seq {n} is beyond the head of the log (seq {})",
                    head.seq
                )));
            }
            let known_at = match self.envelope(n)? {
                Some(env) => env.recorded_at,
                None => Timestamp::MIN,
            };
            return Ok(Bound { as_of: as_of.unwrap_or(now), known_at, known_seq: n, at_seq: Some(n) });
        }
        let known_at = known_at.unwrap_or(now);
        Ok(Bound { as_of: as_of.unwrap_or(now), known_at, known_seq: self.known_seq(known_at)?, at_seq: None })
    }

    /// The last seq recorded at or before `known_at` (binary search: `recorded_at` is monotone).
    fn known_seq(&self, known_at: Timestamp) -> Result<Seq, LedgerError> {
        let head = self.head();
        if head.seq == 0 || head.recorded_at <= known_at {
            return Ok(head.seq);
        }
        let (mut lo, mut hi) = (0, head.seq); // invariant: recorded(lo) <= known_at < recorded(hi)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let env = self.envelope(mid)?.ok_or_else(|| corrupt(mid, "missing from the log".into()))?;
            if env.recorded_at <= known_at {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// All balances at the bound.
    pub fn balances_at(&self, bound: &Bound) -> Result<Balances, LedgerError> {
        let state = self.state_at::<Balances>(bound, |c| &c.balances, TimeIndex::OccurredAt)?;
        state.check_conserved()?;
        Ok(state)
    }

    /// Loss totals at the bound.
    pub fn losses_at(&self, bound: &Bound) -> Result<Losses, LedgerError> {
        let mut losses = self.state_at::<Losses>(bound, |c| &c.losses, TimeIndex::LossTime)?;
        // The loss-time index skips flags of withdrawals after `as_of` (they add nothing to the
        // totals); the state still knows every flag known at the bound, as a replay needs.
        for (withdrawal, flag) in self.store().flags()? {
            if flag <= bound.known_seq {
                losses.mark_flagged(withdrawal);
            }
        }
        Ok(losses)
    }

    /// One account's balances at the bound, from its own events only.
    pub fn account_balances_at(&self, account: &AccountId, bound: &Bound) -> Result<Balances, LedgerError> {
        let mut state = Balances::default();
        for env in self.stream_events(&StreamId::Account(account.clone()), bound.known_seq)? {
            state.apply(&env, bound.as_of)?;
        }
        Ok(state)
    }

    /// The events of a stream up to `known_seq`, in seq order, from the stream index.
    pub fn stream_events(&self, stream: &StreamId, known_seq: Seq) -> Result<Vec<Envelope>, LedgerError> {
        let seqs: Vec<Seq> = self.store().stream_seqs(stream)?.into_iter().filter(|s| *s <= known_seq).collect();
        let mut out = self.read_envelopes(&seqs)?;
        // The index key is a hash: drop other streams that share it.
        out.retain(|env| &env.stream == stream);
        Ok(out)
    }

    /// The seq of the event with this id, if any.
    pub fn find_event(&self, id: &EventId) -> Result<Option<Envelope>, LedgerError> {
        for seq in self.store().event_id_seqs(id)? {
            if let Some(env) = self.envelope(seq)?.filter(|e| &e.event_id == id) {
                return Ok(Some(env));
            }
        }
        Ok(None)
    }

    /// The balances of `accounts` only at the bound (a partial state: its flows are not theirs).
    fn balances_of_at(&self, bound: &Bound, accounts: &FastSet<&str>) -> Result<Balances, LedgerError> {
        let keep = |a: &str| accounts.contains(a);
        let start = self.start_boundary(bound);
        let mut state = if start == 0 { None } else { self.balances_checkpoint_of(start, &keep)? };
        let state = state.get_or_insert_with(Balances::default);
        let from = state.last_seq();
        for env in self.read_envelopes(&self.counted_seqs_after(from, bound, TimeIndex::OccurredAt)?)? {
            if env.stream.account().is_some_and(|a| keep(a.as_str())) {
                state.apply(&env, bound.as_of)?;
            }
        }
        Ok(std::mem::take(state))
    }

    /// The latest boundary where everything before it counts at the bound (0: none).
    fn start_boundary(&self, bound: &Bound) -> Seq {
        if self.shared.bounds_damaged.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        let boundaries = self.shared.boundaries.read().expect("boundaries lock");
        boundaries.iter().rev().find(|b| b.seq <= bound.known_seq && b.max_occurred <= bound.as_of).map_or(0, |b| b.seq)
    }

    /// `P` at the bound: the head state, or a checkpoint plus the counted events after it found
    /// through `by_time` (an index from `occurred_at` to every event `P` can count besides
    /// flags).
    fn state_at<P: Projection>(
        &self,
        bound: &Bound,
        pick: fn(&Current) -> &P,
        by_time: TimeIndex,
    ) -> Result<P, LedgerError> {
        let head = self.head().seq;
        // A moment after every event of the log is the head state; when the log's largest
        // occurred_at is recorded, that is known without loading the head state.
        let recorded_max = *self.shared.max_occurred.lock().expect("max lock");
        if bound.known_seq == head && recorded_max.is_none_or(|m| bound.as_of >= m) {
            let answer = self.with_current(head, |c| (bound.as_of >= c.max_occurred).then(|| pick(c).clone()))?;
            if let Some(Some(state)) = answer {
                return Ok(state);
            }
        }
        let start = self.start_boundary(bound);
        let mut state: P = if start == 0 { P::default() } else { self.checkpoint::<P>(start)?.unwrap_or_default() };
        let from = state.last_seq();
        for env in self.read_envelopes(&self.counted_seqs_after(from, bound, by_time)?)? {
            state.apply(&env, bound.as_of)?;
        }
        Ok(state)
    }

    /// The seqs in `(from, known_seq]` that count at the bound, through `by_time`: with
    /// `OccurredAt` (balances) the events with `occurred_at <= as_of`, found between the
    /// smallest `occurred_at` after `from` and `as_of`; with `LossTime` (losses) the loss events
    /// with `occurred_at <= as_of` and every flag of a withdrawal that occurred by `as_of`
    /// (a flag counts from its `recorded_at` alone, so one recorded long after its withdrawal is
    /// found by the withdrawal's time, however early).
    fn counted_seqs_after(&self, from: Seq, bound: &Bound, by_time: TimeIndex) -> Result<Vec<Seq>, LedgerError> {
        if from >= bound.known_seq {
            return Ok(Vec::new());
        }
        let lowest = match by_time {
            TimeIndex::LossTime => Timestamp::MIN,
            _ => self.min_occurred_after(from, bound.known_seq),
        };
        if lowest > bound.as_of {
            return Ok(Vec::new());
        }
        let mut seqs = self.store().time_seqs(by_time, lowest, bound.as_of)?;
        seqs.retain(|s| *s > from && *s <= bound.known_seq);
        Ok(seqs)
    }

    /// A lower bound on the `occurred_at` of seqs in `(from, to]`, from the boundary records.
    fn min_occurred_after(&self, from: Seq, to: Seq) -> Timestamp {
        if self.shared.bounds_damaged.load(std::sync::atomic::Ordering::SeqCst) {
            return Timestamp::MIN;
        }
        let boundaries = self.shared.boundaries.read().expect("boundaries lock");
        let mut lowest = Timestamp::MAX;
        let mut covered = from;
        for b in boundaries.iter().filter(|b| b.seq > from) {
            lowest = lowest.min(b.min_occurred);
            covered = b.seq;
            if b.seq >= to {
                return lowest;
            }
        }
        if covered < to {
            lowest = lowest.min(*self.shared.tail_min.lock().expect("tail lock"));
        }
        lowest
    }

    /// Reads envelopes by seq (ascending): one by one when sparse, by scanning when dense.
    pub(crate) fn read_envelopes(&self, seqs: &[Seq]) -> Result<Vec<Envelope>, LedgerError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(seqs.len());
        if (last - first + 1) / 8 < seqs.len() as u64 {
            // Dense: scan the records in order and decode only the wanted ones.
            let mut want = seqs.iter().peekable();
            let mut failure = None;
            self.store().for_each_record(first, &mut |seq, record| {
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
                out.push(read_envelope(self.store(), seq)?.ok_or_else(|| corrupt(seq, "indexed but missing".into()))?);
            }
        }
        if out.len() != seqs.len() {
            return Err(corrupt(last, "an indexed event is missing from the log".into()));
        }
        Ok(out)
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
        let mut balances = Balances::default();
        let mut losses = Losses::default();
        let mut rows = Vec::new();
        let events = self.stream_events(&StreamId::Account(account.clone()), bound.known_seq)?;
        // Flags known at the bound classify withdrawals wherever they are in the stream.
        for env in &events {
            if let Event::WithdrawalFlagged(_) = env.event {
                losses.apply(env, Timestamp::MIN)?;
            }
        }
        for env in events {
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
            });
        }
        Ok(rows)
    }

    /// The window `[from, to]` event by event in valid-time order, with running loss totals
    /// (starting from the totals just before `from`) and the balance of each event's account.
    pub fn replay(
        &self,
        from: Timestamp,
        to: Timestamp,
        bound: &Bound,
    ) -> Result<(Vec<LossRow>, Vec<ReplayRow>), LedgerError> {
        let before = Bound { as_of: Timestamp::from_nanos(from.nanos().saturating_sub(1)), ..*bound };
        let mut losses = self.losses_at(&before)?;
        let start_rows = losses.rows(false);
        let mut seqs = self.store().time_seqs(TimeIndex::OccurredAt, from, to)?;
        seqs.retain(|s| *s <= bound.known_seq);
        let mut events = self.read_envelopes(&seqs)?;
        events.sort_by_key(|e| (e.occurred_at, e.seq));
        // Only the window's accounts need a balance before it, not all of them.
        let accounts: FastSet<&str> = events.iter().filter_map(|e| e.stream.account()).map(AccountId::as_str).collect();
        let mut balances = self.balances_of_at(&before, &accounts)?;
        drop(accounts);
        let mut rows = Vec::with_capacity(events.len());
        for env in events {
            losses.apply_in_window(&env)?;
            balances.apply(&env, Timestamp::MAX)?;
            let asset = env.event.asset_amount().map(|(a, _)| *a);
            rows.push(ReplayRow {
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
                unauthorized: unauthorized_as_known(&env, &losses),
                stream: env.stream.clone(),
                totals: losses.rows(false),
            });
        }
        Ok((start_rows, rows))
    }
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
