//! Custos domain: the vocabulary of DESIGN.md as types, the events, the envelope that the log
//! stores, and the codec that turns envelopes into bytes and back.
//!
//! Nothing in this crate does IO. Every type that carries an invariant (an amount within its
//! asset's scale, an asset symbol of the right shape) checks it on construction and keeps its
//! fields private, so a value that exists is a value that is valid.

mod codec;
mod command;
mod event;
mod event_v1;
pub mod money;
mod types;

pub use codec::{chain_hash, decode_payload, encode_payload, CodecError, Envelope, GENESIS_HASH};
pub use command::{Command, CommandBody};
pub use event::{AuthFactor, Event, EventKind, Flagged, ReversalRef, SCHEMA_VERSION_CURRENT};
pub use types::{
    parse_decimal, shown, AccountId, Amount, Asset, AssetGroup, DomainError, EventId, Hash, Seq, StreamId, Timestamp,
    Usd,
};

/// The hash map of the hot paths (write model, projections, import): foldhash is seeded per
/// process like std's SipHash, so keys from outside cannot be chosen to collide, and hashes
/// the short keys the ledger uses (account ids, event ids, seqs) several times faster.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
