//! Proofs that an auditor checks without trusting the ledger, in formats other tools already read.
//!
//! - [`tree`]: the RFC 9162 (Certificate Transparency v2) Merkle tree over the event log: leaf
//!   and node hashes, the root, and inclusion and consistency proofs generated from stored
//!   perfect subtrees ([`tree::Nodes`]).
//! - [`verify`]: the RFC 9162 verification algorithms for those proofs, kept apart and short.
//! - [`note`]: signed tree heads as C2SP checkpoints in C2SP signed notes (Ed25519), readable by
//!   Go's `golang.org/x/mod/sumdb/note` and the transparency-dev tools.
//! - [`sum`]: a Merkle sum tree over account balances, for proofs of liabilities.
//! - [`encoding`]: the hex and base64 those formats need.
//!
//! The crate does no IO and keeps no state between calls: it takes bytes and returns bytes. It
//! depends on `sha2` and `ed25519-dalek` only, so that it can be read whole.

pub mod encoding;
mod error;
pub mod note;
pub mod sum;
pub mod tree;
pub mod verify;

pub use error::ProofError;
pub use tree::Hash;
