//! Copying a ledger from one engine to another (`custos migrate`): the stored envelope bytes
//! exactly as they are, so the hash chain, and the digest an auditor holds, are the same on
//! both. Each batch is appended with its index entries and boundary records as the writer
//! would have appended it, so an interrupted copy leaves a valid prefix, and running the copy
//! again resumes after it.

use std::ops::ControlFlow;

use custos_domain::{Envelope, Seq, Timestamp};
use custos_log::{index_entries, AppendBatch, Head};

use crate::ledger::{boundary_meta, corrupt, stored_bounds, LogStats};
use crate::{Ledger, LedgerConfig, LedgerError};

/// Events per appended batch of a copy.
const COPY_BATCH_EVENTS: usize = 4096;

/// What a copy did.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    /// Events copied now (after `resumed_after`).
    pub copied: u64,
    /// The seq the target already held when the copy began (0: it was empty).
    pub resumed_after: Seq,
    /// The head of both logs once copied.
    pub head: Head,
}

impl Ledger {
    /// Copies this ledger's log into the ledger at `to` ([`Ledger::open_at`]'s locations): an
    /// empty one, or one holding a prefix of this log (an interrupted copy, resumed). Then
    /// writes the target's checkpoints and checks that both heads (seq and hash) agree.
    /// `progress(done, total)`.
    pub fn migrate_to(
        &self,
        to: &str,
        config: LedgerConfig,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<MigrateReport, LedgerError> {
        let source = self.refresh()?;
        let target = crate::ledger::open_log_at(to, &config.holder)?;
        let start = target.latest_head()?;
        if start.seq > source.seq {
            return Err(LedgerError::BadRequest(format!(
                "{} holds {} events, more than the {} of {}: it is another ledger",
                target.location(),
                start.seq,
                source.seq,
                self.location()
            )));
        }
        if start.seq > 0 {
            let here = self.envelope(start.seq)?.ok_or_else(|| corrupt(start.seq, "missing from the log".into()))?;
            if here.hash != start.hash {
                return Err(LedgerError::BadRequest(format!(
                    "{} holds {} events that are not this ledger's first {} (its hash at seq {} differs): it is another ledger",
                    target.location(),
                    start.seq,
                    start.seq,
                    start.seq
                )));
            }
        }
        let bounds = stored_bounds(&*target, start.seq)?;
        let mut stats = LogStats {
            max_occurred: bounds.max_occurred.unwrap_or(Timestamp::MIN),
            tail_min: if start.seq == 0 { Timestamp::MAX } else { bounds.tail_min },
            boundaries: bounds.boundaries.len() as u64,
            last_boundary: bounds.boundaries.last().map_or(0, |b| b.seq),
            count_known: bounds.damaged.is_none(),
            synced: true,
        };
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut events: Vec<Envelope> = Vec::new();
        let mut failure = None;
        let k = config.checkpoint_every;
        let mut flush = |records: &mut Vec<Vec<u8>>, events: &mut Vec<Envelope>, stats: &mut LogStats| {
            if events.is_empty() {
                return Ok(());
            }
            let (meta, _, after) = boundary_meta(k, stats, events);
            let last = events.last().expect("non-empty");
            let batch = AppendBatch {
                first_seq: events[0].seq,
                records: std::mem::take(records),
                index: events.iter().flat_map(index_entries).collect(),
                head: Head { seq: last.seq, hash: last.hash, recorded_at: last.recorded_at },
                meta,
            };
            let lock = target.lock_head()?;
            lock.append(batch)?;
            *stats = after;
            progress(last.seq, source.seq);
            events.clear();
            Ok::<(), LedgerError>(())
        };
        self.store().for_each_record(start.seq + 1, &mut |seq, record| {
            if seq > source.seq {
                return ControlFlow::Break(());
            }
            match Envelope::decode(record) {
                Ok(env) => {
                    records.push(record.to_vec());
                    events.push(env);
                }
                Err(e) => {
                    failure = Some(corrupt(seq, e.to_string()));
                    return ControlFlow::Break(());
                }
            }
            if events.len() >= COPY_BATCH_EVENTS {
                if let Err(e) = flush(&mut records, &mut events, &mut stats) {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        flush(&mut records, &mut events, &mut stats)?;
        drop(target);
        let copy = Ledger::open_at(to, config)?;
        copy.rebuild_all(&["balances", "losses"], &mut |_, _| {})?;
        let head = copy.head();
        if head != source {
            return Err(corrupt(
                head.seq.min(source.seq),
                format!(
                    "the copy ends at seq {} ({}) but this ledger at seq {} ({})",
                    head.seq,
                    hex::encode(head.hash),
                    source.seq,
                    hex::encode(source.hash)
                ),
            ));
        }
        Ok(MigrateReport { copied: source.seq - start.seq, resumed_after: start.seq, head })
    }
}
