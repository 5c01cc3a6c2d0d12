//! The events: immutable facts in the log, in the form the rest of the code works with (always
//! the current schema; older stored forms are upcast by the codec).
//!
//! Events that refer to a withdrawal carry the facts about it that a fold needs (its seq, asset,
//! amount, USD value, marker), so folding never has to look another event up. The ledger fills
//! them in from its own state when it decides the command; `verify` checks them against the
//! withdrawal they name.

use bincode::{Decode, Encode};

use crate::types::{Amount, Asset, EventId, Seq, Timestamp, Usd};

/// The payload schema version new events are written with. Version 1 (see `event_v1`) lacked
/// `Withdrawn::auth_factor`; it is decoded forever and upcast.
pub const SCHEMA_VERSION_CURRENT: u16 = 2;

/// The second factor that authorized a withdrawal, as the exchange reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum AuthFactor {
    Totp,
    Sms,
    Email,
    HardwareKey,
    ApiKey,
    /// No second factor was asked (e.g. a whitelisted address).
    NotRequired,
}

impl AuthFactor {
    pub const ALL: [AuthFactor; 6] = [
        AuthFactor::Totp,
        AuthFactor::Sms,
        AuthFactor::Email,
        AuthFactor::HardwareKey,
        AuthFactor::ApiKey,
        AuthFactor::NotRequired,
    ];
    pub fn name(self) -> &'static str {
        match self {
            AuthFactor::Totp => "totp",
            AuthFactor::Sms => "sms",
            AuthFactor::Email => "email",
            AuthFactor::HardwareKey => "hardware-key",
            AuthFactor::ApiKey => "api-key",
            AuthFactor::NotRequired => "not-required",
        }
    }
    pub fn parse(s: &str) -> Option<AuthFactor> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A reversal that happened before the withdrawal it reverses was flagged.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ReversalRef {
    pub seq: Seq,
    pub occurred_at: Timestamp,
}

/// `WithdrawalFlagged`: a past withdrawal found to be unauthorized.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Flagged {
    pub withdrawal: EventId,
    pub withdrawal_seq: Seq,
    pub withdrawal_occurred_at: Timestamp,
    pub asset: Asset,
    pub amount: Amount,
    pub usd_value: Option<Usd>,
    /// Set when the withdrawal had already been reversed when it was flagged: the flag then also
    /// makes that reversal count as prevented.
    pub reversed_by: Option<ReversalRef>,
}

/// An event's payload. The stream (account) and times are in the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Event {
    Deposited {
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
    },
    Withdrawn {
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
        /// Marked unauthorized when it happened (as opposed to flagged later).
        unauthorized: bool,
        destination: Option<String>,
        /// Schema version 2: the second factor that authorized it, when known.
        auth_factor: Option<AuthFactor>,
    },
    /// Credits back the full amount of a withdrawal.
    Reversed {
        withdrawal: EventId,
        withdrawal_seq: Seq,
        asset: Asset,
        amount: Amount,
        /// The withdrawal's USD value (a reversal is always of the full amount).
        usd_value: Option<Usd>,
        /// The withdrawal's own `unauthorized` marker.
        withdrawal_unauthorized: bool,
    },
    /// Reimburses (part of) an unauthorized withdrawal.
    Reimbursed {
        withdrawal: EventId,
        withdrawal_seq: Seq,
        asset: Asset,
        amount: Amount,
        /// This reimbursement's share of the withdrawal's USD value: the pro rata value of the
        /// cumulative reimbursed amount, rounded to cents, minus that of the reimbursements
        /// before it, so the shares of a full reimbursement add up to the withdrawal's value.
        usd_value: Option<Usd>,
    },
    WithdrawalFlagged(Flagged),
    WithdrawalsSuspended {
        reason: Option<String>,
    },
    WithdrawalsResumed,
}

/// The kind of an event, as the import format and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Deposit,
    Withdrawal,
    Reversal,
    Reimbursement,
    Flag,
    Suspend,
    Resume,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Deposit,
        EventKind::Withdrawal,
        EventKind::Reversal,
        EventKind::Reimbursement,
        EventKind::Flag,
        EventKind::Suspend,
        EventKind::Resume,
    ];
    /// The import format's name for the kind.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Deposit => "deposit",
            EventKind::Withdrawal => "withdrawal",
            EventKind::Reversal => "reversal",
            EventKind::Reimbursement => "reimbursement",
            EventKind::Flag => "flag",
            EventKind::Suspend => "suspend",
            EventKind::Resume => "resume",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
    /// A kind to filter a listing by: the import name (`deposit`) or the event name the
    /// tables show (`Deposited`).
    pub fn parse_filter(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.name() == s || k.event_name() == s).ok_or_else(|| {
            let names: Vec<String> = Self::ALL.iter().map(|k| format!("{} ({})", k.name(), k.event_name())).collect();
            format!("unknown kind {s:?} (expected one of {})", names.join(", "))
        })
    }
    /// The past-tense event name.
    pub fn event_name(self) -> &'static str {
        match self {
            EventKind::Deposit => "Deposited",
            EventKind::Withdrawal => "Withdrawn",
            EventKind::Reversal => "Reversed",
            EventKind::Reimbursement => "Reimbursed",
            EventKind::Flag => "WithdrawalFlagged",
            EventKind::Suspend => "WithdrawalsSuspended",
            EventKind::Resume => "WithdrawalsResumed",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Deposited { .. } => EventKind::Deposit,
            Event::Withdrawn { .. } => EventKind::Withdrawal,
            Event::Reversed { .. } => EventKind::Reversal,
            Event::Reimbursed { .. } => EventKind::Reimbursement,
            Event::WithdrawalFlagged(_) => EventKind::Flag,
            Event::WithdrawalsSuspended { .. } => EventKind::Suspend,
            Event::WithdrawalsResumed => EventKind::Resume,
        }
    }
    /// The asset and amount the event moves or refers to, if any.
    pub fn asset_amount(&self) -> Option<(&Asset, Amount)> {
        match self {
            Event::Deposited { asset, amount, .. }
            | Event::Withdrawn { asset, amount, .. }
            | Event::Reversed { asset, amount, .. }
            | Event::Reimbursed { asset, amount, .. } => Some((asset, *amount)),
            Event::WithdrawalFlagged(f) => Some((&f.asset, f.amount)),
            Event::WithdrawalsSuspended { .. } | Event::WithdrawalsResumed => None,
        }
    }
    /// The withdrawal a reversal, reimbursement or flag refers to.
    pub fn withdrawal_ref(&self) -> Option<(&EventId, Seq)> {
        match self {
            Event::Reversed { withdrawal, withdrawal_seq, .. }
            | Event::Reimbursed { withdrawal, withdrawal_seq, .. } => Some((withdrawal, *withdrawal_seq)),
            Event::WithdrawalFlagged(f) => Some((&f.withdrawal, f.withdrawal_seq)),
            _ => None,
        }
    }
    pub fn usd_value(&self) -> Option<Usd> {
        match self {
            Event::Deposited { usd_value, .. }
            | Event::Withdrawn { usd_value, .. }
            | Event::Reversed { usd_value, .. }
            | Event::Reimbursed { usd_value, .. } => *usd_value,
            Event::WithdrawalFlagged(f) => f.usd_value,
            _ => None,
        }
    }
}
