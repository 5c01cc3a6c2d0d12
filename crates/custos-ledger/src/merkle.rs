//! The log's Merkle tree (RFC 9162 section 2.1, through `custos-proof`): leaf `i` is the stored
//! record of seq `i + 1`, its hash `SHA-256(0x00 || record)`.
//!
//! What is stored, as metadata (so on every engine): the hash of every perfect subtree of 256
//! leaves or more (`merkle/LL/IIIIIIIIIIIIIIII`, level and index in hexadecimal: the leaves
//! `[index * 2^level, (index + 1) * 2^level)`), about one value per 128 events, and
//! `merkle/stored-to`, the seq up to which every such node is stored, written in the same
//! atomic metadata step as the nodes it covers (so a crash leaves a consistent prefix). Smaller
//! subtrees are recomputed from the records of their block of 256 (one or a few chunk reads),
//! so a proof costs O(log n) metadata reads and at most two blocks of records.
//!
//! The tree is derived data, kept off the writer's path (hashing on the writer's thread cost the
//! import 14%): `advance` hashes the records after `stored-to` and writes the nodes they
//! complete. The compactor thread runs it after commits; every proof, root and `verify` runs it
//! first, so they always see the tree up to the head. It keeps a [`Frontier`] between runs (the
//! partial block's leaf hashes and one stored subtree per set bit of `size / 256`), so an
//! advance hashes only what is new. A log written before the tree gets it the same way, from
//! seq 1. `verify` recomputes every stored node from the records.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;

use custos_domain::Seq;
use custos_log::Log;
use custos_proof::tree::{self, Hash, Nodes};
use custos_proof::ProofError;

use crate::ledger::{corrupt, LedgerError, Meta, Shared};

/// Subtrees of `2^STORED_LEVEL` leaves and up are stored; smaller ones are recomputed.
pub(crate) const STORED_LEVEL: u32 = 8;
const BLOCK: u64 = 1 << STORED_LEVEL;
/// The seq up to which every stored node is stored (8 bytes, big-endian; absent: 0).
const STORED_TO: &str = "merkle/stored-to";
/// Events hashed per metadata step of an advance (a long one, on a log written before the
/// tree, makes progress a crash keeps).
const ADVANCE_EVENTS_MAX: u64 = 1 << 16;

pub(crate) fn node_name(level: u32, index: u64) -> String {
    format!("merkle/{level:02}/{index:016x}")
}

impl From<ProofError> for LedgerError {
    fn from(e: ProofError) -> Self {
        LedgerError::BadRequest(e.to_string())
    }
}

/// What a writer keeps to extend the tree (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    size: u64,
    /// Leaf hashes of the partial block `[size - size % BLOCK, size)`.
    block: Vec<Hash>,
    /// The stored perfect subtrees covering `[0, size - size % BLOCK)`, largest (leftmost)
    /// first: `(level, hash)`.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next record as a leaf; pushes to `out` the stored nodes it completes.
    pub(crate) fn push(&mut self, record: &[u8], out: &mut Meta) {
        self.block.push(tree::leaf_hash(record));
        self.size += 1;
        if self.block.len() as u64 != BLOCK {
            return;
        }
        let mut hash = tree::root_of(&self.block);
        self.block.clear();
        let (mut level, mut index) = (STORED_LEVEL, (self.size >> STORED_LEVEL) - 1);
        out.push((node_name(level, index), hash.to_vec()));
        while let Some(&(l, left)) = self.peaks.last() {
            if l != level {
                break;
            }
            self.peaks.pop();
            hash = tree::node_hash(&left, &hash);
            (level, index) = (level + 1, index >> 1);
            out.push((node_name(level, index), hash.to_vec()));
        }
        self.peaks.push((level, hash));
    }

    /// The frontier of the log at `head`, from its stored nodes and the records of its partial
    /// block. Every node up to `head` must be stored (`merkle/stored-to` at least `head`).
    pub(crate) fn load(store: &dyn Log, head: Seq) -> Result<Frontier, LedgerError> {
        let nodes = StoredNodes::new(store, head);
        let full = head - head % BLOCK;
        let mut peaks = Vec::new();
        let mut at = 0;
        for level in (STORED_LEVEL..64).rev().filter(|l| (full >> l) & 1 == 1) {
            peaks.push((level, nodes.perfect(level, at >> level)?));
            at += 1 << level;
        }
        let block = if full < head { nodes.block(full >> STORED_LEVEL)? } else { Vec::new() };
        Ok(Frontier { size: head, block, peaks })
    }
}

fn stored_to(store: &dyn Log) -> Result<Seq, LedgerError> {
    Ok(match store.get_meta(STORED_TO)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| LedgerError::Corruption { seq: 0, what: format!("{STORED_TO} is not 8 bytes") })?,
        ),
        None => 0,
    })
}

fn stored_to_value(seq: Seq) -> (String, Vec<u8>) {
    (STORED_TO.to_string(), seq.to_be_bytes().to_vec())
}

/// Brings the stored tree up to the log's head: hashes the records after `stored-to` and
/// writes the nodes they complete with the new `stored-to`, in one metadata step per
/// `ADVANCE_EVENTS_MAX` events. Answers the seq the tree is stored to.
pub(crate) fn advance(shared: &Shared) -> Result<Seq, LedgerError> {
    let store = &*shared.log;
    let mut slot = shared.tree.lock().expect("tree lock");
    // `stored-to` first, then the head: another process may advance both in between, never
    // the tree past the log.
    let from = stored_to(store)?;
    let head = store.latest_head()?.seq;
    if from > head {
        return Err(corrupt(head, format!("the Merkle tree is stored to seq {from}, past the log's head")));
    }
    if from == head {
        return Ok(head);
    }
    match extend(store, &mut slot, from, head) {
        // A read-only replica stores nothing: it answers for the tree its primary stored.
        Err(LedgerError::Log(custos_log::LogError::Refused(_))) => Ok(from),
        other => other,
    }
}

/// Hashes the records `from + 1..=head` onto the frontier at `from` and stores what they
/// complete, with `stored-to`; keeps the frontier in `slot` when all of it is stored.
fn extend(store: &dyn Log, slot: &mut Option<Frontier>, from: Seq, head: Seq) -> Result<Seq, LedgerError> {
    // Kept only when this advance completes (a failed one loads it again).
    let mut frontier = match slot.take() {
        Some(f) if f.size() == from => f,
        _ => Frontier::load(store, from)?,
    };
    let (mut nodes, mut done, mut failed): (Meta, Seq, Option<LedgerError>) = (Vec::new(), from, None);
    store.for_each_record(from + 1, &mut |seq, record| {
        if seq > head {
            return ControlFlow::Break(());
        }
        if seq != done + 1 {
            failed = Some(corrupt(done + 1, "missing from the log (the Merkle tree needs it)".into()));
            return ControlFlow::Break(());
        }
        frontier.push(record, &mut nodes);
        done = seq;
        if (done - from).is_multiple_of(ADVANCE_EVENTS_MAX) {
            nodes.push(stored_to_value(done));
            if let Err(e) = store.write_meta(std::mem::take(&mut nodes), Vec::new()) {
                failed = Some(e.into());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if done != head {
        return Err(corrupt(done + 1, format!("the log's head says seq {head} but it is not stored")));
    }
    nodes.push(stored_to_value(done));
    store.write_meta(nodes, Vec::new())?;
    *slot = Some(frontier);
    Ok(done)
}

/// The stored nodes that differ from (or are missing beside) the records, with their right
/// values. Refused when the hash chain is broken: the records changed after the tree was
/// written, and a tree recomputed from them would hide that.
pub(crate) fn stale_nodes(store: &dyn Log, head: Seq) -> Result<Meta, LedgerError> {
    let mut wrong = Vec::new();
    for (name, value) in computed_nodes(store, head)? {
        if store.get_meta(&name)?.as_ref() != Some(&value) {
            wrong.push((name, value));
        }
    }
    Ok(wrong)
}

/// For `rebuild`: rewrites the stored nodes that differ from the records (or are missing);
/// answers how many. Refused over a broken hash chain (see `stale_nodes`).
pub(crate) fn repair_tree(shared: &Shared) -> Result<usize, LedgerError> {
    let store = &*shared.log;
    let mut slot = shared.tree.lock().expect("tree lock");
    let head = store.latest_head()?.seq;
    let mut wrong = stale_nodes(store, head)?;
    let n = wrong.len();
    wrong.push(stored_to_value(head));
    store.write_meta(wrong, Vec::new())?;
    store.sync()?;
    *slot = None;
    Ok(n)
}

/// Every stored node of the log up to `head`, computed from one scan of its records (a writer
/// may append meanwhile: only what is stored up to `head` is read).
fn computed_nodes(store: &dyn Log, head: Seq) -> Result<Meta, LedgerError> {
    let mut frontier = Frontier::default();
    let mut nodes: Meta = Vec::new();
    let (mut prev, mut broken) = (custos_domain::GENESIS_HASH, None);
    store.for_each_record(1, &mut |seq, record| {
        if seq > head {
            return ControlFlow::Break(());
        }
        if !custos_domain::Envelope::link_ok(record, &prev) {
            broken = Some(seq);
            return ControlFlow::Break(());
        }
        prev = custos_domain::Envelope::record_hash(record).unwrap_or_default();
        frontier.push(record, &mut nodes);
        ControlFlow::Continue(())
    })?;
    if let Some(seq) = broken {
        return Err(corrupt(
            seq,
            "the hash chain is broken here: the Merkle tree is not recomputed over records changed after it was written (`custos verify` says more; restore the log from a backup)".into(),
        ));
    }
    if frontier.size != head {
        return Err(corrupt(frontier.size + 1, format!("the log's head says seq {head} but it is not stored")));
    }
    Ok(nodes)
}

/// The tree's nodes as stored, for proofs and roots of the log up to `head`: stored subtrees
/// from metadata, smaller ones from the records of their block (cached per block).
pub(crate) struct StoredNodes<'a> {
    store: &'a dyn Log,
    head: Seq,
    blocks: RefCell<HashMap<u64, Vec<Hash>>>,
}

impl<'a> StoredNodes<'a> {
    pub(crate) fn new(store: &'a dyn Log, head: Seq) -> Self {
        StoredNodes { store, head, blocks: RefCell::new(HashMap::new()) }
    }

    /// The leaf hashes of block `b` (up to the head).
    fn block(&self, b: u64) -> Result<Vec<Hash>, LedgerError> {
        if let Some(hashes) = self.blocks.borrow().get(&b) {
            return Ok(hashes.clone());
        }
        let (first, last) = (b * BLOCK + 1, ((b + 1) * BLOCK).min(self.head));
        let mut hashes = Vec::with_capacity((last + 1).saturating_sub(first) as usize);
        // The records are checked as they are hashed: each against the chain (from the record
        // before the block), and a whole block against its stored node, so a proof or root is
        // never built on a record changed after the tree was written.
        let mut prev = custos_domain::GENESIS_HASH;
        let (mut expected, mut bad) = (first.saturating_sub(1).max(1), None);
        self.store.for_each_record(expected, &mut |seq, record| {
            if seq > last {
                return ControlFlow::Break(());
            }
            if seq != expected {
                bad = Some((expected, "missing from the log (the Merkle tree needs it)"));
                return ControlFlow::Break(());
            }
            if seq >= first {
                if !custos_domain::Envelope::link_ok(record, &prev) {
                    bad = Some((
                        seq,
                        "its record breaks the hash chain: no proof or root is built on it (`custos verify` says more)",
                    ));
                    return ControlFlow::Break(());
                }
                hashes.push(tree::leaf_hash(record));
            }
            prev = custos_domain::Envelope::record_hash(record).unwrap_or_default();
            expected += 1;
            ControlFlow::Continue(())
        })?;
        if let Some((seq, what)) =
            bad.or((expected <= last).then_some((expected, "missing from the log (the Merkle tree needs it)")))
        {
            return Err(corrupt(seq, what.into()));
        }
        if hashes.len() as u64 == BLOCK {
            let name = node_name(STORED_LEVEL, b);
            if self.store.get_meta(&name)?.is_some_and(|v| v != tree::root_of(&hashes)) {
                return Err(corrupt(
                    last,
                    format!("the stored Merkle tree node {name} is not the root of its records: no proof or root is built on it (`custos verify` says more)"),
                ));
            }
        }
        self.blocks.borrow_mut().insert(b, hashes.clone());
        Ok(hashes)
    }
}

impl Nodes for StoredNodes<'_> {
    type Error = LedgerError;

    fn perfect(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let end = (index + 1).checked_shl(level).unwrap_or(u64::MAX);
        if end > self.head {
            return Err(LedgerError::BadRequest(format!(
                "the subtree at level {level}, index {index} ends past the log's seq {}",
                self.head
            )));
        }
        if level >= STORED_LEVEL {
            let name = node_name(level, index);
            let value = self.store.get_meta(&name)?.ok_or_else(|| {
                corrupt(end, format!("the Merkle tree node {name} is missing (`custos verify` checks the tree)"))
            })?;
            return value.try_into().map_err(|_| corrupt(end, format!("the Merkle tree node {name} is not 32 bytes")));
        }
        let leaves = self.block((index << level) >> STORED_LEVEL)?;
        let start = ((index << level) % BLOCK) as usize;
        Ok(tree::root_of(&leaves[start..start + (1 << level)]))
    }
}

/// The root of the log's first `size` events (`size <= head`).
pub(crate) fn root(store: &dyn Log, head: Seq, size: u64) -> Result<Hash, LedgerError> {
    check_size(head, size)?;
    tree::subtree_hash(&StoredNodes::new(store, head), 0, size)
}

pub(crate) fn check_size(head: Seq, size: u64) -> Result<(), LedgerError> {
    if size > head {
        return Err(LedgerError::BadRequest(format!("tree size {size} is past the log's head (seq {head})")));
    }
    Ok(())
}

/// Compares every stored node with `computed` (the nodes a fold of the records completes, in
/// order), for `verify`: one finding per node that differs or is missing.
pub(crate) fn check_nodes(
    store: &dyn Log,
    computed: &Meta,
    chain_intact: bool,
    found: &mut dyn FnMut(Option<Seq>, String),
) {
    // With a broken hash chain the records changed after the tree was written: a rebuild
    // would hide that, so the advice is a backup.
    let remedy = if chain_intact {
        "with the hash chain intact, either the node was damaged or the log was rewritten with its chain recomputed: check the log against a digest or signed checkpoint taken earlier (`custos verify --digest`), then `custos rebuild --rewrite-tree` rewrites the tree from the records"
    } else {
        "the hash chain is broken too, so the records changed after the tree was written: restore from a backup"
    };
    for (name, want) in computed {
        let end = node_end(name);
        match store.get_meta(name) {
            Ok(Some(v)) if &v == want => {}
            Ok(Some(_)) => found(end, format!("the Merkle tree node {name} differs from the records (proofs and roots built on it are wrong; {remedy})")),
            Ok(None) => found(end, format!("the Merkle tree node {name} is missing ({remedy})")),
            Err(e) => found(end, format!("the Merkle tree node {name} cannot be read: {e}")),
        }
    }
}

/// The last seq a stored node's subtree covers, from its name.
pub(crate) fn node_end(name: &str) -> Option<Seq> {
    let rest = name.strip_prefix("merkle/")?;
    let (level, index) = rest.split_once('/')?;
    let (level, index) = (level.parse::<u32>().ok()?, u64::from_str_radix(index, 16).ok()?);
    (index + 1).checked_shl(level)
}

/// The log's tree head at a size: the chain's link and the tree's root there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The tree size, which is also the seq of its last event (0: the empty log).
    pub tree_size: u64,
    /// The hash chain's link at that seq (the digest `custos digest` prints).
    pub chain_hash: Hash,
    pub root_hash: Hash,
}

/// An RFC 9162 inclusion proof of one event: its stored record is the leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub tree_size: u64,
    pub leaf_index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Hash,
    pub audit_path: Vec<Hash>,
    pub root_hash: Hash,
}

/// An RFC 9162 consistency proof: the log of `second_size` events extends that of `first_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first_size: u64,
    pub second_size: u64,
    pub first_root: Hash,
    pub second_root: Hash,
    pub path: Vec<Hash>,
}

/// The stored record of `seq`, or corruption.
fn record(store: &dyn Log, seq: Seq) -> Result<Vec<u8>, LedgerError> {
    store.record(seq)?.ok_or_else(|| corrupt(seq, "missing from the log".into()))
}

pub(crate) fn tree_head(store: &dyn Log, head: Seq, size: u64) -> Result<TreeHead, LedgerError> {
    check_size(head, size)?;
    let chain_hash = match size {
        0 => custos_domain::GENESIS_HASH,
        s => custos_domain::Envelope::record_hash(&record(store, s)?)
            .ok_or_else(|| corrupt(s, "its record is shorter than a hash".into()))?,
    };
    Ok(TreeHead { tree_size: size, chain_hash, root_hash: root(store, head, size)? })
}

pub(crate) fn inclusion(store: &dyn Log, head: Seq, seq: Seq, size: u64) -> Result<InclusionProof, LedgerError> {
    check_size(head, size)?;
    if seq == 0 || seq > size {
        let held =
            if size == 0 { "the empty tree holds no event".to_string() } else { format!("it holds seqs 1 to {size}") };
        return Err(LedgerError::BadRequest(format!("seq {seq} is not in the tree of size {size}: {held}")));
    }
    let nodes = StoredNodes::new(store, head);
    let leaf = record(store, seq)?;
    let audit_path = tree::inclusion_path(&nodes, seq - 1, size)?;
    let root_hash = tree::subtree_hash(&nodes, 0, size)?;
    let leaf_hash = tree::leaf_hash(&leaf);
    // Checked before it is handed out: a record or node changed since the tree was written
    // gives a proof that does not verify, which is corruption, not an answer.
    custos_proof::verify::verify_inclusion(&leaf_hash, seq - 1, size, &audit_path, &root_hash).map_err(|e| {
        corrupt(seq, format!("the stored Merkle tree does not prove this record ({e}); `custos verify` says more"))
    })?;
    Ok(InclusionProof { tree_size: size, leaf_index: seq - 1, leaf_hash, leaf, audit_path, root_hash })
}

pub(crate) fn consistency(
    store: &dyn Log,
    head: Seq,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof, LedgerError> {
    check_size(head, second)?;
    let nodes = StoredNodes::new(store, head);
    let path = tree::consistency_path(&nodes, first, second)?;
    let (first_root, second_root) = (tree::subtree_hash(&nodes, 0, first)?, tree::subtree_hash(&nodes, 0, second)?);
    custos_proof::verify::verify_consistency(first, second, &first_root, &second_root, &path).map_err(|e| {
        corrupt(
            second,
            format!("the stored Merkle tree does not prove its own consistency ({e}); `custos verify` says more"),
        )
    })?;
    Ok(ConsistencyProof { first_size: first, second_size: second, first_root, second_root, path })
}

impl crate::Ledger {
    /// The tree head at `size` (default: the head): chain link and root. Builds the stored
    /// tree first on a log written before it existed.
    pub fn tree_head(&self, size: Option<u64>) -> Result<TreeHead, LedgerError> {
        let head = self.tree_ready()?;
        tree_head(self.store(), head, size.unwrap_or(head))
    }

    /// The inclusion proof of the event at `seq` in the tree of `size` events (default: the head).
    pub fn inclusion_proof(&self, seq: Seq, size: Option<u64>) -> Result<InclusionProof, LedgerError> {
        let head = self.tree_ready()?;
        inclusion(self.store(), head, seq, size.unwrap_or(head))
    }

    /// The consistency proof between the trees of `first` and `second` events.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<ConsistencyProof, LedgerError> {
        let head = self.tree_ready()?;
        consistency(self.store(), head, first, second)
    }

    /// Rewrites the stored tree nodes that differ from the records (never over a broken hash
    /// chain); answers how many, and the root at the head before and after.
    pub fn rewrite_tree(&self) -> Result<(usize, Hash, Hash), LedgerError> {
        let before = self.tree_head(None)?.root_hash;
        let n = repair_tree(&self.shared)?;
        Ok((n, before, self.tree_head(None)?.root_hash))
    }

    /// The stored tree nodes `rebuild --rewrite-tree` would rewrite.
    pub fn stale_tree_nodes(&self) -> Result<Vec<String>, LedgerError> {
        let head = self.tree_ready()?;
        Ok(stale_nodes(self.store(), head)?.into_iter().map(|(name, _)| name).collect())
    }

    /// The seq up to which the stored tree can be read: the head, once `advance` got there.
    fn tree_ready(&self) -> Result<Seq, LedgerError> {
        advance(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_proof::tree::MemoryTree;

    /// The frontier emits exactly the stored-level nodes a `MemoryTree` completes, and a
    /// frontier rebuilt from those nodes and the partial block continues the same way.
    #[test]
    fn the_frontier_emits_the_nodes_of_the_reference_tree() {
        let mut frontier = Frontier::default();
        let mut reference = MemoryTree::new();
        let mut emitted = Meta::new();
        let mut want = Meta::new();
        for i in 0..(BLOCK * 9 + 17) {
            let record = i.to_be_bytes();
            frontier.push(&record, &mut emitted);
            for (level, index, hash) in reference.push(tree::leaf_hash(&record)) {
                if level >= STORED_LEVEL {
                    want.push((node_name(level, index), hash.to_vec()));
                }
            }
        }
        assert_eq!(emitted, want);
        assert_eq!(frontier.peaks.iter().map(|p| p.0).collect::<Vec<_>>(), vec![11, 8]);
        assert_eq!(frontier.block.len(), 17);
    }
}
