//! Commands: requests to change the ledger. Each carries its idempotency key (`id`); deciding
//! one against the ledger's state either yields exactly one event or a rejection.

use rust_decimal::Decimal;

use crate::event::{AuthFactor, EventKind};
use crate::types::{AccountId, Amount, Asset, EventId, Timestamp, Usd};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: EventId,
    /// Valid time; `None` means "when the ledger records it".
    pub occurred_at: Option<Timestamp>,
    /// Transaction time for backfilling history (imports only); `None` means now.
    pub recorded_at: Option<Timestamp>,
    /// Optimistic concurrency: the stream version the caller last saw (0 for a new stream).
    pub expected_version: Option<u64>,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Deposit {
        account: AccountId,
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
    },
    Withdraw {
        account: AccountId,
        asset: Asset,
        amount: Amount,
        usd_value: Option<Usd>,
        unauthorized: bool,
        destination: Option<String>,
        auth_factor: Option<AuthFactor>,
    },
    /// Account, asset and amount follow from the withdrawal; when given they must match.
    Reverse {
        withdrawal: EventId,
        account: Option<AccountId>,
        asset: Option<Asset>,
        amount: Option<Decimal>,
    },
    /// `amount` defaults to what is left to reimburse.
    Reimburse {
        withdrawal: EventId,
        account: Option<AccountId>,
        asset: Option<Asset>,
        amount: Option<Decimal>,
    },
    Flag {
        withdrawal: EventId,
        account: Option<AccountId>,
        asset: Option<Asset>,
    },
    SuspendWithdrawals {
        reason: Option<String>,
    },
    ResumeWithdrawals,
}

impl CommandBody {
    pub fn kind(&self) -> EventKind {
        match self {
            CommandBody::Deposit { .. } => EventKind::Deposit,
            CommandBody::Withdraw { .. } => EventKind::Withdrawal,
            CommandBody::Reverse { .. } => EventKind::Reversal,
            CommandBody::Reimburse { .. } => EventKind::Reimbursement,
            CommandBody::Flag { .. } => EventKind::Flag,
            CommandBody::SuspendWithdrawals { .. } => EventKind::Suspend,
            CommandBody::ResumeWithdrawals => EventKind::Resume,
        }
    }
}
