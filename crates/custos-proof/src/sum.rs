//! A Merkle sum tree over account balances at one moment, for proofs of liabilities: each
//! account can check that its balances are counted in the published totals, and no account's
//! balance can be hidden or made negative to shrink them.
//!
//! A snapshot fixes an ordered list of assets; position `i` of every sum list is asset `i`,
//! counted in the asset's smallest unit (a balance of 1.5 in an asset with 8 decimal places is
//! 150000000). The root commits to positions, not symbols: the asset list (symbol, decimal
//! places, in order) must be published and signed with the root. Byte encodings, where `||`
//! concatenates, `u32` and `u128` are big-endian, and `n` is the number of assets:
//!
//! - leaf: `SHA-256(0x10 || salt (32 bytes) || u32 len(account) || account (UTF-8) || u32 n ||
//!   n x u128 units)`; its sums are its units. The salt (one per account per snapshot) keeps a
//!   sibling's hash from revealing which account and balance it holds.
//! - node: each sum is the sum of its children's, computed checked (an overflow is an error);
//!   `hash = SHA-256(0x11 || left.hash || n x u128 left.sums || right.hash || n x u128
//!   right.sums)`. Committing both children's sums, not only their total, is the fix to
//!   Maxwell's original construction: a prover cannot move value between the children.
//! - shape: RFC 9162's (n > 1 leaves split at the largest power of two below n), over the
//!   leaves in the order the ledger fixes (sorted accounts).
//! - empty snapshot: hash `SHA-256(0x12)`, every sum 0.
//!
//! A liability proof is the leaf index, the leaf count and the sibling nodes (hash and sums)
//! from the leaf up; which side each sibling is on follows from index and count exactly as in
//! an RFC 9162 inclusion proof, and the verifier recomputes every sum on the way.

use crate::tree::{sha256, split_point};
use crate::verify::root_from_path;
use crate::{Hash, ProofError};

const LEAF_PREFIX: u8 = 0x10;
const NODE_PREFIX: u8 = 0x11;
const EMPTY_PREFIX: u8 = 0x12;

/// A node of the sum tree: its hash and the total of each asset below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumNode {
    pub hash: Hash,
    pub sums: Vec<u128>,
}

/// The leaf of one account. Panics if the account or the asset list is longer than u32::MAX:
/// the ledger's ids and asset lists are far shorter, so that would be a bug.
pub fn leaf(salt: &[u8; 32], account: &str, units: &[u128]) -> SumNode {
    let mut bytes = Vec::with_capacity(73 + account.len() + 16 * units.len());
    bytes.push(LEAF_PREFIX);
    bytes.extend_from_slice(salt);
    bytes.extend_from_slice(&length_u32(account.len()));
    bytes.extend_from_slice(account.as_bytes());
    bytes.extend_from_slice(&length_u32(units.len()));
    for unit in units {
        bytes.extend_from_slice(&unit.to_be_bytes());
    }
    SumNode { hash: sha256(&[&bytes]), sums: units.to_vec() }
}

/// The parent of `left` and `right`; refused if they differ in asset count or a total overflows.
pub fn node(left: &SumNode, right: &SumNode) -> Result<SumNode, ProofError> {
    if left.sums.len() != right.sums.len() {
        return Err(ProofError::AssetCountMismatch { expected: left.sums.len(), found: right.sums.len() });
    }
    let sums = (left.sums.iter().zip(&right.sums).enumerate())
        .map(|(asset_index, (l, r))| l.checked_add(*r).ok_or(ProofError::SumOverflow { asset_index }))
        .collect::<Result<Vec<u128>, _>>()?;
    let mut bytes = Vec::with_capacity(65 + 32 * sums.len());
    bytes.push(NODE_PREFIX);
    for child in [left, right] {
        bytes.extend_from_slice(&child.hash);
        for sum in &child.sums {
            bytes.extend_from_slice(&sum.to_be_bytes());
        }
    }
    Ok(SumNode { hash: sha256(&[&bytes]), sums })
}

/// The root of a snapshot with no accounts.
pub fn empty_root(asset_count: usize) -> SumNode {
    SumNode { hash: sha256(&[&[EMPTY_PREFIX]]), sums: vec![0; asset_count] }
}

fn length_u32(len: usize) -> [u8; 4] {
    u32::try_from(len).expect("a length that fits in a u32").to_be_bytes()
}

/// What an account is given to check its balances against the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityProof {
    pub leaf_index: u64,
    pub leaf_count: u64,
    /// The sibling of each node on the way up, the leaf's sibling first.
    pub siblings: Vec<SumNode>,
}

/// The root over `leaves` (in the snapshot's account order, each with `asset_count` sums) and
/// every leaf's proof, in leaf order. Each node is computed once and handed to the proofs of
/// the leaves below its sibling: O(n log n) in all.
pub fn build(asset_count: usize, leaves: &[SumNode]) -> Result<(SumNode, Vec<LiabilityProof>), ProofError> {
    if let Some(leaf) = leaves.iter().find(|leaf| leaf.sums.len() != asset_count) {
        return Err(ProofError::AssetCountMismatch { expected: asset_count, found: leaf.sums.len() });
    }
    let mut siblings = vec![Vec::new(); leaves.len()];
    let root = if leaves.is_empty() { empty_root(asset_count) } else { build_within(leaves, &mut siblings)? };
    let leaf_count = leaves.len() as u64;
    let proofs = (0..).zip(siblings).map(|(leaf_index, siblings)| LiabilityProof { leaf_index, leaf_count, siblings });
    Ok((root, proofs.collect()))
}

/// The root over `leaves` (not empty); appends to `siblings[i]` the siblings of leaf i's path.
fn build_within(leaves: &[SumNode], siblings: &mut [Vec<SumNode>]) -> Result<SumNode, ProofError> {
    if let [leaf] = leaves {
        return Ok(leaf.clone());
    }
    let k = split_point(leaves.len() as u64) as usize;
    let (left_siblings, right_siblings) = siblings.split_at_mut(k);
    let left = build_within(&leaves[..k], left_siblings)?;
    let right = build_within(&leaves[k..], right_siblings)?;
    left_siblings.iter_mut().for_each(|path| path.push(right.clone()));
    right_siblings.iter_mut().for_each(|path| path.push(left.clone()));
    node(&left, &right)
}

/// Every node of a sum tree, level by level (level 0: the leaves), for snapshots too large to
/// hold every proof at once: a proof is read off the levels when asked. Nodes pair up within
/// a level and a last node without a partner is carried up unchanged, which is exactly the
/// RFC 9162 shape [`build`] computes recursively (a test checks they agree).
#[derive(Debug, Clone)]
pub struct SumTree {
    levels: Vec<Vec<SumNode>>,
    asset_count: usize,
}

impl SumTree {
    /// The tree over `leaves` (each with `asset_count` sums); O(n) nodes.
    pub fn new(asset_count: usize, leaves: Vec<SumNode>) -> Result<Self, ProofError> {
        if let Some(leaf) = leaves.iter().find(|leaf| leaf.sums.len() != asset_count) {
            return Err(ProofError::AssetCountMismatch { expected: asset_count, found: leaf.sums.len() });
        }
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("a level");
            let mut up = Vec::with_capacity(below.len().div_ceil(2));
            for pair in below.chunks(2) {
                up.push(match pair {
                    [left, right] => node(left, right)?,
                    [carried] => carried.clone(),
                    _ => unreachable!("chunks of two"),
                });
            }
            levels.push(up);
        }
        Ok(Self { levels, asset_count })
    }

    pub fn leaf_count(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root (the empty snapshot's root when there are no leaves).
    pub fn root(&self) -> SumNode {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) => root.clone(),
            None => empty_root(self.asset_count),
        }
    }

    /// The proof of leaf `leaf_index` (`< leaf_count`): its siblings from the bottom up.
    pub fn proof(&self, leaf_index: u64) -> LiabilityProof {
        let mut siblings = Vec::new();
        let mut i = usize::try_from(leaf_index).expect("a leaf index fits in memory");
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                siblings.push(sibling.clone());
            }
            i /= 2;
        }
        LiabilityProof { leaf_index, leaf_count: self.leaf_count(), siblings }
    }
}

/// Checks that the account's leaf, with these units, is counted in `root`: recomputes every
/// node from the leaf up (checked sums) and compares the hash and every total with the root.
pub fn verify_liability(
    salt: &[u8; 32],
    account: &str,
    units: &[u128],
    leaf_index: u64,
    leaf_count: u64,
    siblings: &[SumNode],
    root: &SumNode,
) -> Result<(), ProofError> {
    if units.len() != root.sums.len() {
        return Err(ProofError::AssetCountMismatch { expected: root.sums.len(), found: units.len() });
    }
    let computed = root_from_path(leaf(salt, account, units), leaf_index, leaf_count, siblings, node)?;
    if computed.hash != root.hash {
        return Err(ProofError::HashMismatch { what: "liability root", computed: computed.hash, expected: root.hash });
    }
    let mut sums = computed.sums.iter().zip(&root.sums).enumerate();
    match sums.find(|(_, (computed, expected))| computed != expected) {
        Some((asset_index, (&computed, &expected))) => Err(ProofError::SumMismatch { asset_index, computed, expected }),
        None => Ok(()),
    }
}
