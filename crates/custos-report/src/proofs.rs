//! The Merkle tree's answers as JSON, one vocabulary for the CLI (`custos digest --format
//! json`, `custos prove`) and the server (`/v1/digest`): hashes in lowercase hexadecimal, the
//! leaf as the stored record's bytes in hexadecimal.

use custos_ledger::{ConsistencyProof, InclusionProof, TreeHead};
use custos_proof::Hash;
use serde_json::{json, Value};

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

pub fn tree_head_json(h: &TreeHead) -> Value {
    let chain = hex::encode(h.chain_hash);
    json!({
        "seq": h.tree_size,
        "chain_hash": chain,
        "tree_size": h.tree_size,
        "root_hash": hex::encode(h.root_hash),
        "digest": format!("{}:{chain}", h.tree_size),
    })
}

pub fn inclusion_json(p: &InclusionProof) -> Value {
    json!({
        "tree_size": p.tree_size,
        "leaf_index": p.leaf_index,
        "leaf": hex::encode(&p.leaf),
        "leaf_hash": hex::encode(p.leaf_hash),
        "audit_path": hexes(&p.audit_path),
        "root_hash": hex::encode(p.root_hash),
    })
}

pub fn consistency_json(p: &ConsistencyProof) -> Value {
    json!({
        "first_size": p.first_size,
        "second_size": p.second_size,
        "first_root": hex::encode(p.first_root),
        "second_root": hex::encode(p.second_root),
        "path": hexes(&p.path),
    })
}
