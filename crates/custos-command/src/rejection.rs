//! Why the ledger refused a command: data, not an error. One variant per broken rule, each
//! message naming the command id and the account, asset, amounts or events involved.

use custos_domain::{AccountId, Amount, Asset, EventId, EventKind, Seq, Timestamp, Usd};
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    // Invariant 1: an id is used once.
    #[error("{id}: id already used by seq {seq} for a different command")]
    IdReusedWithDifferentContent { id: EventId, seq: Seq },

    // Invariant 2: no balance below zero.
    #[error("{id}: withdrawal of {amount} {asset} from {account} exceeds its balance of {} {asset}", .balance.normalize())]
    InsufficientBalance { id: EventId, account: AccountId, asset: Asset, balance: Decimal, amount: Amount },
    #[error("{id}: occurred_at {occurred_at} is before the last event of {stream} ({last}); events of one account are in time order")]
    OccurredBeforeStreamHead { id: EventId, stream: String, occurred_at: Timestamp, last: Timestamp },

    // Invariant 3: references, reversals, reimbursements, flags, suspensions.
    #[error("{id}: {} refers to withdrawal {withdrawal}, which the ledger does not have", kind.name())]
    UnknownWithdrawal { id: EventId, kind: EventKind, withdrawal: EventId },
    #[error("{id}: {field} {given} does not match withdrawal {withdrawal}, whose {field} is {actual}")]
    ReferenceMismatch { id: EventId, withdrawal: EventId, field: &'static str, given: String, actual: String },
    #[error("{id}: withdrawal {withdrawal} was already reversed by seq {seq}")]
    AlreadyReversed { id: EventId, withdrawal: EventId, seq: Seq },
    #[error("{id}: withdrawal {withdrawal} cannot be reversed: {} {asset} of it was already reimbursed", .reimbursed.normalize())]
    ReversalAfterReimbursement { id: EventId, withdrawal: EventId, reimbursed: Decimal, asset: Asset },
    #[error(
        "{id}: withdrawal {withdrawal} is not unauthorized (neither marked nor flagged), so it cannot be reimbursed"
    )]
    ReimbursementOfAuthorizedWithdrawal { id: EventId, withdrawal: EventId },
    #[error("{id}: withdrawal {withdrawal} was reversed, so it cannot be reimbursed")]
    ReimbursementAfterReversal { id: EventId, withdrawal: EventId },
    #[error("{id}: reimbursing {amount} {asset} of withdrawal {withdrawal} would exceed its {withdrawn} {asset} ({} {asset} already reimbursed)", .reimbursed.normalize())]
    ReimbursementExceedsWithdrawal {
        id: EventId,
        withdrawal: EventId,
        amount: Amount,
        asset: Asset,
        reimbursed: Decimal,
        withdrawn: Amount,
    },
    #[error("{id}: withdrawal {withdrawal} of {amount} {asset} is already fully reimbursed")]
    AlreadyFullyReimbursed { id: EventId, withdrawal: EventId, amount: Amount, asset: Asset },
    #[error("{id}: withdrawal {withdrawal} was already flagged")]
    AlreadyFlagged { id: EventId, withdrawal: EventId },
    #[error("{id}: withdrawal {withdrawal} was marked unauthorized when it happened; there is nothing to flag")]
    FlagOfWithdrawalMarkedUnauthorized { id: EventId, withdrawal: EventId },
    #[error("{id}: withdrawals are already suspended (since {since})")]
    AlreadySuspended { id: EventId, since: Timestamp },
    #[error("{id}: withdrawals are not suspended, so they cannot be resumed")]
    NotSuspended { id: EventId },

    // Invariant 4: no withdrawal inside a suspension.
    #[error("{id}: withdrawal from {account} at {occurred_at} falls inside the suspension of withdrawals from {suspended_at}{}", resumed_at.map(|r| format!(" to {r}")).unwrap_or_else(|| " (still in force)".into()))]
    WithdrawalDuringSuspension {
        id: EventId,
        account: AccountId,
        occurred_at: Timestamp,
        suspended_at: Timestamp,
        resumed_at: Option<Timestamp>,
    },

    // Invariant 5: times and amounts.
    #[error("{id}: occurred_at {occurred_at} is after recorded_at {recorded_at} (no events from the future)")]
    OccurredAfterRecorded { id: EventId, occurred_at: Timestamp, recorded_at: Timestamp },
    #[error("{id}: recorded_at {recorded_at} is in the future (now {now})")]
    RecordedInFuture { id: EventId, recorded_at: Timestamp, now: Timestamp },
    #[error("{id}: recorded_at {recorded_at} is before the log's last recorded_at {head}")]
    RecordedBeforeLogHead { id: EventId, recorded_at: Timestamp, head: Timestamp },
    #[error("{id}: {reason}")]
    InvalidAmount { id: EventId, reason: String },

    // Exactness (DESIGN.md, "Exactness and limits"): no sum the ledger keeps may round.
    #[error("{id}: crediting {amount} {asset} to {account} would take its balance of {balance} {asset} past {limit} {asset}, the largest balance of {asset} the ledger keeps exactly")]
    AmountExceedsBalanceLimit {
        id: EventId,
        account: AccountId,
        asset: Asset,
        balance: Decimal,
        amount: Amount,
        limit: Decimal,
    },
    #[error("{id}: crediting {amount} {asset} would take the ledger's total of {asset} ever credited ({total} {asset}: deposits, reversals, reimbursements) past {limit} {asset}, the largest total of {asset} the ledger keeps exactly")]
    AmountExceedsAssetTotalLimit { id: EventId, asset: Asset, total: Decimal, amount: Amount, limit: Decimal },
    #[error("{id}: usd value {usd} would take the USD value of all withdrawals ({total}) past {limit}, the largest USD sum the ledger keeps exactly")]
    UsdValueExceedsTotalLimit { id: EventId, usd: Usd, total: Decimal, limit: Decimal },

    // Invariant 6: optimistic concurrency.
    #[error("{id}: stream {stream} is at version {actual}, not the expected {expected}")]
    StreamVersionMismatch { id: EventId, stream: String, expected: u64, actual: u64 },
}

impl Rejection {
    /// A stable, machine-readable name for the rule that was broken.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::IdReusedWithDifferentContent { .. } => "id_reused_with_different_content",
            Rejection::InsufficientBalance { .. } => "insufficient_balance",
            Rejection::OccurredBeforeStreamHead { .. } => "occurred_before_stream_head",
            Rejection::UnknownWithdrawal { .. } => "unknown_withdrawal",
            Rejection::ReferenceMismatch { .. } => "reference_mismatch",
            Rejection::AlreadyReversed { .. } => "already_reversed",
            Rejection::ReversalAfterReimbursement { .. } => "reversal_after_reimbursement",
            Rejection::ReimbursementOfAuthorizedWithdrawal { .. } => "reimbursement_of_authorized_withdrawal",
            Rejection::ReimbursementAfterReversal { .. } => "reimbursement_after_reversal",
            Rejection::ReimbursementExceedsWithdrawal { .. } => "reimbursement_exceeds_withdrawal",
            Rejection::AlreadyFullyReimbursed { .. } => "already_fully_reimbursed",
            Rejection::AlreadyFlagged { .. } => "already_flagged",
            Rejection::FlagOfWithdrawalMarkedUnauthorized { .. } => "flag_of_withdrawal_marked_unauthorized",
            Rejection::AlreadySuspended { .. } => "already_suspended",
            Rejection::NotSuspended { .. } => "not_suspended",
            Rejection::WithdrawalDuringSuspension { .. } => "withdrawal_during_suspension",
            Rejection::OccurredAfterRecorded { .. } => "occurred_after_recorded",
            Rejection::RecordedInFuture { .. } => "recorded_in_future",
            Rejection::RecordedBeforeLogHead { .. } => "recorded_before_log_head",
            Rejection::InvalidAmount { .. } => "invalid_amount",
            Rejection::AmountExceedsBalanceLimit { .. } => "amount_exceeds_balance_limit",
            Rejection::AmountExceedsAssetTotalLimit { .. } => "amount_exceeds_asset_total_limit",
            Rejection::UsdValueExceedsTotalLimit { .. } => "usd_value_exceeds_total_limit",
            Rejection::StreamVersionMismatch { .. } => "stream_version_mismatch",
        }
    }
}
