//! Verification of RFC 9162 inclusion (2.1.3.2) and consistency (2.1.4.2) proofs, step by step
//! as the RFC words them; `fn` and `sn` are the RFC's names (`f_n` and `s_n` here).
//!
//! A proof binds a root to a *shape* of tree, not to a tree size: sizes that give the same
//! shape (an inclusion proof of leaf 0 in trees of 6 and of 7 leaves) accept the same path.
//! The size and the root must therefore come together from one verified checkpoint
//! ([`crate::note::open`]), never the size from one place and the root from another.

use crate::tree::node_hash;
use crate::{Hash, ProofError};

/// Checks that `leaf_hash` is leaf `leaf_index` of the tree of `tree_size` leaves with `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_path(*leaf_hash, leaf_index, tree_size, path, |l, r| Ok(node_hash(l, r)))?;
    same_hash("root", &computed, root)
}

/// RFC 9162 2.1.3.2 steps 1 to 5 but the final comparison, over any node type: the sum tree
/// ([`crate::sum`]) walks its paths with this too. `combine(left, right)` makes a parent.
pub(crate) fn root_from_path<T>(
    leaf: T,
    leaf_index: u64,
    tree_size: u64,
    path: &[T],
    mut combine: impl FnMut(&T, &T) -> Result<T, ProofError>,
) -> Result<T, ProofError> {
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexBeyondSize { index: leaf_index, size: tree_size });
    }
    let (mut f_n, mut s_n) = (leaf_index, tree_size - 1);
    let mut r = leaf;
    for p in path {
        if s_n == 0 {
            return Err(ProofError::PathTooLong { len: path.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = combine(p, &r)?;
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = combine(&r, p)?;
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::PathTooShort { len: path.len() });
    }
    Ok(r)
}

/// Checks that the tree of `second_size` leaves with `second_root` extends the tree of
/// `first_size` leaves with `first_root`. Equal sizes need an empty path and equal roots; a
/// first size of 0 is refused, as RFC 9162 defines no proof from the empty tree.
pub fn verify_consistency(
    first_size: u64,
    second_size: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if first_size == 0 {
        return Err(ProofError::FirstSizeZero);
    }
    if first_size > second_size {
        return Err(ProofError::FirstBeyondSecond { first: first_size, second: second_size });
    }
    if first_size == second_size {
        if !path.is_empty() {
            return Err(ProofError::PathTooLong { len: path.len() });
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::SameSizeRootsDiffer { size: first_size })
        };
    }
    // 1. An empty path fails.
    if path.is_empty() {
        return Err(ProofError::PathTooShort { len: 0 });
    }
    // 2. A first tree that is perfect is the path's implicit first element.
    let implicit = first_size.is_power_of_two().then_some(first_root);
    let mut path_items = implicit.into_iter().chain(path);
    // 3. and 4.
    let (mut f_n, mut s_n) = (first_size - 1, second_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // 5.
    let first = path_items.next().expect("the path is not empty");
    let (mut fr, mut sr) = (*first, *first);
    // 6.
    for c in path_items {
        if s_n == 0 {
            return Err(ProofError::PathTooLong { len: path.len() });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // 7.
    if s_n != 0 {
        return Err(ProofError::PathTooShort { len: path.len() });
    }
    same_hash("first root", &fr, first_root)?;
    same_hash("second root", &sr, second_root)
}

fn same_hash(what: &'static str, computed: &Hash, expected: &Hash) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::HashMismatch { what, computed: *computed, expected: *expected })
    }
}
