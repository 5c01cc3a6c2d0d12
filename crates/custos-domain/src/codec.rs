//! The envelope and its byte form.
//!
//! A stored record is `body || hash`, where `body` is the bincode 2 encoding of the envelope's
//! fields with the payload already encoded for its schema version, and
//! `hash = SHA-256(prev_hash || body)`. Payload versions are decoded forever: `decode_payload`
//! upcasts every older version to today's [`Event`].

use bincode::Encode;
use sha2::{Digest, Sha256};

use crate::event::{Event, SCHEMA_VERSION_CURRENT};
use crate::event_v1::EventV1;
use crate::types::{EventId, Hash, Seq, StreamId, Timestamp};

/// The hash the chain starts from (the link before seq 1).
pub const GENESIS_HASH: Hash = [0u8; 32];
const HASH_LEN: usize = 32;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("record is too short to hold an envelope ({0} bytes)")]
    Truncated(usize),
    #[error("envelope body does not decode: {0}")]
    Body(String),
    #[error("payload schema version {0} is unknown to this build")]
    UnknownSchemaVersion(u16),
    #[error("payload (schema version {version}) does not decode: {reason}")]
    Payload { version: u16, reason: String },
    #[error("stored stream or id is malformed: {0}")]
    Field(String),
    #[error("{0} trailing bytes after the envelope body")]
    Trailing(usize),
}

/// What the log stores for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub seq: Seq,
    pub stream: StreamId,
    /// 1 for the first event of the stream.
    pub stream_version: u64,
    pub event_id: EventId,
    /// Transaction time: when the ledger recorded the event. Non-decreasing in seq.
    pub recorded_at: Timestamp,
    /// Valid time: when the fact happened.
    pub occurred_at: Timestamp,
    /// The schema version the payload was stored with (the event itself is always current).
    pub schema_version: u16,
    pub event: Event,
    /// `SHA-256(prev_hash || body)`.
    pub hash: Hash,
}

/// An envelope's body as stored: every field but the hash, with the payload already encoded
/// for its schema version. Field order is the stored format. Borrowed both ways: sealing
/// encodes from the envelope's strings, decoding reads strings and payload in place.
#[derive(Encode, bincode::BorrowDecode)]
struct Body<'a> {
    seq: u64,
    stream: &'a str,
    stream_version: u64,
    event_id: &'a str,
    recorded_at: Timestamp,
    occurred_at: Timestamp,
    schema_version: u16,
    payload: &'a [u8],
}

/// Encodes a payload in the current schema version.
pub fn encode_payload(event: &Event) -> Vec<u8> {
    bincode::encode_to_vec(event, config()).expect("encoding to a Vec cannot fail")
}

/// Decodes a payload of any known schema version into today's event.
pub fn decode_payload(version: u16, bytes: &[u8]) -> Result<Event, CodecError> {
    fn whole<T: bincode::Decode<()>>(version: u16, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, used): (T, usize) = bincode::decode_from_slice(bytes, config())
            .map_err(|e| CodecError::Payload { version, reason: e.to_string() })?;
        if used != bytes.len() {
            let reason = format!("{} trailing bytes", bytes.len() - used);
            return Err(CodecError::Payload { version, reason });
        }
        Ok(value)
    }
    match version {
        1 => Ok(whole::<EventV1>(version, bytes)?.upcast()),
        2 => whole::<Event>(version, bytes),
        other => Err(CodecError::UnknownSchemaVersion(other)),
    }
}

/// The next link of the chain.
pub fn chain_hash(prev: &Hash, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

impl Envelope {
    /// Builds the envelope of a new event (current schema version), links it to `prev_hash`, and
    /// returns it with its stored record.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        seq: Seq,
        stream: StreamId,
        stream_version: u64,
        event_id: EventId,
        recorded_at: Timestamp,
        occurred_at: Timestamp,
        event: Event,
        prev_hash: &Hash,
    ) -> (Envelope, Vec<u8>) {
        let payload = encode_payload(&event);
        let body = Body {
            seq,
            stream: stream.as_str(),
            stream_version,
            event_id: event_id.as_str(),
            recorded_at,
            occurred_at,
            schema_version: SCHEMA_VERSION_CURRENT,
            payload: &payload,
        };
        // Sized for the whole record up front: the body is a few varints, the two ids, the
        // payload; the hash goes at the end without a reallocation.
        let mut record =
            Vec::with_capacity(48 + stream.as_str().len() + event_id.as_str().len() + payload.len() + HASH_LEN);
        bincode::encode_into_std_write(&body, &mut record, config()).expect("encoding to a Vec cannot fail");
        let hash = chain_hash(prev_hash, &record);
        record.extend_from_slice(&hash);
        let env = Envelope {
            seq,
            stream,
            stream_version,
            event_id,
            recorded_at,
            occurred_at,
            schema_version: SCHEMA_VERSION_CURRENT,
            event,
            hash,
        };
        (env, record)
    }

    /// Decodes a stored record. Does not check the hash link (see [`Envelope::link_ok`]).
    pub fn decode(record: &[u8]) -> Result<Envelope, CodecError> {
        if record.len() < HASH_LEN + 1 {
            return Err(CodecError::Truncated(record.len()));
        }
        let (body_bytes, hash_bytes) = record.split_at(record.len() - HASH_LEN);
        let (body, used): (Body<'_>, usize) =
            bincode::borrow_decode_from_slice(body_bytes, config()).map_err(|e| CodecError::Body(e.to_string()))?;
        if used != body_bytes.len() {
            return Err(CodecError::Trailing(body_bytes.len() - used));
        }
        let event = decode_payload(body.schema_version, body.payload)?;
        let stream = StreamId::parse(body.stream).map_err(|e| CodecError::Field(e.to_string()))?;
        let event_id = EventId::new(body.event_id).map_err(|e| CodecError::Field(e.to_string()))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(hash_bytes);
        Ok(Envelope {
            seq: body.seq,
            stream,
            stream_version: body.stream_version,
            event_id,
            recorded_at: body.recorded_at,
            occurred_at: body.occurred_at,
            schema_version: body.schema_version,
            event,
            hash,
        })
    }

    /// This envelope as a record of today's schema version, with its stored hash: what
    /// [`Envelope::decode`] reads back as the same envelope except `schema_version` (then the
    /// current one). For copies of events kept outside the log (the loss blocks beside the
    /// losses checkpoints), never for the log itself: the hash covers the body as it was
    /// sealed, which for an older schema version is not this one.
    pub fn encode_as_current(&self) -> Vec<u8> {
        let payload = encode_payload(&self.event);
        let body = Body {
            seq: self.seq,
            stream: self.stream.as_str(),
            stream_version: self.stream_version,
            event_id: self.event_id.as_str(),
            recorded_at: self.recorded_at,
            occurred_at: self.occurred_at,
            schema_version: SCHEMA_VERSION_CURRENT,
            payload: &payload,
        };
        let mut record = bincode::encode_to_vec(&body, config()).expect("encoding to a Vec cannot fail");
        record.extend_from_slice(&self.hash);
        record
    }

    /// The valid time at which this event can change a loss total, if it ever can: its own
    /// `occurred_at` for a withdrawal marked unauthorized, a reversal or a reimbursement; its
    /// withdrawal's `occurred_at` for a flag (a flag counts from when it was recorded, for
    /// every moment after its withdrawal). The loss-time index holds exactly these events
    /// under this time.
    pub fn loss_time(&self) -> Option<Timestamp> {
        match &self.event {
            Event::WithdrawalFlagged(f) => Some(f.withdrawal_occurred_at),
            Event::Withdrawn { unauthorized: true, .. } | Event::Reversed { .. } | Event::Reimbursed { .. } => {
                Some(self.occurred_at)
            }
            _ => None,
        }
    }

    /// Whether `record`'s stored hash is `SHA-256(prev_hash || body)`.
    pub fn link_ok(record: &[u8], prev_hash: &Hash) -> bool {
        if record.len() < HASH_LEN {
            return false;
        }
        let (body, hash) = record.split_at(record.len() - HASH_LEN);
        chain_hash(prev_hash, body)[..] == hash[..]
    }

    /// The stored hash of a record, without decoding it.
    pub fn record_hash(record: &[u8]) -> Option<Hash> {
        let start = record.len().checked_sub(HASH_LEN)?;
        record[start..].try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AccountId, Amount, Asset, Usd};

    #[test]
    fn records_round_trip_and_chain() {
        let eth = Asset::new("ETH").unwrap();
        let event = Event::Withdrawn {
            asset: eth,
            amount: Amount::parse("1.25", &eth).unwrap(),
            usd_value: Some(Usd::parse("3911.21").unwrap()),
            unauthorized: true,
            destination: Some("0xabc".into()),
            auth_factor: Some(crate::event::AuthFactor::Sms),
        };
        let t = Timestamp::parse_rfc3339("2022-01-17T20:00:00Z").unwrap();
        let (env, record) = Envelope::seal(
            7,
            StreamId::Account(AccountId::new("acct-1").unwrap()),
            3,
            EventId::new("w-1").unwrap(),
            t,
            t,
            event,
            &GENESIS_HASH,
        );
        assert_eq!(Envelope::decode(&record).unwrap(), env);
        assert!(Envelope::link_ok(&record, &GENESIS_HASH));
        assert!(!Envelope::link_ok(&record, &env.hash));
        let mut tampered = record.clone();
        tampered[3] ^= 1;
        assert!(!Envelope::link_ok(&tampered, &GENESIS_HASH));
    }

    #[test]
    fn version_1_payloads_are_upcast() {
        let eth = Asset::new("ETH").unwrap();
        let v1 = EventV1::Withdrawn {
            asset: eth,
            amount: Amount::parse("2", &eth).unwrap(),
            usd_value: None,
            unauthorized: false,
            destination: Some("0xdead".into()),
        };
        let bytes = bincode::encode_to_vec(&v1, config()).unwrap();
        let event = decode_payload(1, &bytes).unwrap();
        assert!(
            matches!(event, Event::Withdrawn { auth_factor: None, ref destination, .. } if destination.as_deref() == Some("0xdead"))
        );
        // The same bytes are not a valid version 2 payload (the new field is missing).
        assert!(decode_payload(2, &bytes).is_err());
    }

    #[test]
    fn unknown_schema_versions_are_errors_not_defaults() {
        assert_eq!(decode_payload(99, &[0]), Err(CodecError::UnknownSchemaVersion(99)));
    }
}
