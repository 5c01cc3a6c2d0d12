//! The RFC 9162 section 2.1 Merkle tree: hashes, the root, and proof generation from stored
//! perfect subtrees.
//!
//! - leaf hash: `SHA-256(0x00 || leaf bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - the empty tree's root: `SHA-256("")`
//! - shape: n > 1 leaves split into the first k and the other n - k, where k is the largest
//!   power of two strictly less than n (RFC 9162 2.1.1).
//!
//! A store keeps the hash of every *perfect* subtree (2^level leaves starting at a multiple of
//! 2^level) once it is complete, which never changes again; [`Nodes`] reads them. Every other
//! subtree the RFC's recursion needs splits into O(log n) perfect ones ([`subtree_hash`]), so
//! a proof costs O(log n) reads. [`MemoryTree`] is the in-memory store; `push` returns exactly
//! the nodes a leaf completes, which is what a persistent store writes.

use sha2::{Digest, Sha256};

use crate::ProofError;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    sha256(&[&[0x00], bytes])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The root of the tree with no leaves, `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The largest power of two strictly less than `n`: where RFC 9162 splits `n >= 2` leaves.
pub fn split_point(n: u64) -> u64 {
    assert!(n >= 2, "only a tree of two leaves or more splits, not {n}");
    1 << (n - 1).ilog2()
}

/// The root over `leaf_hashes`, computed as RFC 9162 2.1.1 defines it: the reference.
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaf_hashes.len() as u64) as usize;
            node_hash(&root_of(&leaf_hashes[..k]), &root_of(&leaf_hashes[k..]))
        }
    }
}

/// Where the hashes of perfect subtrees are kept (a store, or [`MemoryTree`]).
pub trait Nodes {
    /// The store's error; proof generation reports its own refusals through `From`.
    type Error: From<ProofError>;
    /// The hash of leaves `index * 2^level .. (index + 1) * 2^level`; level 0 is the leaf hashes.
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The RFC 9162 hash of leaves `start..end`, which must start at a multiple of the largest
/// power of two not above `end - start` (every subtree of an RFC 9162 tree does).
pub fn subtree_hash<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    if start >= end {
        return if start == end { Ok(empty_root()) } else { Err(ProofError::UnalignedRange { start, end }.into()) };
    }
    let len = end - start;
    let top = len.ilog2();
    if !start.is_multiple_of(1 << top) {
        return Err(ProofError::UnalignedRange { start, end }.into());
    }
    // The range is one perfect subtree per set bit of its length, largest first; the RFC's
    // split always takes the largest, so the hash folds them from the right.
    let mut perfect = Vec::new();
    let mut at = start;
    for level in (0..=top).rev().filter(|level| (len >> level) & 1 == 1) {
        perfect.push(nodes.perfect(level, at >> level)?);
        at += 1 << level;
    }
    let mut hashes = perfect.into_iter().rev();
    let last = hashes.next().expect("a non-empty range has a perfect subtree");
    Ok(hashes.fold(last, |right, left| node_hash(&left, &right)))
}

/// RFC 9162 2.1.3.1 `PATH(leaf_index, D[0:tree_size])`: the inclusion proof, leaf side first.
pub fn inclusion_path<N: Nodes>(nodes: &N, leaf_index: u64, tree_size: u64) -> Result<Vec<Hash>, N::Error> {
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexBeyondSize { index: leaf_index, size: tree_size }.into());
    }
    let mut path = Vec::new();
    path_within(nodes, leaf_index, 0, tree_size, &mut path)?;
    Ok(path)
}

/// `PATH(m, D[start:end])`, `m` counted from `start`. Only the first sibling to the right can
/// be imperfect; every subtree after a step left is perfect, so this reads O(log n) nodes.
fn path_within<N: Nodes>(nodes: &N, m: u64, start: u64, end: u64, path: &mut Vec<Hash>) -> Result<(), N::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path_within(nodes, m, start, start + k, path)?;
        path.push(subtree_hash(nodes, start + k, end)?);
    } else {
        path_within(nodes, m - k, start + k, end, path)?;
        path.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 2.1.4.1 `PROOF(first_size, D[0:second_size])`: the consistency proof. Equal sizes
/// give an empty proof; a first size of 0 is refused (there is nothing to prove).
pub fn consistency_path<N: Nodes>(nodes: &N, first_size: u64, second_size: u64) -> Result<Vec<Hash>, N::Error> {
    if first_size == 0 {
        return Err(ProofError::FirstSizeZero.into());
    }
    if first_size > second_size {
        return Err(ProofError::FirstBeyondSecond { first: first_size, second: second_size }.into());
    }
    let mut path = Vec::new();
    subproof(nodes, first_size, 0, second_size, true, &mut path)?;
    Ok(path)
}

/// `SUBPROOF(m, D[start:end], b)`; `b` is true while `D[start:start+m]` is the whole first
/// tree, whose root the verifier already has.
fn subproof<N: Nodes>(nodes: &N, m: u64, start: u64, end: u64, b: bool, path: &mut Vec<Hash>) -> Result<(), N::Error> {
    let n = end - start;
    if m == n {
        if !b {
            path.push(subtree_hash(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(nodes, m, start, start + k, b, path)?;
        path.push(subtree_hash(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, path)?;
        path.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// Every perfect subtree of a growing list of leaves, level by level: `levels[l][i]` is
/// `perfect(l, i)`.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash and returns the `(level, index, hash)` of every perfect subtree it
    /// completes, the leaf itself first: what a store persists for this leaf.
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<(u32, u64, Hash)> {
        let mut completed = Vec::new();
        let mut hash = leaf_hash;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            completed.push((level as u32, row.len() as u64 - 1, hash));
            // An even count means the new node closed a pair: its parent is complete too.
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
        }
        completed
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeBeyondTree { size, len: self.len() });
        }
        subtree_hash(self, 0, size)
    }
}

impl Nodes for MemoryTree {
    type Error = ProofError;

    fn perfect(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let row = self.levels.get(level as usize);
        let hash = row.and_then(|row| row.get(usize::try_from(index).ok()?));
        hash.copied().ok_or(ProofError::MissingNode { level, index })
    }
}
