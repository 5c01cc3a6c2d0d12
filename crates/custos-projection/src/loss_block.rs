//! Loss blocks: the events of one checkpoint interval that a loss total can count, kept beside
//! the losses checkpoint that ends the interval, so that a loss query folds them from one
//! metadata value instead of reading each from the log.
//!
//! A loss total at `(as_of, known_at)` starts from a checkpoint and adds the events recorded
//! after it whose loss time (`Envelope::loss_time`) is at or before `as_of`. Most of those are
//! flags recorded long after their withdrawal, scattered over the rest of the log: one read
//! each. A block holds every such event of `(first, last]` once, in seq order, with its seq and
//! loss time in front so that a query skips the ones it does not count without decoding them.
//!
//! Encoding (all integers big-endian where fixed-width): `LOSS_BLOCK_FORMAT` (u32), then, in
//! bincode's standard configuration, `(first: u64, last: u64, entries: Vec<(seq: u64,
//! loss_time: i64 nanoseconds, schema_version: u16, record: bytes)>)`, where `record` is
//! `Envelope::encode_as_current` and `schema_version` the one the event was stored with. A
//! block is a cache of the log like the checkpoints: `verify` compares it with the log, and a
//! query skips one that is missing or does not decode (it reads those events from the log).

use custos_domain::{CodecError, Envelope, Seq, Timestamp};

use crate::codec::config;

/// Bumped whenever the encoding changes; a block of another format is not used.
pub const LOSS_BLOCK_FORMAT: u32 = 1;

/// One event of a block, decoded only as far as its seq and loss time.
#[derive(Debug, Clone, Copy)]
pub struct LossBlockEntry<'a> {
    pub seq: Seq,
    pub loss_time: Timestamp,
    schema_version: u16,
    record: &'a [u8],
}

impl LossBlockEntry<'_> {
    /// The event, exactly as the log holds it.
    pub fn envelope(&self) -> Result<Envelope, CodecError> {
        let mut env = Envelope::decode(self.record)?;
        env.schema_version = self.schema_version;
        Ok(env)
    }
}

/// A decoded block: the events of `(first, last]` with a loss time.
#[derive(Debug, Clone)]
pub struct LossBlock<'a> {
    pub first: Seq,
    pub last: Seq,
    pub entries: Vec<LossBlockEntry<'a>>,
}

/// The block of `(first, last]`: `events` are every event of that range with a loss time, in
/// seq order (others are left out).
pub fn encode_loss_block<'e>(first: Seq, last: Seq, events: impl IntoIterator<Item = &'e Envelope>) -> Vec<u8> {
    let entries: Vec<(u64, i64, u16, Vec<u8>)> = events
        .into_iter()
        .filter_map(|e| {
            let t = e.loss_time()?;
            (e.seq > first && e.seq <= last).then(|| (e.seq, t.nanos(), e.schema_version, e.encode_as_current()))
        })
        .collect();
    let mut out = LOSS_BLOCK_FORMAT.to_be_bytes().to_vec();
    bincode::encode_into_std_write((first, last, entries), &mut out, config()).expect("encoding to a Vec cannot fail");
    out
}

/// Reads a block; `None` if it is of another format or does not decode (the entries' records
/// are decoded when asked for).
pub fn decode_loss_block(bytes: &[u8]) -> Option<LossBlock<'_>> {
    let (format, rest) = bytes.split_at_checked(4)?;
    if u32::from_be_bytes(format.try_into().ok()?) != LOSS_BLOCK_FORMAT {
        return None;
    }
    type Stored<'a> = (u64, u64, Vec<(u64, i64, u16, &'a [u8])>);
    let ((first, last, entries), used): (Stored<'_>, usize) = bincode::borrow_decode_from_slice(rest, config()).ok()?;
    if used != rest.len() || first > last {
        return None;
    }
    let entries: Vec<LossBlockEntry<'_>> = entries
        .into_iter()
        .map(|(seq, t, schema_version, record)| LossBlockEntry {
            seq,
            loss_time: Timestamp::from_nanos(t),
            schema_version,
            record,
        })
        .collect();
    // In seq order, inside the range: anything else is not a block this code wrote.
    let ordered = entries.windows(2).all(|w| w[0].seq < w[1].seq);
    let inside = entries.iter().all(|e| e.seq > first && e.seq <= last);
    (ordered && inside).then_some(LossBlock { first, last, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_domain::{AccountId, Amount, Asset, Event, EventId, Flagged, StreamId, Usd, GENESIS_HASH};

    fn env(seq: Seq, event: Event) -> Envelope {
        let account = StreamId::Account(AccountId::new("acct-1").unwrap());
        Envelope::seal(
            seq,
            account,
            seq,
            EventId::new(&format!("e{seq}")).unwrap(),
            Timestamp::from_nanos(1_000 + seq as i64),
            Timestamp::from_nanos(500 + seq as i64),
            event,
            &GENESIS_HASH,
        )
        .0
    }

    #[test]
    fn a_block_keeps_exactly_the_events_with_a_loss_time_and_gives_them_back_unchanged() {
        let eth = Asset::new("ETH").unwrap();
        let amount = Amount::new("1.5".parse().unwrap(), &eth).unwrap();
        let deposit = env(1, Event::Deposited { asset: eth, amount, usd_value: None });
        let marked = env(
            2,
            Event::Withdrawn {
                asset: eth,
                amount,
                usd_value: Some(Usd::new("10.00".parse().unwrap()).unwrap()),
                unauthorized: true,
                destination: None,
                auth_factor: None,
            },
        );
        let mut flag = env(
            3,
            Event::WithdrawalFlagged(Flagged {
                withdrawal: EventId::new("w0").unwrap(),
                withdrawal_seq: 1,
                withdrawal_occurred_at: Timestamp::from_nanos(7),
                asset: eth,
                amount,
                usd_value: None,
                reversed_by: None,
            }),
        );
        // A flag stored with an older schema version comes back with it.
        flag.schema_version = 1;
        let bytes = encode_loss_block(0, 4, [&deposit, &marked, &flag]);
        let block = decode_loss_block(&bytes).unwrap();
        assert_eq!((block.first, block.last), (0, 4));
        let seqs: Vec<(Seq, i64)> = block.entries.iter().map(|e| (e.seq, e.loss_time.nanos())).collect();
        assert_eq!(seqs, vec![(2, 502), (3, 7)]);
        assert_eq!(block.entries[0].envelope().unwrap(), marked);
        assert_eq!(block.entries[1].envelope().unwrap(), flag);
        // Events outside the range are left out.
        let bytes = encode_loss_block(2, 4, [&deposit, &marked, &flag]);
        assert_eq!(decode_loss_block(&bytes).unwrap().entries.len(), 1);
        // Another format, a truncation or trailing bytes: not a block.
        let mut other = bytes.clone();
        other[3] ^= 1;
        assert!(decode_loss_block(&other).is_none());
        assert!(decode_loss_block(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_loss_block(&longer).is_none());
    }
}
