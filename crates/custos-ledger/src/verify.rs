//! `verify`: recompute the hash chain, re-decide every event against the state before it (so
//! every invariant of DESIGN.md is checked exactly as at append time), recompute every index
//! and compare it with the stored one, and check the projection checkpoints against a refold.

use std::ops::ControlFlow;

use custos_domain::{Envelope, Hash, Seq, Timestamp, GENESIS_HASH};
use custos_log::{index_entries, Head, IndexEntry};
use custos_projection::{Balances, Losses, Projection};

use crate::ledger::{checkpoint_at, read_envelope, stored_bounds, Ledger, LedgerError, StoredBounds};
use custos_command::{command_of, Decision, WriteModel};

/// Stop listing after this many discrepancies (the first one is what matters).
const DISCREPANCIES_MAX: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub seq: Option<Seq>,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub events: u64,
    pub head: Head,
    pub discrepancies: Vec<Discrepancy>,
    /// The seq at which the `--digest` hash was found, if one was given and found.
    pub digest_found_at: Option<Seq>,
    /// Discrepancies found beyond the first `DISCREPANCIES_MAX`: counted, not listed.
    pub omitted: u64,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
    pub fn first_bad_seq(&self) -> Option<Seq> {
        self.discrepancies.iter().filter_map(|d| d.seq).min()
    }
}

/// The discrepancies found: the first `DISCREPANCIES_MAX` listed, the rest counted.
struct Findings(Vec<Discrepancy>, u64);

impl Findings {
    fn push(&mut self, seq: Option<Seq>, what: String) {
        if self.0.len() < DISCREPANCIES_MAX {
            self.0.push(Discrepancy { seq, what });
        } else {
            self.1 += 1;
        }
    }
}

impl Ledger {
    /// Verifies the whole log. `digest` is a hash taken earlier (with the seq it was the head
    /// of, when known): it must still be a link of the chain. `progress(done, total)`.
    pub fn verify(
        &self,
        digest: Option<(Option<Seq>, Hash)>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, LedgerError> {
        let store = self.store();
        // The head and the boundary records a query trusts, read together (the writer changes
        // both in one step, under this lock).
        let (head, bounds) = {
            let _commit = self.shared.commit_lock.lock().expect("commit lock");
            // On a shared log, other processes' writers too: the head lock, briefly. A read
            // replica takes no lock (it is written only by the primary's replay): its head as
            // it stands.
            let lock = match store.lock_head() {
                Ok(lock) => Some(lock),
                Err(custos_log::LogError::Refused(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let head = match &lock {
                Some(lock) => lock.head(),
                None => store.latest_head()?,
            };
            (head, stored_bounds(store, head.seq)?)
        };
        let mut derived = DerivedCheck::new(&bounds);
        let now = Timestamp::now();
        let mut found = Findings(Vec::new(), 0);
        let mut model = WriteModel::default();
        let mut semantics_ok = true;
        let mut prev_hash = GENESIS_HASH;
        let mut expected_seq: Seq = 1;
        let mut last: Option<(Seq, Hash, Timestamp)> = None;
        let mut indexes: Vec<IndexEntry> = Vec::new();
        // The empty log's digest (seq 0, the genesis hash) is where every chain starts.
        let mut digest_found_at = digest.filter(|(s, h)| s.unwrap_or(0) == 0 && *h == GENESIS_HASH).map(|_| 0);
        let mut balances = Balances::default();
        let mut losses = Losses::default();
        let checkpoints = self.checkpoint_seqs()?;
        // The events with a loss time since the last boundary, for its loss block.
        let (mut loss_since, mut loss_events) = (0, Vec::new());
        // The write-model snapshot a writer would start from, compared with this fold where it
        // was taken.
        let mut snapshot = match crate::ledger::stored_write_model(store, head.seq) {
            Ok(s) => s,
            Err(why) => {
                found.push(
                    None,
                    format!("the write-model snapshot is not usable: {why} (writers fold the log instead)"),
                );
                None
            }
        };
        // The Merkle tree's stored nodes, recomputed from the records.
        let (mut tree, mut tree_nodes) = (crate::merkle::Frontier::default(), Vec::new());
        // Stored up to the head first (it trails the writer), then checked node by node.
        let tree_built = crate::merkle::advance(&self.shared);
        let mut chain_intact = true;
        let mut io_error = None;
        // The log is checked as it stood at `head`: events appended meanwhile (a live ledger) are
        // neither read nor expected in the indexes.
        store.for_each_record(1, &mut |seq, record| {
            if seq > head.seq {
                return ControlFlow::Break(());
            }
            if seq != expected_seq {
                found.push(Some(expected_seq), format!("gap in the log: seq {expected_seq} is missing (next stored is {seq})"));
                semantics_ok = false;
            }
            expected_seq = seq + 1;
            tree.push(record, &mut tree_nodes);
            if !Envelope::link_ok(record, &prev_hash) {
                chain_intact = false;
                found.push(
                    Some(seq),
                    format!("hash chain broken at seq {seq}: its stored hash is not SHA-256 of the previous hash and its content (the event or one before it was altered)"),
                );
            }
            prev_hash = Envelope::record_hash(record).unwrap_or(GENESIS_HASH);
            if let Some((want_seq, want_hash)) = digest {
                if prev_hash == want_hash && want_seq.is_none_or(|s| s == seq) {
                    digest_found_at = Some(seq);
                }
            }
            let env = match Envelope::decode(record) {
                Ok(env) => env,
                Err(e) => {
                    found.push(Some(seq), format!("seq {seq} does not decode: {e}"));
                    semantics_ok = false;
                    return ControlFlow::Continue(());
                }
            };
            if env.seq != seq {
                found.push(Some(seq), format!("the record stored at seq {seq} says it is seq {}", env.seq));
                semantics_ok = false;
            }
            if env.recorded_at > now {
                found.push(Some(seq), format!("seq {seq} was recorded in the future ({})", env.recorded_at));
            }
            indexes.extend(index_entries(&env));
            last = Some((seq, env.hash, env.recorded_at));
            derived.event(&env, &mut found);
            if semantics_ok {
                match check_decision(self, &model, &env).and_then(|()| model.apply(&env).map_err(|e| e.what)) {
                    Ok(()) => {}
                    Err(what) => {
                        found.push(Some(seq), format!("seq {seq} ({} {}): {what}", env.event.kind().event_name(), env.event_id));
                        semantics_ok = false;
                    }
                }
            }
            if semantics_ok {
                if let Err(e) = balances.apply(&env, Timestamp::MAX).and_then(|()| losses.apply(&env, Timestamp::MAX)) {
                    found.push(Some(seq), format!("seq {seq} cannot be folded into the projections: {e}"));
                    semantics_ok = false;
                }
            }
            if semantics_ok && checkpoints.contains(&seq) {
                    match checkpoint_at::<Balances>(&self.shared, seq) {
                        Ok(b) if b.as_ref().is_some_and(|b| *b != balances) => {
                            found.push(Some(seq), format!("the balances checkpoint at seq {seq} differs from a refold of the log"));
                        }
                        Ok(_) => {}
                        Err(e) => found.push(Some(seq), format!("the balances checkpoint at seq {seq}: {e} (queries skip it)")),
                    }
                    match checkpoint_at::<Losses>(&self.shared, seq) {
                        Ok(l) if l.as_ref().is_some_and(|l| *l != losses) => {
                            found.push(Some(seq), format!("the losses checkpoint at seq {seq} differs from a refold of the log"));
                        }
                        Ok(_) => {}
                        Err(e) => found.push(Some(seq), format!("the losses checkpoint at seq {seq}: {e} (queries skip it)")),
                    }
            }
            if env.loss_time().is_some() {
                loss_events.push(env.clone());
            }
            if checkpoints.contains(&seq) {
                // What a query takes from the block: its events after the boundary before this
                // one (it uses a block only when it starts there or earlier).
                let undecodable = || {
                    format!("the loss block at seq {seq} does not decode (loss queries read those events from the log instead; `custos rebuild` rewrites it)")
                };
                match crate::ledger::loss_block(&self.shared, seq) {
                    Ok(Some(stored)) => match custos_projection::decode_loss_block(&stored) {
                        Some(block) if block.first <= loss_since && block.last == seq => {
                            let used: Option<Vec<(Seq, Timestamp, Envelope)>> = block
                                .entries
                                .iter()
                                .filter(|e| e.seq > loss_since)
                                .map(|e| e.envelope().ok().map(|env| (e.seq, e.loss_time, env)))
                                .collect();
                            let logged: Vec<(Seq, Timestamp, Envelope)> = loss_events
                                .iter()
                                .filter_map(|e| e.loss_time().map(|t| (e.seq, t, e.clone())))
                                .collect();
                            match used {
                                None => found.push(
                                    Some(seq),
                                    undecodable(),
                                ),
                                Some(used) if used != logged => found.push(
                                    Some(seq),
                                    format!("the loss block at seq {seq} differs from the log's events in ({loss_since}, {seq}] that loss totals count (loss queries read it; `custos rebuild` rewrites it)"),
                                ),
                                Some(_) => {}
                            }
                        }
                        // Not one a query uses (it covers another range).
                        Some(_) => {}
                        None => found.push(
                            Some(seq),
                            undecodable(),
                        ),
                    },
                    Ok(None) => {}
                    Err(e) => found.push(Some(seq), format!("the loss block at seq {seq}: {e}")),
                }
                loss_since = seq;
                loss_events.clear();
            }
            if semantics_ok
                && snapshot.as_ref().is_some_and(|m| m.head_seq == seq)
                && snapshot.take().is_some_and(|m| m != model)
            {
                found.push(Some(seq), format!("the write-model snapshot at seq {seq} differs from a refold of the log (writers would decide from it; `custos rebuild` drops it)"));
            }
            if seq % 16_384 == 0 {
                progress(seq, head.seq);
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| io_error.insert(e).to_string())
        .ok();
        if let Some(e) = io_error {
            return Err(e.into());
        }
        progress(head.seq, head.seq);
        let events = last.map_or(0, |l| l.0);
        match last {
            Some((seq, hash, recorded_at))
                if head.seq != seq || head.hash != hash || head.recorded_at != recorded_at =>
            {
                found.push(
                    Some(seq.min(head.seq)),
                    format!("the head record (seq {}) does not match the last stored event (seq {seq})", head.seq),
                );
            }
            None if head.seq != 0 => {
                found.push(Some(1), format!("the head says seq {} but the log is empty", head.seq))
            }
            _ => {}
        }
        derived.end(&mut found, last.map_or(0, |l| l.0));
        for f in store.check_index(head.seq, indexes)? {
            found.1 += f.more;
            found.push(f.seq, f.what);
        }
        match tree_built {
            Ok(stored_to) => {
                // Up to where the tree is stored (a read replica's may trail its log).
                tree_nodes.retain(|(name, _)| crate::merkle::node_end(name).is_some_and(|end| end <= stored_to));
                crate::merkle::check_nodes(store, &tree_nodes, chain_intact, &mut |seq, what| found.push(seq, what))
            }
            Err(e) => found.push(None, format!("the Merkle tree cannot be built: {e}")),
        }
        // Repaired when the store was opened, so clean now, but it was not as written.
        for what in store.repairs_on_open() {
            found.push(None, format!("found damaged and repaired when the ledger was opened: {what}"));
        }
        if let Some((seq, hash)) = digest {
            if digest_found_at.is_none() {
                // About the digest, not an event: no seq, so no event is blamed for it.
                let given = format!("{}{}", seq.map(|s| format!("{s}:")).unwrap_or_default(), hex::encode(hash));
                let what = match seq {
                    Some(s) if s > head.seq => format!(
                        "the log is shorter than digest {given}: it ends at seq {}, the digest is of seq {s} (events were removed since, or this is another ledger)",
                        head.seq
                    ),
                    Some(s) => format!(
                        "digest {given} does not match the chain's link at seq {s}: the log was rewritten at or before seq {s} after that digest was taken, or the digest is of another ledger"
                    ),
                    None => format!(
                        "digest {given} is not a link of the chain: the log was rewritten after that digest was taken, or the digest is of another ledger"
                    ),
                };
                found.push(None, what);
            }
        }
        let (mut discrepancies, omitted) = (found.0, found.1);
        discrepancies.sort_by_key(|d| d.seq.unwrap_or(Seq::MAX));
        Ok(VerifyReport { events, head, discrepancies, digest_found_at, omitted })
    }

    fn checkpoint_seqs(&self) -> Result<std::collections::HashSet<Seq>, LedgerError> {
        let boundaries = self.shared.boundaries.read().expect("boundaries lock");
        Ok(boundaries.iter().map(|b| b.seq).collect())
    }
}

/// Recomputes the records point-in-time queries trust besides the indexes: each boundary's
/// largest `occurred_at` so far and smallest since the boundary before it, the smallest after
/// the last boundary (`tail_min`) and the largest of all (`max_occurred`). A wrong one makes
/// queries skip events silently, so each is compared with the log.
struct DerivedCheck<'a> {
    bounds: &'a StoredBounds,
    next: usize,
    max: Timestamp,
    min: Timestamp,
}

impl<'a> DerivedCheck<'a> {
    fn new(bounds: &'a StoredBounds) -> Self {
        DerivedCheck { bounds, next: 0, max: Timestamp::MIN, min: Timestamp::MAX }
    }

    fn event(&mut self, env: &Envelope, found: &mut Findings) {
        self.max = self.max.max(env.occurred_at);
        self.min = self.min.min(env.occurred_at);
        let Some(b) = self.bounds.boundaries.get(self.next).filter(|b| b.seq == env.seq) else { return };
        if b.max_occurred != self.max || b.min_occurred != self.min {
            found.push(
                Some(b.seq),
                format!(
                    "the boundary record at seq {} says occurred_at spans up to {} (smallest since the boundary before it: {}); the log says {} and {}",
                    b.seq, b.max_occurred, b.min_occurred, self.max, self.min
                ),
            );
        }
        self.next += 1;
        self.min = Timestamp::MAX;
    }

    fn end(&self, found: &mut Findings, last_seq: Seq) {
        if let Some(why) = &self.bounds.damaged {
            // The records that remain are checked above; what is missing is said here (and
            // the smallest occurred_at after "the last boundary" means nothing then).
            found.push(
                None,
                format!("boundary records are missing: {why}; queries read the whole log until `custos rebuild` rewrites them"),
            );
            return;
        }
        if let Some(b) = self.bounds.boundaries.get(self.next) {
            found.push(Some(b.seq), format!("a boundary record names seq {}, which the log does not reach", b.seq));
        }
        if self.bounds.tail_min != self.min {
            found.push(
                Some(last_seq),
                format!(
                    "the record of the smallest occurred_at after the last boundary says {}; the log says {}",
                    self.bounds.tail_min, self.min
                ),
            );
        }
        if self.bounds.max_occurred.is_some_and(|m| last_seq > 0 && m != self.max) {
            found.push(
                Some(last_seq),
                format!(
                    "the record of the largest occurred_at says {:?}; the log says {}",
                    self.bounds.max_occurred, self.max
                ),
            );
        }
    }
}

/// Re-decides `env` against the state before it: the result must be exactly `env`.
fn check_decision(ledger: &Ledger, model: &WriteModel, env: &Envelope) -> Result<(), String> {
    let command = command_of(env);
    let existing = match model.id_candidate(&env.event_id) {
        Some(seq) => read_envelope(ledger.store(), seq).map_err(|e| e.to_string())?,
        None => None,
    };
    match model.decide(&command, existing.as_ref(), env.recorded_at) {
        Ok(Decision::Append(new)) => {
            let mut diffs = Vec::new();
            if new.stream != env.stream {
                diffs.push(format!("stream {} (expected {})", env.stream, new.stream));
            }
            if new.stream_version != env.stream_version {
                diffs.push(format!("stream version {} (expected {})", env.stream_version, new.stream_version));
            }
            if new.event != env.event {
                diffs.push(format!("payload {:?} (the ledger would record {:?})", env.event, new.event));
            }
            if diffs.is_empty() {
                Ok(())
            } else {
                Err(format!("differs from what the ledger would record: {}", diffs.join("; ")))
            }
        }
        Ok(Decision::Duplicate { seq }) => Err(format!("id {} was already used by seq {seq}", env.event_id)),
        Err(rejection) => Err(format!("breaks an invariant: {rejection}")),
    }
}
