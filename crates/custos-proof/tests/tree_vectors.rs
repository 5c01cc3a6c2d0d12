//! The Certificate Transparency test tree: eight leaves, their roots at every size, and known
//! inclusion and consistency paths, all copied from transparency-dev/merkle,
//! `proof/verify_test.go` (commit 02194e9afb6c1d95b5381350007963aa70fff472), the Go successor
//! of google/certificate-transparency-go's `merkle` tests. That file numbers leaves from 1 in
//! its inclusion vectors; here indexes count from 0.

use custos_proof::tree::{consistency_path, inclusion_path, leaf_hash, root_of, MemoryTree};
use custos_proof::verify::{verify_consistency, verify_inclusion};
use custos_proof::{Hash, ProofError};

const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

// The path hashes of those vectors, named here by the subtree they are the root of
// (`L1` = leaf 1, `N2_4` = leaves 2..4); the roots of sizes 1, 2 and 4 are ROOTS[0, 1, 3].
const L1: &str = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7";
const L4: &str = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b";
const L6: &str = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f";
const N2_4: &str = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e";
const N4_6: &str = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a";
const N4_8: &str = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4";
const N6_8: &str = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0";
const L0: &str = ROOTS[0];
const N0_2: &str = ROOTS[1];
const N0_4: &str = ROOTS[3];

/// (leaf index, tree size, path)
const INCLUSION: [(u64, u64, &[&str]); 5] =
    [(0, 1, &[]), (0, 8, &[L1, N2_4, N4_8]), (5, 8, &[L4, N6_8, N0_4]), (2, 3, &[N0_2]), (1, 5, &[L0, N2_4, L4])];

/// (first size, second size, path)
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (1, 8, &[L1, N2_4, N4_8]),
    (6, 8, &[N4_6, N6_8, N0_4]),
    (2, 5, &[N2_4, L4]),
    (6, 7, &[N4_6, L6, N0_4]),
];

fn hash(text: &str) -> Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn path(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|text| hash(text)).collect()
}

fn leaf_hashes() -> Vec<Hash> {
    LEAVES.iter().map(|leaf| leaf_hash(&hex::decode(leaf).unwrap())).collect()
}

fn test_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaf_hashes() {
        tree.push(leaf);
    }
    tree
}

#[test]
fn roots_of_every_size_match_the_known_roots() {
    let (leaves, tree) = (leaf_hashes(), test_tree());
    for (size, root) in (1..=8).zip(ROOTS) {
        assert_eq!(root_of(&leaves[..size]), hash(root), "root_of {size} leaves");
        assert_eq!(tree.root(size as u64).unwrap(), hash(root), "MemoryTree root of {size} leaves");
    }
    for (name, start, end) in
        [(L1, 1, 2), (L4, 4, 5), (L6, 6, 7), (N2_4, 2, 4), (N4_6, 4, 6), (N4_8, 4, 8), (N6_8, 6, 8)]
    {
        assert_eq!(root_of(&leaves[start..end]), hash(name), "leaves {start}..{end}");
    }
    assert_eq!(tree.root(0).unwrap(), hash("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(tree.root(9), Err(ProofError::SizeBeyondTree { size: 9, len: 8 }));
}

#[test]
fn inclusion_paths_match_the_known_paths_and_verify() {
    let (leaves, tree) = (leaf_hashes(), test_tree());
    for (index, size, known) in INCLUSION {
        let root = hash(ROOTS[size as usize - 1]);
        assert_eq!(inclusion_path(&tree, index, size).unwrap(), path(known), "leaf {index} of {size}");
        verify_inclusion(&leaves[index as usize], index, size, &path(known), &root).unwrap();
    }
}

#[test]
fn consistency_paths_match_the_known_paths_and_verify() {
    let tree = test_tree();
    for (first, second, known) in CONSISTENCY {
        let (first_root, second_root) = (hash(ROOTS[first as usize - 1]), hash(ROOTS[second as usize - 1]));
        assert_eq!(consistency_path(&tree, first, second).unwrap(), path(known), "{first} to {second}");
        verify_consistency(first, second, &first_root, &second_root, &path(known)).unwrap();
    }
}

#[test]
fn edge_cases_are_refused_as_the_rfc_says() {
    let (tree, root) = (test_tree(), hash(ROOTS[7]));
    let some = hash(ROOTS[0]);
    assert_eq!(inclusion_path(&tree, 8, 8), Err(ProofError::LeafIndexBeyondSize { index: 8, size: 8 }));
    assert_eq!(verify_inclusion(&some, 8, 8, &[], &root), Err(ProofError::LeafIndexBeyondSize { index: 8, size: 8 }));
    assert_eq!(verify_inclusion(&some, 0, 0, &[], &root), Err(ProofError::LeafIndexBeyondSize { index: 0, size: 0 }));
    assert_eq!(consistency_path(&tree, 0, 8), Err(ProofError::FirstSizeZero));
    assert_eq!(verify_consistency(0, 8, &some, &root, &[]), Err(ProofError::FirstSizeZero));
    assert_eq!(verify_consistency(0, 0, &some, &some, &[]), Err(ProofError::FirstSizeZero));
    assert_eq!(verify_consistency(2, 1, &some, &root, &[]), Err(ProofError::FirstBeyondSecond { first: 2, second: 1 }));
    assert_eq!(verify_consistency(8, 8, &root, &root, &[]), Ok(()));
    assert_eq!(verify_consistency(8, 8, &root, &root, &[some]), Err(ProofError::PathTooLong { len: 1 }));
    assert_eq!(verify_consistency(8, 8, &some, &root, &[]), Err(ProofError::SameSizeRootsDiffer { size: 8 }));
    assert_eq!(verify_consistency(1, 2, &some, &root, &[]), Err(ProofError::PathTooShort { len: 0 }));
    assert_eq!(consistency_path(&tree, 8, 8), Ok(vec![]));
}

/// The size is bound by the root, not by the path: leaf 0's path in the tree of 7 leaves
/// verifies against that root with a claimed size of 6, because both trees have the same
/// shape along leaf 0's path. Hence the rule in the `verify` docs: take size and root from one
/// verified checkpoint.
#[test]
fn the_size_is_bound_by_the_root_not_the_path() {
    let (leaves, tree) = (leaf_hashes(), test_tree());
    let path = inclusion_path(&tree, 0, 7).unwrap();
    let root7 = hash(ROOTS[6]);
    verify_inclusion(&leaves[0], 0, 6, &path, &root7).unwrap();
    let consistency = consistency_path(&tree, 6, 7).unwrap();
    verify_consistency(6, 8, &hash(ROOTS[5]), &root7, &consistency).unwrap();
}
