//! Liability proofs: every account's proof verifies against the root, and each kind of
//! tampering (a balance, a sibling's sum or hash, the index, the root's totals) is refused.

use custos_proof::sum::{build, empty_root, leaf, node, verify_liability, LiabilityProof, SumNode, SumTree};
use custos_proof::ProofError;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(32)
}

struct Account {
    salt: [u8; 32],
    name: String,
    units: Vec<u128>,
}

fn accounts(balances: &[Vec<u64>]) -> Vec<Account> {
    let salt = |i: usize| {
        let mut salt = [0u8; 32];
        salt[..8].copy_from_slice(&(i as u64).to_be_bytes());
        salt
    };
    let units = |row: &[u64]| row.iter().map(|&b| u128::from(b) << 56).collect();
    balances
        .iter()
        .enumerate()
        .map(|(i, row)| Account { salt: salt(i), name: format!("acct-{i:05}"), units: units(row) })
        .collect()
}

fn leaves(accounts: &[Account]) -> Vec<SumNode> {
    accounts.iter().map(|a| leaf(&a.salt, &a.name, &a.units)).collect()
}

fn check(account: &Account, proof: &LiabilityProof, root: &SumNode) -> Result<(), ProofError> {
    verify_liability(
        &account.salt,
        &account.name,
        &account.units,
        proof.leaf_index,
        proof.leaf_count,
        &proof.siblings,
        root,
    )
}

/// The reference total: every balance added up directly.
fn totals(accounts: &[Account], assets: usize) -> Vec<u128> {
    (0..assets).map(|i| accounts.iter().map(|a| a.units[i]).sum()).collect()
}

fn check_tampering(account: &Account, proof: &LiabilityProof, root: &SumNode) {
    let mut changed = Account { salt: account.salt, name: account.name.clone(), units: account.units.clone() };
    changed.units[0] += 1;
    assert!(matches!(check(&changed, proof, root), Err(ProofError::HashMismatch { .. })));
    for i in 0..proof.siblings.len() {
        let mut tampered = proof.clone();
        tampered.siblings[i].sums[0] += 1;
        assert!(matches!(check(account, &tampered, root), Err(ProofError::HashMismatch { .. })), "sum of {i}");
        let mut tampered = proof.clone();
        tampered.siblings[i].hash[31] ^= 1;
        assert!(matches!(check(account, &tampered, root), Err(ProofError::HashMismatch { .. })), "hash of {i}");
    }
    for index in [proof.leaf_index ^ 1, proof.leaf_index + 1, proof.leaf_index.wrapping_sub(1)] {
        let wrong = LiabilityProof { leaf_index: index, ..proof.clone() };
        assert!(check(account, &wrong, root).is_err(), "index {index} for {}", proof.leaf_index);
    }
    let mut changed_root = root.clone();
    changed_root.sums[0] ^= 1;
    let expected =
        Err(ProofError::SumMismatch { asset_index: 0, computed: root.sums[0], expected: changed_root.sums[0] });
    assert_eq!(check(account, proof, &changed_root), expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_proof_verifies_and_tampering_is_refused(
        assets in 1..4usize,
        balances in prop::collection::vec(prop::collection::vec(any::<u64>(), 3), 1..80),
    ) {
        let accounts = accounts(&balances.iter().map(|row| row[..assets].to_vec()).collect::<Vec<_>>());
        let (root, proofs) = build(assets, &leaves(&accounts)).unwrap();
        prop_assert_eq!(&root.sums, &totals(&accounts, assets));
        for (account, proof) in accounts.iter().zip(&proofs) {
            prop_assert_eq!(check(account, proof, &root), Ok(()));
        }
        for (account, proof) in accounts.iter().zip(&proofs).step_by(7) {
            check_tampering(account, proof, &root);
        }
    }
}

#[test]
fn the_encoding_is_the_documented_one() {
    let salt = [0xab; 32];
    let mut bytes = vec![0x10];
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1]);
    bytes.extend_from_slice(&7u128.to_be_bytes());
    let a = leaf(&salt, "ab", &[7]);
    assert_eq!(a, SumNode { hash: sha256(&bytes), sums: vec![7] });
    let b = leaf(&salt, "c", &[5]);
    let mut bytes = vec![0x11];
    for child in [&a, &b] {
        bytes.extend_from_slice(&child.hash);
        bytes.extend_from_slice(&child.sums[0].to_be_bytes());
    }
    assert_eq!(node(&a, &b), Ok(SumNode { hash: sha256(&bytes), sums: vec![12] }));
    assert_eq!(empty_root(2), SumNode { hash: sha256(&[0x12]), sums: vec![0, 0] });
    assert_eq!(build(2, &[]), Ok((empty_root(2), vec![])));
    // Three leaves: (a, b) then c, as RFC 9162 splits 3 at 2.
    let c = leaf(&salt, "d", &[1]);
    let (root, proofs) = build(1, &[a.clone(), b.clone(), c.clone()]).unwrap();
    assert_eq!(root, node(&node(&a, &b).unwrap(), &c).unwrap());
    assert_eq!(proofs[2], LiabilityProof { leaf_index: 2, leaf_count: 3, siblings: vec![node(&a, &b).unwrap()] });
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

#[test]
fn overflow_and_mismatched_assets_are_errors() {
    let salt = [1; 32];
    let big = leaf(&salt, "a", &[u128::MAX, 1]);
    let one = leaf(&salt, "b", &[0, 1]);
    assert_eq!(node(&big, &one), Ok(SumNode { hash: node(&big, &one).unwrap().hash, sums: vec![u128::MAX, 2] }));
    let more = leaf(&salt, "c", &[1, 0]);
    assert_eq!(node(&big, &more), Err(ProofError::SumOverflow { asset_index: 0 }));
    assert_eq!(
        build(2, &[big.clone(), one.clone(), more]).map(|_| ()),
        Err(ProofError::SumOverflow { asset_index: 0 })
    );
    assert_eq!(build(3, &[big, one]).map(|_| ()), Err(ProofError::AssetCountMismatch { expected: 3, found: 2 }));
    // A proof whose sibling would overflow the total is refused, not wrapped.
    let (root, mut proofs) = build(1, &[leaf(&salt, "a", &[5]), leaf(&salt, "b", &[6])]).unwrap();
    proofs[0].siblings[0].sums[0] = u128::MAX;
    let refused = verify_liability(&salt, "a", &[5], 0, 2, &proofs[0].siblings, &root);
    assert_eq!(refused, Err(ProofError::SumOverflow { asset_index: 0 }));
    let refused = verify_liability(&salt, "a", &[5], 2, 2, &proofs[1].siblings, &root);
    assert_eq!(refused, Err(ProofError::LeafIndexBeyondSize { index: 2, size: 2 }));
}

/// 100,000 accounts: the build and all proofs are O(n log n); a sample of proofs verifies.
#[test]
fn a_hundred_thousand_accounts_build_with_all_proofs() {
    let balances: Vec<Vec<u64>> = (0..100_000u64).map(|i| vec![i, i * 3 % 1000]).collect();
    let accounts = accounts(&balances);
    let (root, proofs) = build(2, &leaves(&accounts)).unwrap();
    assert_eq!(root.sums, totals(&accounts, 2));
    for i in (0..accounts.len()).step_by(997).chain([accounts.len() - 1]) {
        assert!(proofs[i].siblings.len() <= 17);
        assert_eq!(check(&accounts[i], &proofs[i], &root), Ok(()));
    }
}

/// The level-by-level tree (a node without a partner carried up) has the RFC 9162 shape of the
/// recursive `build`: the same root and the same proof for every leaf of every size to 300.
#[test]
fn the_level_tree_gives_the_recursive_trees_root_and_proofs() {
    for n in 0..=300usize {
        let rows: Vec<Vec<u64>> = (0..n).map(|i| vec![i as u64 % 7, (i as u64 * 31) % 11]).collect();
        let accounts = accounts(&rows);
        let (root, proofs) = build(2, &leaves(&accounts)).unwrap();
        let tree = SumTree::new(2, leaves(&accounts)).unwrap();
        assert_eq!(tree.root(), root, "root of {n}");
        assert_eq!(tree.leaf_count(), n as u64);
        for (i, want) in proofs.iter().enumerate() {
            assert_eq!(&tree.proof(i as u64), want, "proof {i} of {n}");
            check(&accounts[i], want, &root).unwrap();
        }
    }
}
