//! The write model as bytes: a snapshot the ledger stores beside the log, so that a process
//! that appends (one `custos deposit`) starts from it and folds only the events after it
//! instead of the whole log.
//!
//! A snapshot is derived data: the ledger checks it names an event whose chain hash it holds
//! (the log it was taken from), `verify` compares it with its own fold of the log, and anything
//! that does not decode or match is ignored in favour of folding the log. Encoding: bincode's
//! standard configuration (variable-length integers) of, in order: the format version, the
//! head seq, head `recorded_at` and the largest `occurred_at` (optional nanoseconds), the id
//! hashes, the id collisions, the accounts (id, stream version, last `occurred_at`, holdings),
//! the ledger stream, the withdrawals, the suspensions, the credited totals, and the USD of
//! all withdrawals; every map as a length and its entries (in the map's order: sorting a
//! million ids cost more than the rest of the encoding); every `Decimal` as a flag byte (scale,
//! sign in the top bit) and its mantissa.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use custos_domain::{AccountId, Amount, Asset, EventId, ReversalRef, Seq, Timestamp, Usd};
use rust_decimal::Decimal;

use crate::model::{AccountState, StreamState, Suspension, WithdrawalState, WriteModel};

/// Bumped whenever the encoding or the model's meaning changes; a snapshot of another format
/// is ignored (the log is folded instead).
pub const SNAPSHOT_FORMAT: u32 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

type Packed = (u8, u128);

fn pack(d: Decimal) -> Packed {
    let flags = d.scale() as u8 | if d.is_sign_negative() { 0x80 } else { 0 };
    (flags, d.mantissa().unsigned_abs())
}

fn unpack((flags, mantissa): Packed) -> Result<Decimal, DecodeError> {
    let scale = u32::from(flags & 0x7f);
    let bad = || DecodeError::Other("malformed decimal in the write-model snapshot");
    if scale > 28 || mantissa >= 1 << 96 {
        return Err(bad());
    }
    let m = i128::try_from(mantissa).map_err(|_| bad())?;
    Decimal::try_from_i128_with_scale(if flags & 0x80 != 0 { -m } else { m }, scale).map_err(|_| bad())
}

fn encode_len<E: Encoder>(n: usize, e: &mut E) -> Result<(), EncodeError> {
    (n as u64).encode(e)
}

fn decode_len<D: Decoder>(d: &mut D) -> Result<usize, DecodeError> {
    let n = u64::decode(d)?;
    usize::try_from(n).map_err(|_| DecodeError::Other("a length in the write-model snapshot is too large"))
}

/// The most entries a map reserves room for before decoding them (a damaged length then
/// fails when the bytes run out, having reserved at most this).
const RESERVE_MAX: usize = 1 << 22;

fn stream_encode<E: Encoder>(s: &StreamState, e: &mut E) -> Result<(), EncodeError> {
    s.version.encode(e)?;
    s.last_occurred_at.encode(e)
}

fn stream_decode<D: Decoder<Context = ()>>(d: &mut D) -> Result<StreamState, DecodeError> {
    Ok(StreamState { version: u64::decode(d)?, last_occurred_at: Option::<Timestamp>::decode(d)? })
}

struct Snapshot<'a>(&'a WriteModel);

impl Encode for Snapshot<'_> {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        let m = self.0;
        SNAPSHOT_FORMAT.encode(e)?;
        m.head_seq.encode(e)?;
        m.head_recorded_at.encode(e)?;
        m.max_occurred_at.encode(e)?;
        encode_len(m.ids.len(), e)?;
        for (k, v) in &m.ids {
            k.encode(e)?;
            v.encode(e)?;
        }
        encode_len(m.id_collisions.len(), e)?;
        for (k, v) in &m.id_collisions {
            k.encode(e)?;
            v.encode(e)?;
        }
        encode_len(m.accounts.len(), e)?;
        for (k, a) in &m.accounts {
            k.encode(e)?;
            stream_encode(&a.stream, e)?;
            encode_len(a.holdings.len(), e)?;
            for (asset, balance) in a.holdings.iter() {
                asset.encode(e)?;
                pack(balance).encode(e)?;
            }
        }
        stream_encode(&m.ledger_stream, e)?;
        encode_len(m.withdrawals.len(), e)?;
        for (k, w) in &m.withdrawals {
            k.encode(e)?;
            w.seq.encode(e)?;
            w.account.encode(e)?;
            w.asset.encode(e)?;
            w.amount.encode(e)?;
            w.usd_value.encode(e)?;
            w.occurred_at.encode(e)?;
            w.marked_unauthorized.encode(e)?;
            w.flagged.encode(e)?;
            w.reversed_by.as_ref().map(|r| (r.seq, r.occurred_at)).encode(e)?;
            pack(w.reimbursed).encode(e)?;
        }
        encode_len(m.suspensions.len(), e)?;
        for s in &m.suspensions {
            s.suspended_at.encode(e)?;
            s.resumed_at.encode(e)?;
        }
        encode_len(m.credited.len(), e)?;
        for (asset, total) in &m.credited {
            asset.encode(e)?;
            pack(*total).encode(e)?;
        }
        pack(m.withdrawn_usd).encode(e)
    }
}

fn decode_model<D: Decoder<Context = ()>>(d: &mut D) -> Result<WriteModel, DecodeError> {
    if u32::decode(d)? != SNAPSHOT_FORMAT {
        return Err(DecodeError::Other("the write-model snapshot has another format"));
    }
    let mut m = WriteModel {
        head_seq: Seq::decode(d)?,
        head_recorded_at: Option::<Timestamp>::decode(d)?,
        max_occurred_at: Option::<Timestamp>::decode(d)?,
        ..WriteModel::default()
    };
    let n = decode_len(d)?;
    m.ids.reserve(n.min(RESERVE_MAX));
    for _ in 0..n {
        m.ids.insert(u64::decode(d)?, Seq::decode(d)?);
    }
    for _ in 0..decode_len(d)? {
        m.id_collisions.insert(EventId::decode(d)?, Seq::decode(d)?);
    }
    let n = decode_len(d)?;
    m.accounts.reserve(n.min(RESERVE_MAX));
    for _ in 0..n {
        let id = AccountId::decode(d)?;
        let mut account = AccountState { stream: stream_decode(d)?, ..AccountState::default() };
        for _ in 0..decode_len(d)? {
            let asset = Asset::decode(d)?;
            let balance = unpack(Packed::decode(d)?)?;
            account
                .holdings
                .credit(&asset, balance)
                .ok_or(DecodeError::Other("a balance in the write-model snapshot is past its limit"))?;
        }
        m.accounts.insert(id, account);
    }
    m.ledger_stream = stream_decode(d)?;
    let n = decode_len(d)?;
    m.withdrawals.reserve(n.min(RESERVE_MAX));
    for _ in 0..n {
        let id = EventId::decode(d)?;
        let w = WithdrawalState {
            seq: Seq::decode(d)?,
            account: AccountId::decode(d)?,
            asset: Asset::decode(d)?,
            amount: Amount::decode(d)?,
            usd_value: Option::<Usd>::decode(d)?,
            occurred_at: Timestamp::decode(d)?,
            marked_unauthorized: bool::decode(d)?,
            flagged: bool::decode(d)?,
            reversed_by: Option::<(Seq, Timestamp)>::decode(d)?
                .map(|(seq, occurred_at)| ReversalRef { seq, occurred_at }),
            reimbursed: unpack(Packed::decode(d)?)?,
        };
        m.withdrawals.insert(id, w);
    }
    for _ in 0..decode_len(d)? {
        m.suspensions
            .push(Suspension { suspended_at: Timestamp::decode(d)?, resumed_at: Option::<Timestamp>::decode(d)? });
    }
    for _ in 0..decode_len(d)? {
        let asset = Asset::decode(d)?;
        m.credited.insert(asset, unpack(Packed::decode(d)?)?);
    }
    m.withdrawn_usd = unpack(Packed::decode(d)?)?;
    Ok(m)
}

struct Decoded(WriteModel);

impl Decode<()> for Decoded {
    fn decode<D: Decoder<Context = ()>>(d: &mut D) -> Result<Self, DecodeError> {
        decode_model(d).map(Decoded)
    }
}

impl WriteModel {
    /// The model's snapshot bytes (see the module's documentation).
    pub fn snapshot(&self) -> Vec<u8> {
        bincode::encode_to_vec(Snapshot(self), config()).expect("encoding into memory cannot fail")
    }

    /// The model a snapshot holds, or why it cannot be read (then fold the log instead).
    pub fn from_snapshot(bytes: &[u8]) -> Result<WriteModel, String> {
        let (Decoded(model), used) = bincode::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} bytes follow the write-model snapshot", bytes.len() - used));
        }
        Ok(model)
    }
}
