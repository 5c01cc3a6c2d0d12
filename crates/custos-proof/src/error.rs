//! Why a proof, a key or a note was refused: one enum for the whole crate, so a verifier reports
//! every failure the same way.

use std::fmt;

use crate::encoding::hex_encode;
use crate::Hash;

/// A proof that does not prove, input that does not parse, or an argument out of range. Each
/// message says what did not match, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index at or past the number of leaves.
    LeafIndexBeyondSize { index: u64, size: u64 },
    /// A consistency proof from the empty tree, which RFC 9162 does not define.
    FirstSizeZero,
    /// A consistency proof from a larger tree to a smaller one.
    FirstBeyondSecond { first: u64, second: u64 },
    /// More path hashes than the sizes call for.
    PathTooLong { len: usize },
    /// Fewer path hashes than the sizes call for.
    PathTooShort { len: usize },
    /// A hash computed from the proof differs from the one the verifier was given.
    HashMismatch { what: &'static str, computed: Hash, expected: Hash },
    /// Two tree heads of one size with different roots: the log forked.
    SameSizeRootsDiffer { size: u64 },
    /// A leaf range that is not a subtree of any RFC 9162 tree.
    UnalignedRange { start: u64, end: u64 },
    /// A perfect subtree the node store does not hold.
    MissingNode { level: u32, index: u64 },
    /// A tree size past the leaves a tree holds.
    SizeBeyondTree { size: u64, len: u64 },
    /// A total that does not fit in a u128.
    SumOverflow { asset_index: usize },
    /// Sum lists of different lengths.
    AssetCountMismatch { expected: usize, found: usize },
    /// A total computed from a liability proof differs from the root's.
    SumMismatch { asset_index: usize, computed: u128, expected: u128 },
    /// Text that is not valid hex or base64; `offset` is the byte where it goes wrong.
    InvalidEncoding { encoding: &'static str, offset: usize },
    /// A key name that is empty or has a space, a plus sign or a control character.
    InvalidKeyName { name: String },
    /// A checkpoint origin that is empty or has a control character.
    InvalidOrigin,
    /// A signer or verifier key string that does not parse.
    MalformedKey { reason: &'static str },
    /// A key string whose key id is not the id of its name and key.
    KeyIdMismatch { stated: u32, computed: u32 },
    /// A signed note that breaks the signed-note format; `line` counts from 1.
    MalformedNote { line: usize, reason: &'static str },
    /// A checkpoint body that breaks the tlog-checkpoint format; `line` counts from 1.
    MalformedCheckpoint { line: usize, reason: &'static str },
    /// More signature lines than `note::SIGNATURES_MAX`.
    TooManySignatures { max: usize },
    /// A note with no signature line by the verifier's key.
    NoSignatureByKey { name: String, id: u32 },
    /// A signature line by the verifier's key that does not verify.
    BadSignature { name: String, id: u32, line: usize },
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProofError::*;
        match self {
            LeafIndexBeyondSize { index, size } => write!(f, "leaf index {index} is not below the size {size}"),
            FirstSizeZero => write!(f, "a consistency proof needs a first tree size of at least 1, not 0"),
            FirstBeyondSecond { first, second } => {
                write!(f, "first tree size {first} is larger than second tree size {second}")
            }
            PathTooLong { len } => write!(f, "proof path of {len} hashes is longer than the sizes call for"),
            PathTooShort { len } => write!(f, "proof path of {len} hashes is shorter than the sizes call for"),
            HashMismatch { what, computed, expected } => write!(
                f,
                "computed {what} {} does not match the expected {}",
                hex_encode(computed),
                hex_encode(expected)
            ),
            SameSizeRootsDiffer { size } => write!(f, "two different roots for the same tree size {size}"),
            UnalignedRange { start, end } => write!(f, "leaves {start}..{end} are not a subtree of an RFC 9162 tree"),
            MissingNode { level, index } => write!(f, "no perfect subtree is stored at level {level} index {index}"),
            SizeBeyondTree { size, len } => write!(f, "tree size {size} is beyond the {len} leaves the tree holds"),
            SumOverflow { asset_index } => write!(f, "the total of asset {asset_index} overflows a u128"),
            AssetCountMismatch { expected, found } => {
                write!(f, "a sum node has {found} asset totals where {expected} were expected")
            }
            SumMismatch { asset_index, computed, expected } => {
                write!(f, "computed total {computed} of asset {asset_index} does not match the root's {expected}")
            }
            InvalidEncoding { encoding, offset } => write!(f, "invalid {encoding} at byte {offset}"),
            InvalidKeyName { name } => {
                write!(f, "key name {name:?} is empty or has a space, a plus sign or a control character")
            }
            InvalidOrigin => write!(f, "checkpoint origin is empty or has a control character"),
            MalformedKey { reason } => write!(f, "malformed key: {reason}"),
            KeyIdMismatch { stated, computed } => {
                write!(f, "key id {stated:08x} is not {computed:08x}, the id of the key's name and bytes")
            }
            MalformedNote { line, reason } => write!(f, "malformed note at line {line}: {reason}"),
            MalformedCheckpoint { line, reason } => write!(f, "malformed checkpoint at line {line}: {reason}"),
            TooManySignatures { max } => write!(f, "note has more than {max} signature lines"),
            NoSignatureByKey { name, id } => write!(f, "note has no signature by key {name}+{id:08x}"),
            BadSignature { name, id, line } => {
                write!(f, "signature at line {line} by key {name}+{id:08x} does not verify")
            }
        }
    }
}

impl std::error::Error for ProofError {}
