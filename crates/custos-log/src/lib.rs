//! The log interface: what the ledger needs of a storage engine, and nothing of any engine.
//!
//! A [`Log`] stores opaque, already-encoded event records (the ledger encodes and hash-chains
//! them) under gap-free seqs, the typed index entries that point at them, the head, and named
//! metadata values (checkpoints, boundary records). Every append is atomic and durable before
//! it returns. Two engines implement it: sled (`custos-sled`, embedded, one process) and
//! PostgreSQL (`custos-postgres`, any number of processes). Nothing here names either.
//!
//! Writers take the head with [`Log::lock_head`]: while the lock is held no other writer (in
//! this process or, on a shared engine, in another) can append, so a writer that catches up on
//! what others appended before deciding decides against the latest state.

mod failpoint;

use std::ops::ControlFlow;

use custos_domain::{Envelope, Event, EventId, Hash, Seq, StreamId, Timestamp};

pub use failpoint::{failpoint, FAILPOINTS};

/// Why the log could not do what was asked. The four kinds a caller acts on differently.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Another writer appended first: the batch was written for a head that is no longer the
    /// head. Nothing was written; catch up and decide again.
    #[error("the log's head moved to seq {found} while a batch for seq {expected} was being written")]
    Conflict { expected: Seq, found: Seq },
    /// Another process holds the log (an embedded store has one writer process).
    #[error("{location} is held by {holder}")]
    Locked { location: String, holder: String },
    /// The disk, the file system, the network or the engine failed; what was being done is in
    /// `what`. The log is not known to be damaged, and the request may succeed later.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The stored data was written by a newer build, or by one this build cannot read.
    #[error("{location} has {what} version {found}; this build reads version {expected}")]
    Version { location: String, what: &'static str, found: u32, expected: u32 },
    /// The log cannot be written here (a read replica, or an engine configured unsafely).
    #[error("{0}")]
    Refused(String),
    /// Stored data breaks a rule of the log; `seq` names the event when it is known.
    #[error("corruption{}: {what}", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Corruption { seq: Option<Seq>, what: String },
}

impl LogError {
    pub fn corrupt(what: impl Into<String>) -> Self {
        LogError::Corruption { seq: None, what: what.into() }
    }
    pub fn corrupt_at(seq: Seq, what: impl Into<String>) -> Self {
        LogError::Corruption { seq: Some(seq), what: what.into() }
    }
    /// An IO error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LogError::Io { what: what.into(), source }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// The head of the log: the last seq, its hash (the log's digest), and its `recorded_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: Seq,
    pub hash: Hash,
    pub recorded_at: Timestamp,
}

impl Head {
    pub const EMPTY: Head = Head { seq: 0, hash: [0u8; 32], recorded_at: Timestamp::MIN };
}

/// What an index entry is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexKey {
    /// The event's id (idempotency).
    EventId(EventId),
    /// The event's stream (an account's history).
    Stream(StreamId),
    /// The event's `occurred_at` (valid-time queries).
    OccurredAt(Timestamp),
    /// A `WithdrawalFlagged` event, by the seq of the withdrawal it flags.
    FlagOf(Seq),
    /// The events a loss total can count, by the `occurred_at` that decides whether they count
    /// at a moment: a withdrawal marked unauthorized, a reversal, a reimbursement by their own,
    /// a flag by its withdrawal's (a flag counts whenever it is known, for a withdrawal that
    /// occurred by `as_of`).
    LossTime(Timestamp),
}

/// The kinds of index, for messages and for engines that keep one structure per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexKind {
    EventId,
    Stream,
    OccurredAt,
    Flag,
    LossTime,
}

impl IndexKind {
    pub const ALL: [IndexKind; 5] =
        [IndexKind::EventId, IndexKind::Stream, IndexKind::OccurredAt, IndexKind::Flag, IndexKind::LossTime];
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::EventId => "event id",
            IndexKind::Stream => "stream",
            IndexKind::OccurredAt => "occurred_at",
            IndexKind::Flag => "flag",
            IndexKind::LossTime => "loss time",
        }
    }
}

impl IndexKey {
    pub fn kind(&self) -> IndexKind {
        match self {
            IndexKey::EventId(_) => IndexKind::EventId,
            IndexKey::Stream(_) => IndexKind::Stream,
            IndexKey::OccurredAt(_) => IndexKind::OccurredAt,
            IndexKey::FlagOf(_) => IndexKind::Flag,
            IndexKey::LossTime(_) => IndexKind::LossTime,
        }
    }
}

/// One index entry: a key and the seq of the event it points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    pub key: IndexKey,
    pub seq: Seq,
}

/// The index entries of an envelope: the one definition of what the log indexes.
pub fn index_entries(env: &Envelope) -> Vec<IndexEntry> {
    let at = |key| IndexEntry { key, seq: env.seq };
    let mut out = vec![
        at(IndexKey::EventId(env.event_id.clone())),
        at(IndexKey::Stream(env.stream.clone())),
        at(IndexKey::OccurredAt(env.occurred_at)),
    ];
    if let Event::WithdrawalFlagged(f) = &env.event {
        out.push(at(IndexKey::FlagOf(f.withdrawal_seq)));
    }
    if let Some(t) = env.loss_time() {
        out.push(at(IndexKey::LossTime(t)));
    }
    out
}

/// The two indexes by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeIndex {
    OccurredAt,
    LossTime,
}

/// One atomic, durable append: records for `first_seq..first_seq + records.len()`, the index
/// entries that point at them, the new head, and metadata written in the same step.
#[derive(Debug)]
pub struct AppendBatch {
    pub first_seq: Seq,
    pub records: Vec<Vec<u8>>,
    pub index: Vec<IndexEntry>,
    pub head: Head,
    pub meta: Vec<(String, Vec<u8>)>,
}

/// What a durable append cost, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendStats {
    /// Writing the batch (to the engine's buffers, or over the wire).
    pub write_us: u64,
    /// Making it durable (flush and fsync, or COMMIT).
    pub flush_us: u64,
    pub fsync_us: u64,
}

/// A difference between a stored index and the one the log implies, found by
/// [`Log::check_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFinding {
    pub seq: Option<Seq>,
    pub what: String,
    /// Further findings of the same check, after this one, that a backend counted without
    /// listing (it lists a bounded number): the caller reports them as a count.
    pub more: u64,
}

/// The right to append, held by one writer at a time (see [`Log::lock_head`]).
pub trait HeadLock {
    /// The head as of taking the lock: the latest, including other writers' appends.
    fn head(&self) -> Head;
    /// Writes the batch atomically (it must start right after [`HeadLock::head`]) and returns
    /// once it is durable. On an error, the outcome is unknown only for an IO error.
    fn append(self: Box<Self>, batch: AppendBatch) -> Result<AppendStats>;
}

/// A log of events on one storage engine. Every method may be called from any thread.
pub trait Log: Send + Sync {
    /// Where the log lives, for messages ("the ledger at DIR", "the ledger in postgres://…").
    fn location(&self) -> String;

    /// The head this handle last saw (after its own appends, or a [`Log::latest_head`]).
    fn head(&self) -> Head;
    /// Whether other processes may append to this log (a shared engine): the ledger then
    /// follows their appends.
    fn shared_writers(&self) -> bool {
        false
    }
    /// The head as stored now (other processes may have appended), remembered as [`Log::head`].
    fn latest_head(&self) -> Result<Head>;
    /// Takes the right to append; waits while another writer holds it.
    fn lock_head(&self) -> Result<Box<dyn HeadLock + '_>>;

    /// The stored record of `seq`, if it exists.
    fn record(&self, seq: Seq) -> Result<Option<Vec<u8>>>;
    /// Calls `f(seq, record)` for every record from `from` on, in seq order, until it breaks.
    fn for_each_record(&self, from: Seq, f: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>) -> Result<()>;

    /// The seqs of the events of `stream`, ascending. May hold seqs of other streams (an engine
    /// may index by a hash): callers check the events they read.
    fn stream_seqs(&self, stream: &StreamId) -> Result<Vec<Seq>>;
    /// The seqs of the events with this id (at most one, plus hash collisions: check).
    fn event_id_seqs(&self, id: &EventId) -> Result<Vec<Seq>>;
    /// The seqs whose key in `index` is within `lo..=hi`, ascending, without repeats.
    fn time_seqs(&self, index: TimeIndex, lo: Timestamp, hi: Timestamp) -> Result<Vec<Seq>>;
    /// Every `(withdrawal seq, flag seq)` pair, by withdrawal.
    fn flags(&self) -> Result<Vec<(Seq, Seq)>>;
    /// Compares the stored indexes of seqs `1..=up_to` with `expected` (the entries the log's
    /// records imply); an engine that stores typed columns beside the records checks those
    /// against the records here too.
    fn check_index(&self, up_to: Seq, expected: Vec<IndexEntry>) -> Result<Vec<IndexFinding>>;

    /// A metadata value.
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Metadata names starting with `prefix`, in name order.
    fn list_meta(&self, prefix: &str) -> Result<Vec<String>>;
    /// Writes and removes metadata in one atomic step. Not necessarily durable until
    /// [`Log::sync`]: metadata written this way is derived data that can be rebuilt.
    fn write_meta(&self, put: Vec<(String, Vec<u8>)>, remove: Vec<String>) -> Result<()>;
    /// Removes every metadata value whose name starts with `prefix` (possibly in several
    /// steps: a crash midway leaves some, never a wrong value elsewhere).
    fn remove_meta_prefix(&self, prefix: &str) -> Result<()>;
    /// Makes everything written so far durable.
    fn sync(&self) -> Result<()>;

    /// Upkeep the engine needs now and then, run off the writer's path after appends (sled
    /// merges its index segments here).
    fn maintain(&self) -> Result<()>;
    /// After an append failed with an IO error: brings the handle back to a usable state (sled
    /// reopens its files once the disk has room; a network engine reconnects) and answers the
    /// head as stored. Fails while that cannot be done yet.
    fn recover(&self) -> Result<Head>;
    /// Messages for the operator the engine collected (repairs on open, and similar).
    fn take_notices(&self) -> Vec<String>;
    /// Damage the engine found and repaired from the records when this handle was opened (an
    /// index file missing or not the one written for it), one line each. Kept, not taken:
    /// `verify` reports each as a finding, since the store was not as written even though it
    /// answers right now. None by default.
    fn repairs_on_open(&self) -> Vec<String> {
        Vec::new()
    }
    /// Checks the indexes the engine keeps beside the records (up to the head) and rebuilds
    /// from the records any found damaged; answers what it rebuilt, one line each. Part of
    /// `rebuild`: indexes are derived data, as projections are. Nothing to do by default (an
    /// engine whose indexes its database maintains).
    fn repair_indexes(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
