//! Proofs generated through `MemoryTree` for random trees of 1 to 2,000 leaves verify with a
//! verifier written here from RFC 9162's definitions (recursive, sharing no code with the
//! crate's bit-twiddling verifier) and with the crate's; tampered proofs are refused.
//!
//! A few dozen cases by default; `PROPTEST_CASES=1000` runs more.

use custos_proof::tree::{consistency_path, inclusion_path, leaf_hash, node_hash, root_of, MemoryTree};
use custos_proof::verify::{verify_consistency, verify_inclusion};
use custos_proof::Hash;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(32)
}

/// RFC 9162 2.1.1's k: the largest power of two strictly less than n.
fn k_of(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root that `path` (leaf side first) proves for leaf `m` of `n` leaves, reading the
/// RFC's `PATH` definition backwards: the last element is the sibling at the top split.
fn reference_inclusion_root(m: u64, n: u64, leaf: Hash, path: &[Hash]) -> Option<Hash> {
    if n == 1 {
        return path.is_empty().then_some(leaf);
    }
    let (top, below) = path.split_last()?;
    let k = k_of(n);
    if m < k {
        Some(node_hash(&reference_inclusion_root(m, k, leaf, below)?, top))
    } else {
        Some(node_hash(top, &reference_inclusion_root(m - k, n - k, leaf, below)?))
    }
}

fn reference_verify_inclusion(m: u64, n: u64, leaf: Hash, path: &[Hash], root: Hash) -> bool {
    m < n && reference_inclusion_root(m, n, leaf, path) == Some(root)
}

/// The (old, new) subtree roots that `path` proves under `SUBPROOF(m, D[n], b)`; `first_root`
/// stands for the whole first tree, which the RFC leaves out of the path when `b` holds.
fn reference_subproof(m: u64, n: u64, b: bool, path: &[Hash], first_root: Hash) -> Option<(Hash, Hash)> {
    if m == n {
        return match (b, path) {
            (true, []) => Some((first_root, first_root)),
            (false, [only]) => Some((*only, *only)),
            _ => None,
        };
    }
    let (top, below) = path.split_last()?;
    let k = k_of(n);
    if m <= k {
        let (old, new) = reference_subproof(m, k, b, below, first_root)?;
        Some((old, node_hash(&new, top)))
    } else {
        let (old, new) = reference_subproof(m - k, n - k, false, below, first_root)?;
        Some((node_hash(top, &old), node_hash(top, &new)))
    }
}

fn reference_verify_consistency(m: u64, n: u64, first: Hash, second: Hash, path: &[Hash]) -> bool {
    0 < m && m <= n && reference_subproof(m, n, true, path, first) == Some((first, second))
}

fn flip(hash: &Hash, bit: u64) -> Hash {
    let mut flipped = *hash;
    flipped[(bit / 8 % 32) as usize] ^= 1 << (bit % 8);
    flipped
}

struct Case {
    leaves: Vec<Hash>,
    tree: MemoryTree,
}

impl Case {
    fn new(size: u64, salt: u64) -> Case {
        let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&(salt ^ i).to_be_bytes())).collect();
        let mut tree = MemoryTree::new();
        for leaf in &leaves {
            let completed = tree.push(*leaf);
            assert_eq!(completed[0], (0, tree.len() - 1, *leaf));
            assert_eq!(completed.len() as u32, tree.len().trailing_zeros() + 1);
        }
        Case { leaves, tree }
    }

    fn check_inclusion(&self, m: u64, n: u64, root: Hash) {
        let path = inclusion_path(&self.tree, m, n).unwrap();
        let leaf = self.leaves[m as usize];
        assert!(reference_verify_inclusion(m, n, leaf, &path, root), "reference refused leaf {m} of {n}");
        verify_inclusion(&leaf, m, n, &path, &root).unwrap();
    }

    fn check_consistency(&self, m: u64, n: u64) {
        let (first, second) = (self.tree.root(m).unwrap(), self.tree.root(n).unwrap());
        let path = consistency_path(&self.tree, m, n).unwrap();
        assert!(reference_verify_consistency(m, n, first, second, &path), "reference refused {m} to {n}");
        verify_consistency(m, n, &first, &second, &path).unwrap();
    }

    /// Every bit flip of the leaf, the root or a path element is refused; a changed index is
    /// refused; a changed size is accepted only where the reference accepts it too (a tree of
    /// the same shape, see `verify`'s docs).
    fn check_inclusion_tampering(&self, m: u64, n: u64, bit: u64) {
        let (path, leaf, root) =
            (inclusion_path(&self.tree, m, n).unwrap(), self.leaves[m as usize], self.tree.root(n).unwrap());
        assert!(verify_inclusion(&flip(&leaf, bit), m, n, &path, &root).is_err());
        assert!(verify_inclusion(&leaf, m, n, &path, &flip(&root, bit)).is_err());
        for i in 0..path.len() {
            let mut tampered = path.clone();
            tampered[i] = flip(&tampered[i], bit);
            assert!(verify_inclusion(&leaf, m, n, &tampered, &root).is_err(), "flipped path[{i}]");
        }
        for shift in 0..12 {
            let other = m ^ (1 << shift);
            assert!(verify_inclusion(&leaf, other, n, &path, &root).is_err(), "index {other} for {m} of {n}");
            let size = n ^ (1 << shift);
            let accepted = verify_inclusion(&leaf, m, size, &path, &root).is_ok();
            assert_eq!(accepted, reference_verify_inclusion(m, size, leaf, &path, root), "size {size} for {n}");
        }
    }

    fn check_consistency_tampering(&self, m: u64, n: u64, bit: u64) {
        let (first, second) = (self.tree.root(m).unwrap(), self.tree.root(n).unwrap());
        let path = consistency_path(&self.tree, m, n).unwrap();
        assert!(verify_consistency(m, n, &flip(&first, bit), &second, &path).is_err());
        assert!(verify_consistency(m, n, &first, &flip(&second, bit), &path).is_err());
        for i in 0..path.len() {
            let mut tampered = path.clone();
            tampered[i] = flip(&tampered[i], bit);
            assert!(verify_consistency(m, n, &first, &second, &tampered).is_err(), "flipped path[{i}]");
        }
        for shift in 0..12 {
            let (m2, n2) = (m ^ (1 << shift), n ^ (1 << shift));
            let accepted = verify_consistency(m2, n, &first, &second, &path).is_ok();
            assert_eq!(accepted, reference_verify_consistency(m2, n, first, second, &path), "first {m2} for {m}");
            let accepted = verify_consistency(m, n2, &first, &second, &path).is_ok();
            assert_eq!(accepted, reference_verify_consistency(m, n2, first, second, &path), "second {n2} for {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn proofs_verify_and_tampering_is_refused(
        size in 1..=2000u64,
        salt: u64,
        picks in prop::collection::vec(any::<u64>(), 64),
    ) {
        let case = Case::new(size, salt);
        let root = case.tree.root(size).unwrap();
        prop_assert_eq!(root, root_of(&case.leaves));
        for m in 0..size {
            case.check_inclusion(m, size, root);
        }
        if size <= 64 {
            for n in 1..=size {
                for m in 1..=n {
                    case.check_consistency(m, n);
                }
            }
        } else {
            for pair in picks.chunks(2) {
                let n = 1 + pair[0] % size;
                case.check_consistency(1 + pair[1] % n, n);
            }
            case.check_consistency(1, size);
            case.check_consistency(size, size);
        }
        for (i, pick) in picks.iter().enumerate().take(8) {
            let (m, bit) = (pick % size, pick >> 32);
            case.check_inclusion_tampering(m, size, bit);
            let n = 1 + picks[i + 8] % size;
            case.check_consistency_tampering(1 + pick % n, n, bit);
        }
    }
}
