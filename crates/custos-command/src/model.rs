//! The write model: the state a command is decided against, `decide` (may refuse) and `apply`
//! (cannot fail). Sans IO: the caller looks up what `decide` needs from the log.
//!
//! `verify` reuses `decide`: every stored event is turned back into the command that would have
//! produced it and decided again, so "the log is valid" means exactly "every event is what the
//! ledger would append today, in that order".

use custos_domain::money::{add_exact, negate, pro_rata_cents, quantity_max, USD_SCALE};
use custos_domain::{
    AccountId, Amount, Asset, Command, CommandBody, Envelope, Event, EventId, FastMap, Flagged, ReversalRef, Seq,
    StreamId, Timestamp, Usd,
};
use custos_projection::{FoldError, Holdings};
use rust_decimal::Decimal;

use crate::rejection::Rejection;

/// What the ledger knows about a withdrawal, for the commands that refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalState {
    pub seq: Seq,
    pub account: AccountId,
    pub asset: Asset,
    pub amount: Amount,
    pub usd_value: Option<Usd>,
    pub occurred_at: Timestamp,
    pub marked_unauthorized: bool,
    pub flagged: bool,
    pub reversed_by: Option<ReversalRef>,
    pub reimbursed: Decimal,
}

impl WithdrawalState {
    fn unauthorized(&self) -> bool {
        self.marked_unauthorized || self.flagged
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    pub version: u64,
    pub last_occurred_at: Option<Timestamp>,
}

/// An account's stream and balances, kept together so that deciding and applying a command
/// looks the account up once, not once per map (the balances inline, as the projection keeps
/// them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountState {
    pub stream: StreamState,
    pub holdings: Holdings,
}

impl AccountState {
    pub fn balance(&self, asset: &Asset) -> Decimal {
        self.holdings.get(asset).unwrap_or_default()
    }
}

/// A suspension of withdrawals in valid time: `[suspended_at, resumed_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspension {
    pub suspended_at: Timestamp,
    pub resumed_at: Option<Timestamp>,
}

/// The ledger's current state, as far as deciding commands needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteModel {
    pub head_seq: Seq,
    pub head_recorded_at: Option<Timestamp>,
    /// The largest `occurred_at` in the log.
    pub max_occurred_at: Option<Timestamp>,
    /// `id_hash(id)` -> seq. A hit is a candidate: the caller reads the event and compares ids.
    pub(crate) ids: FastMap<u64, Seq>,
    /// Ids whose hash collided with an earlier, different id.
    pub(crate) id_collisions: FastMap<EventId, Seq>,
    /// Per account: its stream and its balances.
    pub accounts: FastMap<AccountId, AccountState>,
    /// The ledger-wide control stream.
    pub ledger_stream: StreamState,
    pub withdrawals: FastMap<EventId, WithdrawalState>,
    pub suspensions: Vec<Suspension>,
    /// Per asset, everything ever credited (deposits, reversals, reimbursements). Every flow,
    /// balance and loss total of the asset, at any moment, is at most this, so keeping it within
    /// the asset's limit keeps every one of them exact.
    pub(crate) credited: FastMap<custos_domain::Asset, Decimal>,
    /// The USD value of every withdrawal ever appended: every USD sum a report makes (attempted,
    /// prevented, reimbursed, per asset, group or in total) is at most this.
    pub(crate) withdrawn_usd: Decimal,
}

impl WriteModel {
    /// Whether any event so far credited `asset` (a symbol the ledger has seen).
    pub fn has_asset(&self, asset: &custos_domain::Asset) -> bool {
        self.credited.contains_key(asset)
    }
}

/// The outcome of deciding a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Append this event.
    Append(NewEvent),
    /// The id was used before for the same command: nothing to append, this is the original seq.
    Duplicate { seq: Seq },
}

/// An event decided but not yet sealed into an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: EventId,
    pub stream: StreamId,
    pub stream_version: u64,
    pub recorded_at: Timestamp,
    pub occurred_at: Timestamp,
    pub event: Event,
}

impl NewEvent {
    /// Seals the decided event as `seq`, linked to `prev_hash`: the envelope and its record.
    pub fn seal(self, seq: Seq, prev_hash: &custos_domain::Hash) -> (Envelope, Vec<u8>) {
        Envelope::seal(
            seq,
            self.stream,
            self.stream_version,
            self.id,
            self.recorded_at,
            self.occurred_at,
            self.event,
            prev_hash,
        )
    }
}

/// The USD share of a reimbursement: the pro rata value of the cumulative reimbursed amount,
/// rounded to cents, minus that of what was reimbursed before, so shares add up exactly.
/// Computed exactly; `None` only when `before + amount` exceeds `withdrawn` (a caller's bug).
pub fn reimbursement_usd(withdrawal_usd: Usd, withdrawn: Amount, before: Decimal, amount: Amount) -> Option<Usd> {
    let share = |part: Decimal| pro_rata_cents(withdrawal_usd.value(), part, withdrawn.value());
    // `before` is a sum of parts and may be finer than the withdrawal and this part (0.5 + 0.5
    // is 1.0): the sum is at the finest of the three, all within the asset's scale.
    let scale = withdrawn.value().scale().max(amount.value().scale()).max(before.scale());
    let after = add_exact(before, amount.value(), scale)?;
    // Both shares are within [0, withdrawal_usd] and the later is the larger: exact.
    #[allow(clippy::arithmetic_side_effects)]
    let usd = share(after)? - share(before)?;
    Usd::new(usd).ok()
}

impl WriteModel {
    /// The seq that may hold `id`, if any (the caller confirms by reading the event).
    pub fn id_candidate(&self, id: &EventId) -> Option<Seq> {
        self.id_collisions.get(id).copied().or_else(|| self.ids.get(&id_hash(id)).copied())
    }

    pub fn balance(&self, account: &AccountId, asset: &Asset) -> Decimal {
        self.accounts.get(account.as_str()).map_or(Decimal::ZERO, |a| a.balance(asset))
    }

    /// Refuses a credit of `amount` to `account` that would take its balance, or the asset's
    /// ledger-wide credited total, past the asset's limit (where a sum would stop being exact).
    fn check_credit(&self, id: &EventId, account: &AccountId, asset: &Asset, amount: Amount) -> Result<(), Rejection> {
        let limit = asset.quantity_max();
        let balance = self.balance(account, asset);
        if add_exact(balance, amount.value(), asset.scale()).is_none() {
            return Err(Rejection::AmountExceedsBalanceLimit {
                id: id.clone(),
                account: account.clone(),
                asset: *asset,
                balance,
                amount,
                limit,
            });
        }
        let total = self.credited.get(asset).copied().unwrap_or_default();
        if add_exact(total, amount.value(), asset.scale()).is_none() {
            return Err(Rejection::AmountExceedsAssetTotalLimit {
                id: id.clone(),
                asset: *asset,
                total,
                amount,
                limit,
            });
        }
        Ok(())
    }

    /// Refuses a withdrawal whose USD value would take the USD value of all withdrawals past the
    /// limit of a USD sum.
    fn check_usd(&self, id: &EventId, usd: Option<Usd>) -> Result<(), Rejection> {
        match usd {
            Some(usd) if add_exact(self.withdrawn_usd, usd.value(), USD_SCALE).is_none() => {
                Err(Rejection::UsdValueExceedsTotalLimit {
                    id: id.clone(),
                    usd,
                    total: self.withdrawn_usd,
                    limit: quantity_max(USD_SCALE),
                })
            }
            _ => Ok(()),
        }
    }

    /// The state of `stream` (version 0 and no events when it has none).
    pub fn stream_state(&self, stream: &StreamId) -> StreamState {
        match stream {
            StreamId::Account(a) => self.accounts.get(a.as_str()).map(|a| a.stream).unwrap_or_default(),
            StreamId::Ledger => self.ledger_stream,
        }
    }

    /// The suspension `t` falls in, if any.
    pub fn suspension_at(&self, t: Timestamp) -> Option<Suspension> {
        self.suspensions.iter().copied().find(|s| s.suspended_at <= t && s.resumed_at.is_none_or(|r| t < r))
    }

    pub fn suspended_now(&self) -> Option<Suspension> {
        self.suspensions.last().copied().filter(|s| s.resumed_at.is_none())
    }

    /// Decides `cmd` against the state. `existing` is the event stored under the candidate seq of
    /// `cmd.id` (see [`WriteModel::id_candidate`]), if there is one; `now` is the ledger's clock.
    pub fn decide(&self, cmd: &Command, existing: Option<&Envelope>, now: Timestamp) -> Result<Decision, Rejection> {
        let id = &cmd.id;
        if let Some(prev) = existing.filter(|e| &e.event_id == id) {
            return if same_content(cmd, prev) {
                Ok(Decision::Duplicate { seq: prev.seq })
            } else {
                Err(Rejection::IdReusedWithDifferentContent { id: id.clone(), seq: prev.seq })
            };
        }
        let head = self.head_recorded_at.unwrap_or(Timestamp::MIN);
        let recorded_at = match cmd.recorded_at {
            Some(r) => {
                if r > now {
                    return Err(Rejection::RecordedInFuture { id: id.clone(), recorded_at: r, now });
                }
                if r < head {
                    return Err(Rejection::RecordedBeforeLogHead { id: id.clone(), recorded_at: r, head });
                }
                r
            }
            None => now.max(head),
        };
        let occurred_at = cmd.occurred_at.unwrap_or(recorded_at);
        if occurred_at > recorded_at {
            return Err(Rejection::OccurredAfterRecorded { id: id.clone(), occurred_at, recorded_at });
        }
        let stream = match &cmd.body {
            CommandBody::Deposit { account, .. } | CommandBody::Withdraw { account, .. } => {
                // The model's own copy of a known id: every event of an account then shares one
                // allocation, and the projections' lookups compare pointers, not strings.
                let known = self.accounts.get_key_value(account.as_str()).map(|(k, _)| k);
                StreamId::Account(known.unwrap_or(account).clone())
            }
            CommandBody::Reverse { withdrawal, .. }
            | CommandBody::Reimburse { withdrawal, .. }
            | CommandBody::Flag { withdrawal, .. } => {
                StreamId::Account(self.withdrawal(id, withdrawal, &cmd.body)?.account.clone())
            }
            CommandBody::SuspendWithdrawals { .. } | CommandBody::ResumeWithdrawals => StreamId::Ledger,
        };
        let stream_state = self.stream_state(&stream);
        if let Some(expected) = cmd.expected_version {
            if expected != stream_state.version {
                return Err(Rejection::StreamVersionMismatch {
                    id: id.clone(),
                    stream: stream.to_string(),
                    expected,
                    actual: stream_state.version,
                });
            }
        }
        if let Some(last) = stream_state.last_occurred_at.filter(|last| occurred_at < *last) {
            return Err(Rejection::OccurredBeforeStreamHead {
                id: id.clone(),
                stream: stream.to_string(),
                occurred_at,
                last,
            });
        }
        let event = self.decide_event(cmd, occurred_at)?;
        Ok(Decision::Append(NewEvent {
            id: id.clone(),
            stream,
            stream_version: stream_state.version + 1,
            recorded_at,
            occurred_at,
            event,
        }))
    }

    fn withdrawal(
        &self,
        id: &EventId,
        withdrawal: &EventId,
        body: &CommandBody,
    ) -> Result<&WithdrawalState, Rejection> {
        let w = self.withdrawals.get(withdrawal).ok_or_else(|| Rejection::UnknownWithdrawal {
            id: id.clone(),
            kind: body.kind(),
            withdrawal: withdrawal.clone(),
        })?;
        let (account, asset) = match body {
            CommandBody::Reverse { account, asset, .. }
            | CommandBody::Reimburse { account, asset, .. }
            | CommandBody::Flag { account, asset, .. } => (account, asset),
            _ => (&None, &None),
        };
        let mismatch = |field: &'static str, given: String, actual: String| Rejection::ReferenceMismatch {
            id: id.clone(),
            withdrawal: withdrawal.clone(),
            field,
            given,
            actual,
        };
        if let Some(a) = account.as_ref().filter(|a| **a != w.account) {
            return Err(mismatch("account", a.to_string(), w.account.to_string()));
        }
        if let Some(a) = asset.as_ref().filter(|a| **a != w.asset) {
            return Err(mismatch("asset", a.to_string(), w.asset.to_string()));
        }
        Ok(w)
    }

    fn decide_event(&self, cmd: &Command, occurred_at: Timestamp) -> Result<Event, Rejection> {
        let id = &cmd.id;
        match &cmd.body {
            CommandBody::Deposit { account, asset, amount, usd_value } => {
                self.check_credit(id, account, asset, *amount)?;
                Ok(Event::Deposited { asset: *asset, amount: *amount, usd_value: *usd_value })
            }
            CommandBody::Withdraw { account, asset, amount, usd_value, unauthorized, destination, auth_factor } => {
                if let Some(s) = self.suspension_at(occurred_at) {
                    return Err(Rejection::WithdrawalDuringSuspension {
                        id: id.clone(),
                        account: account.clone(),
                        occurred_at,
                        suspended_at: s.suspended_at,
                        resumed_at: s.resumed_at,
                    });
                }
                let balance = self.balance(account, asset);
                if balance < amount.value() {
                    return Err(Rejection::InsufficientBalance {
                        id: id.clone(),
                        account: account.clone(),
                        asset: *asset,
                        balance,
                        amount: *amount,
                    });
                }
                self.check_usd(id, *usd_value)?;
                Ok(Event::Withdrawn {
                    asset: *asset,
                    amount: *amount,
                    usd_value: *usd_value,
                    unauthorized: *unauthorized,
                    destination: destination.clone(),
                    auth_factor: *auth_factor,
                })
            }
            CommandBody::Reverse { withdrawal, amount, .. } => {
                let w = self.withdrawal(id, withdrawal, &cmd.body)?;
                if let Some(a) = amount.filter(|a| *a != w.amount.value()) {
                    return Err(Rejection::ReferenceMismatch {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                        field: "amount",
                        given: a.to_string(),
                        actual: w.amount.to_string(),
                    });
                }
                if let Some(r) = &w.reversed_by {
                    return Err(Rejection::AlreadyReversed {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                        seq: r.seq,
                    });
                }
                if w.reimbursed > Decimal::ZERO {
                    return Err(Rejection::ReversalAfterReimbursement {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                        reimbursed: w.reimbursed,
                        asset: w.asset,
                    });
                }
                self.check_credit(id, &w.account, &w.asset, w.amount)?;
                Ok(Event::Reversed {
                    withdrawal: withdrawal.clone(),
                    withdrawal_seq: w.seq,
                    asset: w.asset,
                    amount: w.amount,
                    usd_value: w.usd_value,
                    withdrawal_unauthorized: w.marked_unauthorized,
                })
            }
            CommandBody::Reimburse { withdrawal, amount, .. } => {
                let w = self.withdrawal(id, withdrawal, &cmd.body)?;
                if !w.unauthorized() {
                    return Err(Rejection::ReimbursementOfAuthorizedWithdrawal {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                    });
                }
                if w.reversed_by.is_some() {
                    return Err(Rejection::ReimbursementAfterReversal {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                    });
                }
                // reimbursed <= amount, both of the asset's scale: exact.
                #[allow(clippy::arithmetic_side_effects)]
                let left = w.amount.value() - w.reimbursed;
                if left.is_zero() {
                    return Err(Rejection::AlreadyFullyReimbursed {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                        amount: w.amount,
                        asset: w.asset,
                    });
                }
                let requested = amount.unwrap_or(left);
                let amount = Amount::new(requested, &w.asset)
                    .map_err(|e| Rejection::InvalidAmount { id: id.clone(), reason: e.to_string() })?;
                if amount.value() > left {
                    return Err(Rejection::ReimbursementExceedsWithdrawal {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                        amount,
                        asset: w.asset,
                        reimbursed: w.reimbursed,
                        withdrawn: w.amount,
                    });
                }
                self.check_credit(id, &w.account, &w.asset, amount)?;
                // Within the withdrawal (checked above), the share is exact; should it ever not
                // be, the command is refused, never the writer stopped.
                let usd_value = match w.usd_value {
                    None => None,
                    Some(usd) => Some(reimbursement_usd(usd, w.amount, w.reimbursed, amount).ok_or_else(|| {
                        Rejection::InvalidAmount {
                            id: id.clone(),
                            reason: format!(
                                "the USD share of {amount} {} of withdrawal {withdrawal} cannot be computed exactly",
                                w.asset
                            ),
                        }
                    })?),
                };
                Ok(Event::Reimbursed {
                    withdrawal: withdrawal.clone(),
                    withdrawal_seq: w.seq,
                    asset: w.asset,
                    amount,
                    usd_value,
                })
            }
            CommandBody::Flag { withdrawal, .. } => {
                let w = self.withdrawal(id, withdrawal, &cmd.body)?;
                if w.marked_unauthorized {
                    return Err(Rejection::FlagOfWithdrawalMarkedUnauthorized {
                        id: id.clone(),
                        withdrawal: withdrawal.clone(),
                    });
                }
                if w.flagged {
                    return Err(Rejection::AlreadyFlagged { id: id.clone(), withdrawal: withdrawal.clone() });
                }
                Ok(Event::WithdrawalFlagged(Flagged {
                    withdrawal: withdrawal.clone(),
                    withdrawal_seq: w.seq,
                    withdrawal_occurred_at: w.occurred_at,
                    asset: w.asset,
                    amount: w.amount,
                    usd_value: w.usd_value,
                    reversed_by: w.reversed_by.clone(),
                }))
            }
            CommandBody::SuspendWithdrawals { reason } => {
                if let Some(s) = self.suspended_now() {
                    return Err(Rejection::AlreadySuspended { id: id.clone(), since: s.suspended_at });
                }
                Ok(Event::WithdrawalsSuspended { reason: reason.clone() })
            }
            CommandBody::ResumeWithdrawals => {
                if self.suspended_now().is_none() {
                    return Err(Rejection::NotSuspended { id: id.clone() });
                }
                Ok(Event::WithdrawalsResumed)
            }
        }
    }

    /// Folds an appended event into the state. An event this model decided always applies;
    /// one read from the log that breaks a rule the model relies on (a gap, a balance below
    /// zero, a reference to nothing: a log edited on disk) is a [`FoldError`] naming its seq,
    /// and the model must then be dropped.
    pub fn apply(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let broken = |what: String| FoldError::new(env.seq, what);
        if env.seq != self.head_seq + 1 {
            return Err(broken(format!("follows seq {} (the log must have no gaps)", self.head_seq)));
        }
        let stream = self.stream_state(&env.stream);
        if env.stream_version != stream.version + 1 {
            return Err(broken(format!(
                "stream {} version {} follows version {} (versions have no gaps)",
                env.stream, env.stream_version, stream.version
            )));
        }
        self.apply_event(env)?;
        self.head_seq = env.seq;
        self.head_recorded_at = Some(env.recorded_at);
        self.max_occurred_at = Some(self.max_occurred_at.map_or(env.occurred_at, |m| m.max(env.occurred_at)));
        let key = id_hash(&env.event_id);
        match self.ids.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.id_collisions.insert(env.event_id.clone(), env.seq);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(env.seq);
            }
        }
        let stream = StreamState { version: env.stream_version, last_occurred_at: Some(env.occurred_at) };
        match &env.stream {
            StreamId::Account(a) => self.account_mut(a).stream = stream,
            StreamId::Ledger => self.ledger_stream = stream,
        }
        Ok(())
    }

    fn account_mut(&mut self, a: &AccountId) -> &mut AccountState {
        if !self.accounts.contains_key(a.as_str()) {
            self.accounts.insert(a.clone(), AccountState::default());
        }
        self.accounts.get_mut(a.as_str()).expect("just ensured")
    }

    /// Moves `delta` into the balance of `asset` on the event's account (and a credit into the
    /// asset's credited total), exactly and never below zero.
    fn credit(&mut self, env: &Envelope, asset: &Asset, delta: Decimal) -> Result<(), FoldError> {
        let broken = |what: String| FoldError::new(env.seq, what);
        let account = env.stream.account().ok_or_else(|| broken("a balance event on the ledger stream".into()))?;
        if delta > Decimal::ZERO {
            let total = self.credited.entry(*asset).or_default();
            *total = add_exact(*total, delta, asset.scale())
                .ok_or_else(|| broken(format!("the credited total of {asset} passes its limit")))?;
        }
        let holdings = &mut self.account_mut(account).holdings;
        let (balance, _) = holdings
            .credit(asset, delta)
            .ok_or_else(|| broken(format!("the balance of {asset} in {account} passes its limit")))?;
        if balance < Decimal::ZERO {
            return Err(broken(format!("the balance of {asset} in {account} goes below zero ({balance})")));
        }
        Ok(())
    }

    fn withdrawal_mut(&mut self, seq: Seq, withdrawal: &EventId) -> Result<&mut WithdrawalState, FoldError> {
        self.withdrawals.get_mut(withdrawal).ok_or_else(|| {
            FoldError::new(seq, format!("refers to withdrawal {withdrawal}, which is not in the log before it"))
        })
    }

    fn apply_event(&mut self, env: &Envelope) -> Result<(), FoldError> {
        let broken = |what: String| FoldError::new(env.seq, what);
        match &env.event {
            Event::Deposited { asset, amount, .. } => self.credit(env, asset, amount.value())?,
            Event::Withdrawn { asset, amount, usd_value, unauthorized, .. } => {
                self.credit(env, asset, negate(amount.value()))?;
                if let Some(usd) = usd_value {
                    self.withdrawn_usd = add_exact(self.withdrawn_usd, usd.value(), USD_SCALE)
                        .ok_or_else(|| broken("the USD value of all withdrawals passes its limit".into()))?;
                }
                let account = env.stream.account().ok_or_else(|| broken("a withdrawal on the ledger stream".into()))?;
                self.withdrawals.insert(
                    env.event_id.clone(),
                    WithdrawalState {
                        seq: env.seq,
                        account: account.clone(),
                        asset: *asset,
                        amount: *amount,
                        usd_value: *usd_value,
                        occurred_at: env.occurred_at,
                        marked_unauthorized: *unauthorized,
                        flagged: false,
                        reversed_by: None,
                        reimbursed: Decimal::ZERO,
                    },
                );
            }
            Event::Reversed { withdrawal, asset, amount, .. } => {
                self.withdrawal_mut(env.seq, withdrawal)?;
                self.credit(env, asset, amount.value())?;
                let w = self.withdrawal_mut(env.seq, withdrawal)?;
                w.reversed_by = Some(ReversalRef { seq: env.seq, occurred_at: env.occurred_at });
            }
            Event::Reimbursed { withdrawal, asset, amount, .. } => {
                self.withdrawal_mut(env.seq, withdrawal)?;
                self.credit(env, asset, amount.value())?;
                let w = self.withdrawal_mut(env.seq, withdrawal)?;
                w.reimbursed = add_exact(w.reimbursed, amount.value(), asset.scale())
                    .filter(|r| *r <= w.amount.value())
                    .ok_or_else(|| broken(format!("reimburses withdrawal {withdrawal} beyond its amount")))?;
            }
            Event::WithdrawalFlagged(f) => self.withdrawal_mut(env.seq, &f.withdrawal)?.flagged = true,
            Event::WithdrawalsSuspended { .. } => {
                self.suspensions.push(Suspension { suspended_at: env.occurred_at, resumed_at: None });
            }
            Event::WithdrawalsResumed => match self.suspensions.last_mut() {
                Some(s) if s.resumed_at.is_none() => s.resumed_at = Some(env.occurred_at),
                _ => return Err(broken("resumes withdrawals that are not suspended".into())),
            },
        }
        Ok(())
    }
}

/// The command that would have produced `env` (used by `verify` and by idempotency checks).
pub fn command_of(env: &Envelope) -> Command {
    let account = || env.stream.account().cloned().unwrap_or_else(|| AccountId::new("invalid").expect("valid"));
    let body = match &env.event {
        Event::Deposited { asset, amount, usd_value } => {
            CommandBody::Deposit { account: account(), asset: *asset, amount: *amount, usd_value: *usd_value }
        }
        Event::Withdrawn { asset, amount, usd_value, unauthorized, destination, auth_factor } => {
            CommandBody::Withdraw {
                account: account(),
                asset: *asset,
                amount: *amount,
                usd_value: *usd_value,
                unauthorized: *unauthorized,
                destination: destination.clone(),
                auth_factor: *auth_factor,
            }
        }
        Event::Reversed { withdrawal, asset, amount, .. } => CommandBody::Reverse {
            withdrawal: withdrawal.clone(),
            account: Some(account()),
            asset: Some(*asset),
            amount: Some(amount.value()),
        },
        Event::Reimbursed { withdrawal, asset, amount, .. } => CommandBody::Reimburse {
            withdrawal: withdrawal.clone(),
            account: Some(account()),
            asset: Some(*asset),
            amount: Some(amount.value()),
        },
        Event::WithdrawalFlagged(f) => {
            CommandBody::Flag { withdrawal: f.withdrawal.clone(), account: Some(account()), asset: Some(f.asset) }
        }
        Event::WithdrawalsSuspended { reason } => CommandBody::SuspendWithdrawals { reason: reason.clone() },
        Event::WithdrawalsResumed => CommandBody::ResumeWithdrawals,
    };
    Command {
        id: env.event_id.clone(),
        occurred_at: Some(env.occurred_at),
        recorded_at: Some(env.recorded_at),
        expected_version: Some(env.stream_version - 1),
        body,
    }
}

/// Whether `cmd` asks for what `prev` records. Fields the command leaves out (defaults) match.
fn same_content(cmd: &Command, prev: &Envelope) -> bool {
    let stored = command_of(prev);
    let opt_eq = |given: &Option<Timestamp>, actual: &Option<Timestamp>| given.is_none() || given == actual;
    if !opt_eq(&cmd.occurred_at, &stored.occurred_at) || !opt_eq(&cmd.recorded_at, &stored.recorded_at) {
        return false;
    }
    fn opt<T: PartialEq>(given: &Option<T>, actual: &Option<T>) -> bool {
        given.is_none() || given == actual
    }
    match (&cmd.body, &stored.body) {
        (
            CommandBody::Reverse { withdrawal: w, account, asset, amount },
            CommandBody::Reverse { withdrawal: w2, account: a2, asset: s2, amount: m2 },
        )
        | (
            CommandBody::Reimburse { withdrawal: w, account, asset, amount },
            CommandBody::Reimburse { withdrawal: w2, account: a2, asset: s2, amount: m2 },
        ) => w == w2 && opt(account, a2) && opt(asset, s2) && opt(amount, m2),
        (
            CommandBody::Flag { withdrawal: w, account, asset },
            CommandBody::Flag { withdrawal: w2, account: a2, asset: s2 },
        ) => w == w2 && opt(account, a2) && opt(asset, s2),
        (given, stored) => given == stored,
    }
}

/// The 64-bit key of an id in the write model's map (in memory only: any good hash will do).
fn id_hash(id: &EventId) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6375_7374_6f73).hash_one(id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_holds_any_number_of_assets_inline_first() {
        let mut a = AccountState::default();
        let asset = |s: &str| Asset::new(s).unwrap();
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        for (sym, amount) in [("ETH", "1.5"), ("BTC", "2"), ("USDC", "3"), ("SOL", "4"), ("BTC", "-0.5"), ("SOL", "1")]
        {
            a.holdings.credit(&asset(sym), d(amount));
        }
        let mut got: Vec<(String, Decimal)> = a.holdings.iter().map(|(s, b)| (s.to_string(), b)).collect();
        got.sort();
        let want = [("BTC", "1.5"), ("ETH", "1.5"), ("SOL", "5"), ("USDC", "3")];
        assert_eq!(got, want.map(|(s, b)| (s.to_string(), d(b))).to_vec());
        assert_eq!(a.balance(&asset("SOL")), d("5"));
        assert_eq!(a.balance(&asset("DOGE")), Decimal::ZERO);
        // Equality ignores the order assets arrived in.
        let mut b = AccountState::default();
        for (sym, amount) in [("USDC", "3"), ("SOL", "5"), ("ETH", "1.5"), ("BTC", "1.5")] {
            b.holdings.credit(&asset(sym), d(amount));
        }
        assert_eq!(a.holdings, b.holdings);
        b.holdings.credit(&asset("BTC"), d("0.1"));
        assert_ne!(a.holdings, b.holdings);
    }
}

#[cfg(test)]
mod reimbursement_tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Two halves make `1.0`, a sum finer than the withdrawal (`3`) and the last part (`2`):
    /// the USD share of the rest was computed at the coarser scale, refused, and the writer
    /// panicked on the `expect` (found by tests/tests/limits.rs).
    #[test]
    fn a_reimbursement_after_parts_finer_than_the_withdrawal_has_its_usd_share() {
        let eth = Asset::new("ETH").unwrap();
        let amount = |s: &str| Amount::new(d(s), &eth).unwrap();
        let usd = Usd::new(d("300")).unwrap();
        let before = d("0.5") + d("0.5");
        assert_eq!(before.scale(), 1);
        let got = reimbursement_usd(usd, amount("3"), before, amount("2")).map(Usd::value);
        assert_eq!(got, Some(d("200")));
        assert_eq!(reimbursement_usd(usd, amount("3"), d("0.5"), amount("0.5")).map(Usd::value), Some(d("50")));
    }
}
