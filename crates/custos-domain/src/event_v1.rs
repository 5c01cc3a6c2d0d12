//! Payload schema version 1, frozen. Never edit these types: they are how logs written before
//! version 2 are read, forever. `upcast` turns them into today's [`Event`].
//!
//! Version 1 differs from version 2 only in `Withdrawn`, which had no `auth_factor`. Variant
//! order is the encoding: it must never change.

use bincode::{Decode, Encode};

use crate::event::{Event, Flagged};
use crate::types::{Amount, Asset, EventId, Seq, Usd};

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum EventV1 {
    Deposited {
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
    },
    Withdrawn {
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
        unauthorized: bool,
        destination: Option<String>,
    },
    Reversed {
        withdrawal: EventId,
        withdrawal_seq: Seq,
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
        withdrawal_unauthorized: bool,
    },
    Reimbursed {
        withdrawal: EventId,
        withdrawal_seq: Seq,
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
    },
    WithdrawalFlagged(Flagged),
    WithdrawalsSuspended {
        reason: Option<String>,
    },
    WithdrawalsResumed,
}

impl EventV1 {
    pub(crate) fn upcast(self) -> Event {
        match self {
            EventV1::Deposited { asset, amount, usd_value } => Event::Deposited { asset, amount, usd_value },
            EventV1::Withdrawn { asset, amount, usd_value, unauthorized, destination } => {
                Event::Withdrawn { asset, amount, usd_value, unauthorized, destination, auth_factor: None }
            }
            EventV1::Reversed { withdrawal, withdrawal_seq, asset, amount, usd_value, withdrawal_unauthorized } => {
                Event::Reversed { withdrawal, withdrawal_seq, asset, amount, usd_value, withdrawal_unauthorized }
            }
            EventV1::Reimbursed { withdrawal, withdrawal_seq, asset, amount, usd_value } => {
                Event::Reimbursed { withdrawal, withdrawal_seq, asset, amount, usd_value }
            }
            EventV1::WithdrawalFlagged(f) => Event::WithdrawalFlagged(f),
            EventV1::WithdrawalsSuspended { reason } => Event::WithdrawalsSuspended { reason },
            EventV1::WithdrawalsResumed => Event::WithdrawalsResumed,
        }
    }
}
