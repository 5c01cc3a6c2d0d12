//! The ledger handle: the store, the group-commit writer, and the projections at the head.
//!
//! Writes go through one writer thread. Callers on any task send commands through a channel;
//! the writer drains whatever is queued (up to `BATCH_EVENTS_MAX` commands), decides each in
//! order against the write model, seals the accepted events into one hash-chained batch, makes
//! it durable with a single flush + fsync, and answers every caller: a command answered
//! `Appended` is on disk. The writer then hands the batch to the projector thread, which folds
//! it into the projections at the head and writes their checkpoints (derived data, so it need
//! not delay an acknowledgement); a query at the head waits for the projector to reach it.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use custos_domain::{Command, Envelope, EventId, Hash, Seq, Timestamp, GENESIS_HASH};
use custos_log::{failpoint, index_entries, AppendBatch, Head, Log, LogError};
use custos_projection::{Balances, FoldError, Losses, Projection};
use tokio::sync::{mpsc, oneshot};

use custos_command::{Decision, Rejection, WriteModel};

/// How often a ledger on a shared log looks for other processes' appends.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The most commands one group commit takes.
pub const BATCH_EVENTS_MAX: usize = 8192;
/// Requests waiting for the writer before senders are made to wait.
const QUEUE_REQUESTS_MAX: usize = 4096;
/// Committed batches waiting for the projector before the writer is made to wait.
const PROJECTOR_QUEUE_BATCHES: usize = 4;

/// Why the ledger could not answer. A refused command is not an error (it is a
/// [`Rejection`], data); these are the other three kinds of DESIGN.md's "Errors", told apart by
/// [`LedgerError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The question cannot be answered as asked (a seq past the head, an unknown projection).
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("corruption at seq {seq}: {what}")]
    Corruption { seq: Seq, what: String },
    /// The writer could not make a batch durable: `message` says what failed, for which seqs,
    /// and what is known of the outcome.
    #[error("{message}")]
    AppendFailed { kind: ErrorKind, message: String },
    #[error("the ledger's writer has stopped")]
    WriterGone,
}

/// The kinds of [`LedgerError`] (exit 2 for each on the CLI; HTTP 400, 503 and 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was malformed or asked for something that does not exist.
    BadRequest,
    /// The disk, the file system or the ledger's own machinery failed; the log is not known
    /// to be damaged, and the request may succeed later.
    Io,
    /// Stored data breaks a rule; the seq is named when it is known.
    Corruption,
}

impl LedgerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LedgerError::BadRequest(_) => ErrorKind::BadRequest,
            LedgerError::Log(LogError::Corruption { .. }) | LedgerError::Corruption { .. } => ErrorKind::Corruption,
            LedgerError::Log(LogError::Version { .. } | LogError::Refused(_)) => ErrorKind::BadRequest,
            LedgerError::Log(LogError::Io { .. } | LogError::Locked { .. } | LogError::Conflict { .. })
            | LedgerError::WriterGone => ErrorKind::Io,
            LedgerError::AppendFailed { kind, .. } => *kind,
        }
    }

    /// The seq a corruption was found at, when it is known.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            LedgerError::Corruption { seq, .. } => Some(*seq),
            LedgerError::Log(LogError::Corruption { seq, .. }) => *seq,
            _ => None,
        }
    }
}

impl From<FoldError> for LedgerError {
    fn from(e: FoldError) -> Self {
        LedgerError::Corruption { seq: e.seq, what: e.what }
    }
}

/// Tunables, each with a reason in its doc.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Boundaries (valid-time bounds for point-in-time queries) and loss checkpoints (small) are
    /// written every this many events: a loss total at any moment costs one checkpoint plus at
    /// most about this many events.
    pub checkpoint_every: u64,
    /// Balance checkpoints (one row per account and asset: megabytes) are written at every this
    /// many boundaries, trading disk space against the replay an old balance query needs.
    pub balances_checkpoint_multiple: u64,
    /// Who opens the ledger, recorded in the lock file for anyone else who tries.
    pub holder: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        // 4,096 x 16 = 65,536 events between balance checkpoints.
        LedgerConfig { checkpoint_every: 4_096, balances_checkpoint_multiple: 16, holder: "custos".into() }
    }
}

/// A command the ledger accepted (or had already accepted: `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: EventId,
    pub seq: Seq,
    pub duplicate: bool,
    /// The event is the ledger's first of this asset: the symbol was new (a mistyped symbol
    /// would otherwise become an asset silently).
    pub new_asset: Option<custos_domain::Asset>,
}

pub type Outcome = Result<Appended, Rejection>;

/// What the writer answers a request: the outcomes, or why the batch failed (its kind and
/// the whole message).
type Reply = Result<Vec<Outcome>, (ErrorKind, String)>;

struct Request {
    commands: Vec<Command>,
    reply: oneshot::Sender<Reply>,
}

/// Commands queued for the writer (see [`Ledger::enqueue_batch`]).
pub struct Queued {
    rx: oneshot::Receiver<Reply>,
}

fn reply_result(reply: Result<Reply, oneshot::error::RecvError>) -> Result<Vec<Outcome>, LedgerError> {
    match reply {
        Ok(Ok(outcomes)) => Ok(outcomes),
        Ok(Err((kind, message))) => Err(LedgerError::AppendFailed { kind, message }),
        Err(_) => Err(LedgerError::WriterGone),
    }
}

impl Queued {
    /// The outcome of each command, in order, once the writer has made the batch durable.
    pub async fn outcomes(self) -> Result<Vec<Outcome>, LedgerError> {
        reply_result(self.rx.await)
    }
}

pub(crate) use custos_query::BoundaryInfo;
/// The projections folded up to the head (the query engine's head state).
pub(crate) use custos_query::HeadState as Current;

pub(crate) struct Shared {
    pub log: Box<dyn Log>,
    /// The Merkle tree's frontier where its stored nodes end (see `merkle::advance`); the lock
    /// also keeps two advances of the tree from running at once.
    pub tree: Mutex<Option<crate::merkle::Frontier>>,
    /// The head the ledger answers for: moved by its writer after each durable commit, and by
    /// [`follow`] when other processes appended (it moves only after the boundary records
    /// that describe the events up to it are loaded).
    pub head: Mutex<Head>,
    pub config: LedgerConfig,
    /// The projections at the head, folded in place by the projector; queries read it shared.
    pub current: RwLock<Option<Current>>,
    pub boundaries: RwLock<Vec<BoundaryInfo>>,
    /// Set while the stored boundary records are incomplete: queries then trust none of them.
    pub bounds_damaged: AtomicBool,
    /// The smallest `occurred_at` after the last boundary (`Timestamp::MAX` when none).
    pub tail_min: Mutex<Timestamp>,
    /// The largest `occurred_at` in the log (`None` when not recorded, in logs written before it
    /// was kept): answers "is this moment after everything?" without loading the head state.
    pub max_occurred: Mutex<Option<Timestamp>>,
    pub metrics: crate::metrics::Metrics,
    /// The last seq the projector has folded into `current` (or given up on, leaving `current`
    /// empty), and its signal: a query at the head waits for the projector to reach the head.
    pub folded: Mutex<Seq>,
    pub folded_cv: Condvar,
    /// Whether a projector thread is running (a query never waits for one that is not).
    pub projector_running: AtomicBool,
    /// The last few decoded checkpoints, by (projection, generation, seq): decoding a balances
    /// checkpoint of 190k rows costs ~100 ms, cloning a decoded one ~10 ms.
    checkpoint_cache: Mutex<VecDeque<CachedCheckpoint>>,
    /// The head seq, published after every durable commit (for live tails).
    pub head_tx: tokio::sync::watch::Sender<Seq>,
    /// Notices for the operator (e.g. "rebuilt projection balances").
    pub notices: Mutex<Vec<String>>,
    /// Held by the writer while it appends a batch with its boundary metadata, and by a rebuild
    /// while it catches up and swaps its generation in: the log and its boundary records are
    /// then seen, and replaced, together.
    pub commit_lock: Mutex<()>,
    /// Held by the projector while it writes checkpoints into the active generations, and by a
    /// rebuild while it swaps them: no checkpoint lands in a generation that was just retired.
    pub generation_lock: Mutex<()>,
    /// Why the last append failed, until one succeeds again (or why the writer stopped):
    /// what `/health` reports while the ledger cannot write.
    pub write_fault: Mutex<Option<String>>,
}

/// The boundary records, the smallest `occurred_at` after the last of them and the largest of
/// the whole log, as stored.
pub(crate) struct StoredBounds {
    pub boundaries: Vec<BoundaryInfo>,
    pub tail_min: Timestamp,
    pub max_occurred: Option<Timestamp>,
    /// Why the boundary records cannot be trusted (some are missing), when they cannot:
    /// queries then read the log from its start (slower, never wrong) until a rebuild.
    pub damaged: Option<String>,
}

/// Reads the stored boundary records up to `head`, and `tail_min` and `max_occurred`, and
/// checks them against the count record written with them. On a log other processes write a
/// count and a listing read a moment apart can disagree: read again before calling it damage.
pub(crate) fn stored_bounds(store: &dyn Log, head: Seq) -> Result<StoredBounds, LedgerError> {
    let mut bounds = read_bounds(store, head)?;
    for _ in 0..3 {
        if bounds.damaged.is_none() {
            break;
        }
        bounds = read_bounds(store, head)?;
    }
    Ok(bounds)
}

fn read_bounds(store: &dyn Log, head: Seq) -> Result<StoredBounds, LedgerError> {
    let mut boundaries = Vec::new();
    let (mut listed, mut last_listed) = (0u64, 0);
    for name in store.list_meta("boundary/")? {
        let v = store.get_meta(&name)?.unwrap_or_default();
        let seq: Seq =
            name["boundary/".len()..].parse().map_err(|_| corrupt(0, format!("bad boundary name {name}")))?;
        if v.len() != 16 {
            return Err(corrupt(seq, "boundary record is not 16 bytes".into()));
        }
        let max = i64::from_be_bytes(v[..8].try_into().expect("8"));
        let min = i64::from_be_bytes(v[8..].try_into().expect("8"));
        listed += 1;
        last_listed = seq;
        if seq <= head {
            boundaries.push(BoundaryInfo {
                seq,
                max_occurred: Timestamp::from_nanos(max),
                min_occurred: Timestamp::from_nanos(min),
            });
        }
    }
    let max_occurred = match store.get_meta(MAX_OCCURRED)? {
        Some(v) if v.len() == 8 => Some(Timestamp::from_nanos(i64::from_be_bytes(v[..].try_into().expect("8")))),
        _ => None,
    };
    let tail_min = match store.get_meta(TAIL_MIN)? {
        Some(v) if v.len() == 8 => Timestamp::from_nanos(i64::from_be_bytes(v[..].try_into().expect("8"))),
        _ => Timestamp::MAX,
    };
    // Logs written before the count record existed have none: nothing to check them by.
    let damaged = match store.get_meta(BOUNDARY_COUNT)? {
        Some(v) if v.len() == 16 => {
            let count = u64::from_be_bytes(v[..8].try_into().expect("8"));
            let last = u64::from_be_bytes(v[8..].try_into().expect("8"));
            (count != listed || last != last_listed).then(|| {
                format!(
                    "{listed} boundary records are stored (the last at seq {last_listed}) but {count} were written (the last at seq {last})"
                )
            })
        }
        Some(_) => Some("the boundary count record is malformed".to_string()),
        None => None,
    };
    Ok(StoredBounds { boundaries, tail_min, max_occurred, damaged })
}

/// The record of how many boundary records were written, and the seq of the last: a missing
/// boundary record would make a query skip events, so the ledger checks them against it.
fn boundary_count_value(count: u64, last: Seq) -> Vec<u8> {
    let mut v = count.to_be_bytes().to_vec();
    v.extend_from_slice(&last.to_be_bytes());
    v
}

/// Applies what [`stored_bounds`] read to the shared state (the caller holds the commit lock).
fn install_bounds(shared: &Shared, bounds: StoredBounds) {
    let StoredBounds { boundaries, tail_min, max_occurred, damaged } = bounds;
    *shared.boundaries.write().expect("boundaries lock") = boundaries;
    *shared.tail_min.lock().expect("tail lock") = tail_min;
    *shared.max_occurred.lock().expect("max lock") = max_occurred;
    let was = shared.bounds_damaged.swap(damaged.is_some(), Ordering::SeqCst);
    if let Some(why) = damaged.filter(|_| !was) {
        let text = format!(
            "the boundary records of this ledger are incomplete ({why}): queries read the log from its start, slower but exact, until `custos rebuild` rewrites them"
        );
        tracing::warn!("{text}");
        shared.notices.lock().expect("notices lock").push(text);
    }
}

/// An open ledger.
pub struct Ledger {
    pub(crate) shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// The projector, compactor and writer threads, started by the first write.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

type CachedCheckpoint = (&'static str, u64, Seq, Arc<dyn std::any::Any + Send + Sync>);

/// Decoded checkpoints kept per ledger.
const CHECKPOINT_CACHE_ENTRIES: usize = 6;

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub seconds: f64,
    pub checkpoints: u64,
}

/// The loss blocks, in the projector's list of what is due.
const LOSS_BLOCK: &str = "loss block";
const TAIL_MIN: &str = "tail_min_occurred";
const BOUNDARY_COUNT: &str = "boundary_count";
const MAX_OCCURRED: &str = "max_occurred";

pub(crate) fn boundary_name(seq: Seq) -> String {
    format!("boundary/{seq:020}")
}

pub(crate) fn checkpoint_prefix(name: &str, generation: u64) -> String {
    format!("cp/{name}/g{generation:08}/")
}

/// The name of the loss block that ends at boundary `last`, beside the losses checkpoint there
/// (in its generation: a rebuild replaces both).
pub(crate) fn loss_block_name(generation: u64, last: Seq) -> String {
    format!("{}events/{last:020}", checkpoint_prefix(Losses::NAME, generation))
}

/// The stored loss block that ends at boundary `last` in the active losses generation.
pub(crate) fn loss_block(shared: &Shared, last: Seq) -> Result<Option<Vec<u8>>, LedgerError> {
    let Some(generation) = active_generation(&*shared.log, Losses::NAME)? else { return Ok(None) };
    Ok(shared.log.get_meta(&loss_block_name(generation, last))?)
}

/// Keeps `events`' events with a loss time; answers the loss block of `(last - k, last]` when
/// `last` is a boundary and everything after `last - k` was kept, and then starts over.
pub(crate) fn collect_loss_block(since: &mut Seq, kept: &mut Vec<Envelope>, env: &Envelope, k: u64) -> Option<Vec<u8>> {
    if env.loss_time().is_some() {
        kept.push(env.clone());
    }
    if !env.seq.is_multiple_of(k) {
        return None;
    }
    let first = env.seq - k;
    let block = (*since <= first).then(|| custos_projection::encode_loss_block(first, env.seq, kept.iter()));
    *since = env.seq;
    kept.clear();
    block
}

fn active_name(name: &str) -> String {
    format!("cp/{name}/active")
}

/// A stored checkpoint value: schema version, then the projection's own encoding.
fn checkpoint_value<P: Projection>(p: &P) -> Vec<u8> {
    let mut out = P::SCHEMA_VERSION.to_be_bytes().to_vec();
    p.encode_into(&mut out);
    out
}

impl Ledger {
    /// Opens (creating if needed) the embedded ledger in the folder `dir`.
    pub fn open(dir: &Path, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        let log = custos_sled::Store::open(dir, &config.holder).map_err(LogError::from)?;
        Ledger::open_log(Box::new(log), config)
    }

    /// Opens the ledger `location` names: a `postgres://` (or `postgresql://`) URL opens it
    /// in that PostgreSQL database, anything else is the folder of an embedded (sled) ledger.
    pub fn open_at(location: &str, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        let log = open_log_at(location, &config.holder)?;
        Ledger::open_log(log, config)
    }

    /// Whether `location` (as for [`Ledger::open_at`]) holds a ledger, without creating one.
    pub fn exists_at(location: &str) -> Result<bool, LedgerError> {
        refuse_other_urls(location)?;
        if custos_postgres::Target::is_url(location) {
            Ok(custos_postgres::PgLog::exists(&custos_postgres::Target::parse(location)?)?)
        } else {
            Ok(Ledger::exists(Path::new(location)))
        }
    }

    /// Opens the ledger on a log already opened on some engine.
    pub fn open_log(log: Box<dyn Log>, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        assert!(config.checkpoint_every > 0, "checkpoint_every must be positive");
        assert!(config.balances_checkpoint_multiple > 0, "balances_checkpoint_multiple must be positive");
        let head = log.latest_head()?;
        let head_seq = head.seq;
        let bounds = stored_bounds(&*log, head_seq)?;
        let notices = log.take_notices();
        let shared = Arc::new(Shared {
            log,
            head: Mutex::new(head),
            config,
            tail_min: Mutex::new(Timestamp::MAX),
            max_occurred: Mutex::new(None),
            metrics: crate::metrics::Metrics::default(),
            folded: Mutex::new(head_seq),
            folded_cv: Condvar::new(),
            projector_running: AtomicBool::new(false),
            checkpoint_cache: Mutex::new(VecDeque::new()),
            head_tx: tokio::sync::watch::channel(head_seq).0,
            current: RwLock::new(None),
            boundaries: RwLock::new(Vec::new()),
            bounds_damaged: AtomicBool::new(false),
            notices: Mutex::new(notices),
            tree: Mutex::new(None),
            commit_lock: Mutex::new(()),
            generation_lock: Mutex::new(()),
            write_fault: Mutex::new(None),
        });
        install_bounds(&shared, bounds);
        let ledger = Ledger { shared, tx: Mutex::new(None), threads: Mutex::new(Vec::new()) };
        ledger.ensure_projection_versions()?;
        if ledger.shared.log.shared_writers() {
            ledger.start_follower()?;
        }
        Ok(ledger)
    }

    /// Where the ledger lives, for messages ("the ledger at DIR").
    pub fn location(&self) -> String {
        self.shared.log.location()
    }

    /// Whether there is a ledger in the folder `dir` to open without creating one.
    pub fn exists(dir: &Path) -> bool {
        custos_sled::Store::exists(dir)
    }

    pub fn head(&self) -> Head {
        *self.shared.head.lock().expect("head lock")
    }

    /// Catches up with what other processes appended to a shared log (at once; a follower
    /// thread also does every `FOLLOW_EVERY`). Nothing to do on a log only this process writes.
    pub fn refresh(&self) -> Result<Head, LedgerError> {
        follow(&self.shared)?;
        Ok(self.head())
    }

    /// Polls a shared log for other processes' appends, so that the head, the live tail and
    /// the queries see them. Ends when the ledger is dropped.
    fn start_follower(&self) -> Result<(), LedgerError> {
        let weak = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("custos-follower".into())
            .spawn(move || loop {
                std::thread::sleep(FOLLOW_EVERY);
                let Some(shared) = weak.upgrade() else { return };
                if let Err(e) = follow(&shared) {
                    tracing::warn!("cannot follow the log's head: {e}");
                }
            })
            .map_err(|e| LogError::io("cannot start the ledger's follower thread", e))?;
        Ok(())
    }

    pub(crate) fn store(&self) -> &dyn Log {
        &*self.shared.log
    }

    /// The writer's counters and histograms.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// A receiver of the head seq, updated after every durable commit.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.shared.head_tx.subscribe()
    }

    /// Why the ledger cannot write now, if it cannot: the last append failed (a full disk, an
    /// IO error) and none has succeeded since, or the writer stopped.
    pub fn write_fault(&self) -> Option<String> {
        self.shared.write_fault.lock().expect("fault lock").clone()
    }

    /// Messages the operator should see (projection rebuilds on open, and similar).
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.notices.lock().expect("notices lock"))
    }

    /// Decides and durably appends one command.
    pub async fn submit(&self, command: Command) -> Result<Outcome, LedgerError> {
        Ok(self.submit_batch(vec![command]).await?.pop().expect("one outcome per command"))
    }

    /// Decides and durably appends commands in order (possibly grouped with other callers').
    pub async fn submit_batch(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, LedgerError> {
        self.enqueue_batch(commands).await?.outcomes().await
    }

    /// Hands commands to the writer and returns once they are queued, with their answer to
    /// await later. Batches one caller queues one after another are decided in that order, so
    /// a caller can keep several in flight without reordering its commands.
    pub async fn enqueue_batch(&self, commands: Vec<Command>) -> Result<Queued, LedgerError> {
        let (reply, rx) = oneshot::channel();
        if commands.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
        } else {
            let tx = self.writer_sender()?;
            tx.send(Request { commands, reply }).await.map_err(|_| LedgerError::WriterGone)?;
        }
        Ok(Queued { rx })
    }

    /// Blocking form of [`Ledger::submit_batch`] for callers outside an async runtime.
    pub fn submit_batch_blocking(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, LedgerError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.writer_sender()?;
        let (reply, rx) = oneshot::channel();
        tx.blocking_send(Request { commands, reply }).map_err(|_| LedgerError::WriterGone)?;
        reply_result(rx.blocking_recv())
    }

    /// The seq of the write-model snapshot a writer would start from, if there is a usable one.
    pub fn write_model_snapshot_seq(&self) -> Result<Option<Seq>, LedgerError> {
        let head = self.shared.log.latest_head()?;
        Ok(stored_write_model(&*self.shared.log, head.seq).ok().flatten().map(|m| m.head_seq))
    }

    /// A copy of the write model at the head, for dry runs (`import --strict`).
    pub fn write_model(&self) -> Result<WriteModel, LedgerError> {
        load_write_model(&*self.shared.log)
    }

    /// The envelope at `seq`.
    pub fn envelope(&self, seq: Seq) -> Result<Option<Envelope>, LedgerError> {
        read_envelope(&*self.shared.log, seq)
    }

    /// Calls `f` for every envelope from `from` on, in seq order, until it breaks.
    pub fn for_each_envelope(&self, from: Seq, f: impl FnMut(Envelope) -> ControlFlow<()>) -> Result<(), LedgerError> {
        for_each_envelope(&*self.shared.log, from, f)
    }

    /// [`Ledger::for_each_envelope`] with a step that can fail: the first error stops the scan
    /// and is returned.
    pub fn try_for_each_envelope(
        &self,
        from: Seq,
        f: impl FnMut(Envelope) -> Result<ControlFlow<()>, LedgerError>,
    ) -> Result<(), LedgerError> {
        try_for_each_envelope(&*self.shared.log, from, f)
    }

    fn writer_sender(&self) -> Result<mpsc::Sender<Request>, LedgerError> {
        let mut tx = self.tx.lock().expect("sender lock");
        if let Some(tx) = tx.as_ref() {
            return Ok(tx.clone());
        }
        let (model, snapshotted) = load_write_model_from_snapshot(&*self.shared.log)?;
        let (sender, receiver) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let (to_projector, projector_rx) = std::sync::mpsc::sync_channel(PROJECTOR_QUEUE_BATCHES);
        let io = |source| LogError::Io { what: "cannot start the ledger's threads".into(), source };
        let mut threads = self.threads.lock().expect("threads lock");
        let shared = Arc::clone(&self.shared);
        shared.projector_running.store(true, Ordering::SeqCst);
        threads.push(
            std::thread::Builder::new()
                .name("custos-projector".into())
                .spawn(move || projector_loop(shared, projector_rx))
                .map_err(io)?,
        );
        // Index segments are merged off the writer's path; a signal per commit, coalesced.
        let (to_compactor, compactor_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let shared = Arc::clone(&self.shared);
        threads.push(
            std::thread::Builder::new()
                .name("custos-compactor".into())
                .spawn(move || {
                    for () in compactor_rx {
                        if let Err(e) = shared.log.maintain() {
                            tracing::warn!("index segments not merged (lookups stay correct, slower): {e}");
                        }
                        // The Merkle tree's nodes for what was appended, off the writer's path.
                        if let Err(e) = crate::merkle::advance(&shared) {
                            tracing::warn!(
                                "the Merkle tree is not stored up to the head yet (proofs bring it there): {e}"
                            );
                        }
                    }
                })
                .map_err(io)?,
        );
        let shared = Arc::clone(&self.shared);
        threads.push(
            std::thread::Builder::new()
                .name("custos-writer".into())
                .spawn(move || writer_loop(shared, model, snapshotted, receiver, to_projector, to_compactor))
                .map_err(io)?,
        );
        *tx = Some(sender.clone());
        Ok(sender)
    }

    /// Stops the writer after it has answered everything already sent, lets the projector fold
    /// what the writer handed it, and syncs the store.
    pub fn close(&self) -> Result<(), LedgerError> {
        self.tx.lock().expect("sender lock").take();
        // The writer first: when it ends it drops the compactor's and the projector's channels,
        // which ends them.
        for h in self.threads.lock().expect("threads lock").drain(..).rev() {
            let _ = h.join();
        }
        self.shared.log.sync()?;
        Ok(())
    }

    /// Runs `f` on the projections folded exactly up to `seq`, a seq at or before the head
    /// (loaded from the last checkpoint plus the tail the first time, then kept current by the
    /// projector, which this waits for). `None` when the head state has moved past `seq`
    /// meanwhile: the caller answers from a checkpoint instead.
    pub(crate) fn with_current<R>(&self, seq: Seq, f: impl FnOnce(&Current) -> R) -> Result<Option<R>, LedgerError> {
        self.wait_projected(seq);
        {
            let slot = self.shared.current.read().expect("current lock");
            match slot.as_ref().map(|c| c.balances.last_seq()) {
                Some(at) if at == seq => return Ok(Some(f(slot.as_ref().expect("present")))),
                Some(at) if at > seq => return Ok(None),
                _ => {}
            }
        }
        let mut slot = self.shared.current.write().expect("current lock");
        if slot.as_ref().is_none_or(|c| c.balances.last_seq() < seq) {
            let current = load_current_until(&self.shared, seq)?;
            current.balances.check_conserved()?;
            *slot = Some(current);
        }
        Ok(slot.as_ref().filter(|c| c.balances.last_seq() == seq).map(f))
    }

    /// Runs `f` on the boundary records the ledger holds for its head.
    pub(crate) fn with_stored_bounds<R>(&self, f: impl FnOnce(&custos_query::Bounds<'_>) -> R) -> R {
        let shared = &self.shared;
        let tail_min = *shared.tail_min.lock().expect("tail lock");
        let max_occurred = *shared.max_occurred.lock().expect("max lock");
        let damaged = shared.bounds_damaged.load(Ordering::SeqCst);
        let boundaries = shared.boundaries.read().expect("boundaries lock");
        f(&custos_query::Bounds { boundaries: &boundaries, tail_min, max_occurred, damaged })
    }

    /// Waits until the projector has folded `seq` (at once when no projector is running).
    fn wait_projected(&self, seq: Seq) {
        let shared = &self.shared;
        let mut folded = shared.folded.lock().expect("folded lock");
        while *folded < seq && shared.projector_running.load(Ordering::SeqCst) {
            folded =
                shared.folded_cv.wait_timeout(folded, std::time::Duration::from_millis(50)).expect("folded lock").0;
        }
    }

    /// The latest stored checkpoint of `P` at or before `seq` (with the active generation).
    pub(crate) fn checkpoint<P: Projection>(&self, seq: Seq) -> Result<Option<P>, LedgerError> {
        load_checkpoint(&self.shared, seq)
    }

    /// The latest balances checkpoint at or before `seq`, with only the accounts `keep` accepts.
    pub(crate) fn balances_checkpoint_of(
        &self,
        seq: Seq,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Balances>, LedgerError> {
        load_checkpoint_with(&self.shared, seq, Some(&|bytes: &[u8]| Balances::decode_accounts(bytes, keep)))
    }

    /// When a projection's stored schema version differs from the code's, rebuild it now.
    fn ensure_projection_versions(&self) -> Result<(), LedgerError> {
        for name in [Balances::NAME, Losses::NAME] {
            let stored = stored_version(&*self.shared.log, name)?;
            let code = if name == Balances::NAME { Balances::SCHEMA_VERSION } else { Losses::SCHEMA_VERSION };
            if let Some(v) = stored.filter(|v| *v != code) {
                let report = self.rebuild(name, &mut |_, _| {})?;
                self.shared.notices.lock().expect("notices lock").push(format!(
                    "projection {name} was stored with schema version {v}; this build uses {code}, so it was rebuilt from the log ({} events in {:.2} s)",
                    report.events, report.seconds
                ));
            }
        }
        Ok(())
    }

    /// Refolds projection `name` from the log into a fresh generation of checkpoints, then makes
    /// it the active one in one atomic step; until then queries read the old generation.
    /// `progress(done, total)` is called as events are folded.
    pub fn rebuild(&self, name: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<RebuildReport, LedgerError> {
        Ok(self.rebuild_all(&[name], progress)?.pop().expect("one report per projection"))
    }

    /// Refolds the named projections in one scan of the log, and swaps all of them in with one
    /// atomic metadata write.
    pub fn rebuild_all(
        &self,
        names: &[&str],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<RebuildReport>, LedgerError> {
        for name in names {
            if *name != Balances::NAME && *name != Losses::NAME {
                return Err(LedgerError::BadRequest(format!("unknown projection {name:?} (known: balances, losses)")));
            }
        }
        // The engine's indexes are derived from the log too: any found damaged is rebuilt
        // first (the projections' fold reads only the log), and said.
        let repaired = self.shared.log.repair_indexes()?;
        self.shared.notices.lock().expect("notices lock").extend(repaired);
        let started = Instant::now();
        let store = &*self.shared.log;
        let config = &self.shared.config;
        let head = store.head().seq;
        let k = config.checkpoint_every;
        let mut balances =
            names.contains(&Balances::NAME).then(|| Refold::<Balances>::new(store, config)).transpose()?;
        let mut losses = names.contains(&Losses::NAME).then(|| Refold::<Losses>::new(store, config)).transpose()?;
        let mut boundaries = Vec::new();
        let (mut max_occurred, mut min_occurred) = (Timestamp::MIN, Timestamp::MAX);
        let (mut loss_since, mut loss_events) = (0, Vec::new());
        // Folds seqs `from..=to`; answers the last seq folded.
        let mut fold = |from: Seq, to: Seq, progress: &mut dyn FnMut(u64, u64)| -> Result<Seq, LedgerError> {
            let mut folded = from - 1;
            self.try_for_each_envelope(from, |env| {
                if env.seq > to {
                    return Ok(ControlFlow::Break(()));
                }
                folded = env.seq;
                max_occurred = max_occurred.max(env.occurred_at);
                min_occurred = min_occurred.min(env.occurred_at);
                if env.seq % k == 0 {
                    boundaries.push(BoundaryInfo { seq: env.seq, max_occurred, min_occurred });
                    min_occurred = Timestamp::MAX;
                }
                let mut put = Vec::new();
                put.extend(balances.as_mut().map(|r| r.apply(&env)).transpose()?.flatten());
                put.extend(losses.as_mut().map(|r| r.apply(&env)).transpose()?.flatten());
                if let Some(r) = &losses {
                    if let Some(block) = collect_loss_block(&mut loss_since, &mut loss_events, &env, k) {
                        put.push((loss_block_name(r.new_generation, env.seq), block));
                    }
                }
                if !put.is_empty() {
                    store.write_meta(put, vec![])?;
                }
                if env.seq % 16_384 == 0 {
                    progress(env.seq, to);
                }
                Ok(ControlFlow::Continue(()))
            })?;
            Ok(folded)
        };
        // Most of the log without holding up the writer; then, holding it, whatever it appended
        // meanwhile, and the swap.
        let folded = fold(1, head, progress)?;
        let _commit = self.shared.commit_lock.lock().expect("commit lock");
        let _generations = self.shared.generation_lock.lock().expect("generation lock");
        // No writer, in this process or another, appends until the swap is done.
        let head_lock = store.lock_head()?;
        let head = head_lock.head().seq;
        fold(folded + 1, head, progress)?;
        progress(head, head);
        // One atomic step: the new generations become active, and the boundary records, written
        // for this configuration's interval, replace the old ones. A crash before it leaves the
        // old generations and boundaries in force (the new checkpoints are unreachable garbage);
        // after it, the new ones. Readers never see a mix.
        failpoint("rebuild:before-swap");
        let old_boundaries = store.list_meta("boundary/")?;
        let mut put = Vec::new();
        if let Some(r) = &balances {
            r.swap(&mut put);
        }
        if let Some(r) = &losses {
            r.swap(&mut put);
        }
        put.extend(boundaries.iter().map(|b| (boundary_name(b.seq), boundary_value(b))));
        put.push((TAIL_MIN.to_string(), min_occurred.nanos().to_be_bytes().to_vec()));
        put.push((MAX_OCCURRED.to_string(), max_occurred.nanos().to_be_bytes().to_vec()));
        put.push((
            BOUNDARY_COUNT.to_string(),
            boundary_count_value(boundaries.len() as u64, boundaries.last().map_or(0, |b| b.seq)),
        ));
        let new_names: std::collections::HashSet<&String> = put.iter().map(|(n, _)| n).collect();
        let remove = old_boundaries.into_iter().filter(|n| !new_names.contains(n)).collect();
        store.write_meta(put, remove)?;
        store.sync()?;
        drop(head_lock);
        failpoint("rebuild:after-swap");
        if let Some(r) = &balances {
            r.remove_old(store)?;
        }
        if let Some(r) = &losses {
            r.remove_old(store)?;
        }
        // The write-model snapshot is derived from the log too: dropped, so that the next
        // writer folds the log and leaves a fresh one.
        store.remove_meta_prefix(WRITE_MODEL_PREFIX)?;
        *self.shared.max_occurred.lock().expect("max lock") = Some(max_occurred);
        *self.shared.tail_min.lock().expect("tail lock") = min_occurred;
        *self.shared.boundaries.write().expect("boundaries lock") = boundaries;
        self.shared.bounds_damaged.store(false, Ordering::SeqCst);
        *self.shared.current.write().expect("current lock") = None;
        self.shared.checkpoint_cache.lock().expect("cache lock").clear();
        drop(_generations);
        drop(_commit);
        let seconds = started.elapsed().as_secs_f64();
        let report = |projection: &str, checkpoints| RebuildReport {
            projection: projection.to_string(),
            events: head,
            seconds,
            checkpoints,
        };
        let mut out = Vec::new();
        out.extend(balances.map(|r| report(Balances::NAME, r.checkpoints)));
        out.extend(losses.map(|r| report(Losses::NAME, r.checkpoints)));
        Ok(out)
    }
}

/// One projection being refolded into a new generation of checkpoints.
struct Refold<P: Projection> {
    state: P,
    old_generation: Option<u64>,
    new_generation: u64,
    interval: u64,
    checkpoints: u64,
}

impl<P: Projection> Refold<P> {
    fn new(store: &dyn Log, config: &LedgerConfig) -> Result<Self, LedgerError> {
        let old_generation = active_generation(store, P::NAME)?;
        Ok(Refold {
            state: P::default(),
            old_generation,
            new_generation: old_generation.map_or(1, |g| g + 1),
            interval: checkpoint_interval::<P>(config),
            checkpoints: 0,
        })
    }

    /// Folds one event; returns the checkpoint to write when one is due.
    fn apply(&mut self, env: &Envelope) -> Result<Option<(String, Vec<u8>)>, FoldError> {
        self.state.apply(env, Timestamp::MAX)?;
        Ok(env.seq.is_multiple_of(self.interval).then(|| {
            self.checkpoints += 1;
            (
                format!("{}{:020}", checkpoint_prefix(P::NAME, self.new_generation), env.seq),
                checkpoint_value(&self.state),
            )
        }))
    }

    /// The metadata change that makes the new generation the active one.
    fn swap(&self, put: &mut Vec<(String, Vec<u8>)>) {
        put.push((active_name(P::NAME), generation_value::<P>(self.new_generation)));
    }

    /// Removes the old generation, once nothing can read it any more (after the swap). In
    /// bounded batches: a crash midway leaves unreachable garbage, never a wrong answer.
    fn remove_old(&self, store: &dyn Log) -> Result<(), LedgerError> {
        if let Some(g) = self.old_generation {
            store.remove_meta_prefix(&checkpoint_prefix(P::NAME, g))?;
        }
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Events between two checkpoints of `P`.
fn checkpoint_interval<P: Projection>(config: &LedgerConfig) -> u64 {
    if P::NAME == Balances::NAME {
        config.checkpoint_every * config.balances_checkpoint_multiple
    } else {
        config.checkpoint_every
    }
}

fn boundary_value(info: &BoundaryInfo) -> Vec<u8> {
    let mut v = info.max_occurred.nanos().to_be_bytes().to_vec();
    v.extend_from_slice(&info.min_occurred.nanos().to_be_bytes());
    v
}

fn generation_value<P: Projection>(generation: u64) -> Vec<u8> {
    let mut v = generation.to_be_bytes().to_vec();
    v.extend_from_slice(&P::SCHEMA_VERSION.to_be_bytes());
    v
}

fn active_generation(store: &dyn Log, name: &str) -> Result<Option<u64>, LogError> {
    Ok(store
        .get_meta(&active_name(name))?
        .and_then(|v| v.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8")))))
}

fn stored_version(store: &dyn Log, name: &str) -> Result<Option<u32>, LogError> {
    Ok(store
        .get_meta(&active_name(name))?
        .and_then(|v| v.get(8..12).map(|b| u32::from_be_bytes(b.try_into().expect("4")))))
}

pub(crate) fn corrupt(seq: Seq, what: String) -> LedgerError {
    LedgerError::Corruption { seq, what }
}

pub(crate) fn read_envelope(store: &dyn Log, seq: Seq) -> Result<Option<Envelope>, LedgerError> {
    Ok(custos_query::read_envelope(store, seq)?)
}

/// The latest checkpoint of `P` at or before `seq`, from the active generation.
fn load_checkpoint<P: Projection>(shared: &Shared, seq: Seq) -> Result<Option<P>, LedgerError> {
    load_checkpoint_with(shared, seq, None)
}

/// A decoder of a partial checkpoint state.
type PartialDecode<'a, P> = &'a dyn Fn(&[u8]) -> Option<P>;

/// The latest checkpoint of `P` at or before `seq`, decoded by `partial` when given (a partial
/// state: neither read from nor put in the cache of whole states) or by `P::decode`.
fn load_checkpoint_with<P: Projection>(
    shared: &Shared,
    seq: Seq,
    partial: Option<PartialDecode<'_, P>>,
) -> Result<Option<P>, LedgerError> {
    let store = &*shared.log;
    let Some(generation) = active_generation(store, P::NAME)? else {
        return Ok(None);
    };
    let prefix = checkpoint_prefix(P::NAME, generation);
    // Checkpoints are taken at the boundaries: look them up by name, latest first, rather than
    // listing the metadata (which would read every checkpoint's bytes).
    let candidates: Vec<Seq> = {
        let boundaries = shared.boundaries.read().expect("boundaries lock");
        boundaries.iter().rev().map(|b| b.seq).filter(|s| *s <= seq).collect()
    };
    for at in candidates {
        if partial.is_none() {
            let cache = shared.checkpoint_cache.lock().expect("cache lock");
            let hit = cache.iter().find(|(n, g, s, _)| *n == P::NAME && *g == generation && *s == at);
            if let Some(state) = hit.and_then(|(_, _, _, v)| v.downcast_ref::<P>()) {
                return Ok(Some(state.clone()));
            }
        }
        let name = format!("{prefix}{at:020}");
        // A checkpoint is a cache: one that is missing, unreadable or wrong costs speed, never
        // an answer. Skip it (an earlier one, or the log, serves instead) and say so; `verify`
        // reports it and `rebuild` replaces it.
        let state = match read_checkpoint::<P>(store, &name, at, partial) {
            Ok(Some(state)) => state,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("skipped checkpoint {name} ({e}); answering from an earlier one or the log");
                continue;
            }
        };
        if partial.is_some() {
            return Ok(Some(state));
        }
        let mut cache = shared.checkpoint_cache.lock().expect("cache lock");
        if cache.len() >= CHECKPOINT_CACHE_ENTRIES {
            cache.pop_front();
        }
        cache.push_back((P::NAME, generation, at, Arc::new(state.clone())));
        return Ok(Some(state));
    }
    Ok(None)
}

/// The checkpoint of `P` stored under `name` for boundary `at` (`None`: none there, or of
/// another schema version), decoded and checked to be a state folded to `at`.
fn read_checkpoint<P: Projection>(
    store: &dyn Log,
    name: &str,
    at: Seq,
    partial: Option<PartialDecode<'_, P>>,
) -> Result<Option<P>, LedgerError> {
    let Some(bytes) = store.get_meta(name)? else { return Ok(None) };
    let version = bytes.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4")));
    if version != Some(P::SCHEMA_VERSION) {
        return Ok(None);
    }
    let decoded = match partial {
        Some(decode) => decode(&bytes[4..]),
        None => P::decode(&bytes[4..]),
    };
    let state = decoded.ok_or_else(|| corrupt(at, format!("checkpoint {name} does not decode")))?;
    if state.last_seq() != at {
        return Err(corrupt(at, format!("checkpoint {name} says it folded to seq {}", state.last_seq())));
    }
    Ok(Some(state))
}

/// The checkpoint of `P` at exactly boundary `at` in the active generation, with any error
/// reading it (for `verify`, which reports what queries skip).
pub(crate) fn checkpoint_at<P: Projection>(shared: &Shared, at: Seq) -> Result<Option<P>, LedgerError> {
    let Some(generation) = active_generation(&*shared.log, P::NAME)? else { return Ok(None) };
    let name = format!("{}{at:020}", checkpoint_prefix(P::NAME, generation));
    read_checkpoint::<P>(&*shared.log, &name, at, None)
}

/// Calls `f` with every envelope from `from` on, in seq order, until it breaks; a record that
/// does not decode stops the scan with a corruption error naming its seq.
pub(crate) fn for_each_envelope(
    store: &dyn Log,
    from: Seq,
    mut f: impl FnMut(Envelope) -> ControlFlow<()>,
) -> Result<(), LedgerError> {
    let mut err = None;
    store.for_each_record(from, &mut |seq, record| match Envelope::decode(record) {
        Ok(env) => f(env),
        Err(e) => {
            err = Some(corrupt(seq, e.to_string()));
            ControlFlow::Break(())
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// [`for_each_envelope`] with a step that can fail: its first error stops the scan.
pub(crate) fn try_for_each_envelope(
    store: &dyn Log,
    from: Seq,
    mut f: impl FnMut(Envelope) -> Result<ControlFlow<()>, LedgerError>,
) -> Result<(), LedgerError> {
    let mut err = None;
    for_each_envelope(store, from, |env| match f(env) {
        Ok(flow) => flow,
        Err(e) => {
            err = Some(e);
            ControlFlow::Break(())
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// Where write-model snapshots are kept (one, the latest; a second only while it replaces the
/// first), named by the seq they were taken at.
const WRITE_MODEL_PREFIX: &str = "write-model/";

fn write_model_name(seq: Seq) -> String {
    format!("{WRITE_MODEL_PREFIX}{seq:020}")
}

/// The latest write-model snapshot at or before `head`, checked against the log: it must name
/// an event of this log by its chain hash, decode, and hold the model at that seq. `Ok(None)`
/// when there is none; `Err` says why a stored one is not used.
pub(crate) fn stored_write_model(store: &dyn Log, head: Seq) -> Result<Option<WriteModel>, String> {
    let names = store.list_meta(WRITE_MODEL_PREFIX).map_err(|e| e.to_string())?;
    let Some((seq, name)) = names
        .iter()
        .filter_map(|n| Some((n.strip_prefix(WRITE_MODEL_PREFIX)?.parse::<Seq>().ok()?, n)))
        .filter(|(seq, _)| *seq <= head)
        .max()
    else {
        return Ok(None);
    };
    let bytes = store.get_meta(name).map_err(|e| e.to_string())?.ok_or("it vanished while being read")?;
    let (hash, body) = bytes.split_at_checked(32).ok_or("it is shorter than a hash")?;
    let env = read_envelope(store, seq).map_err(|e| e.to_string())?.ok_or(format!("seq {seq} is not in the log"))?;
    if env.hash[..] != *hash {
        return Err(format!("it was taken from another log (the chain hash at seq {seq} differs)"));
    }
    let model = WriteModel::from_snapshot(body)?;
    if model.head_seq != seq {
        return Err(format!("it holds the model at seq {}, not {seq}", model.head_seq));
    }
    Ok(Some(model))
}

/// Stores the model as the latest write-model snapshot (replacing older ones), so that the
/// next process that appends folds only what follows it. Derived data: not fsynced (a lost
/// snapshot costs a longer fold), and a failure is only logged.
fn store_write_model(store: &dyn Log, model: &WriteModel) -> Option<Seq> {
    let seq = model.head_seq;
    let result = (|| -> Result<(), LedgerError> {
        let env = read_envelope(store, seq)?.ok_or_else(|| corrupt(seq, "the head event is missing".into()))?;
        let mut value = env.hash.to_vec();
        value.extend_from_slice(&model.snapshot());
        let name = write_model_name(seq);
        let old: Vec<String> = store.list_meta(WRITE_MODEL_PREFIX)?.into_iter().filter(|n| *n != name).collect();
        store.write_meta(vec![(name, value)], old)?;
        Ok(())
    })();
    match result {
        Ok(()) => Some(seq),
        Err(e) => {
            tracing::warn!("the write model was not snapshotted at seq {seq} (the next writer folds more): {e}");
            None
        }
    }
}

/// Events between write-model snapshots while the writer runs (each costs the writer one
/// encoding of the model), and the fewest a stopping writer leaves unsnapshotted.
fn write_model_snapshot_every(config: &LedgerConfig) -> Seq {
    config.checkpoint_every.saturating_mul(config.balances_checkpoint_multiple).saturating_mul(16)
}

/// The write model at the head: the latest snapshot plus the events after it, or the whole
/// log folded when there is no usable snapshot.
fn load_write_model(store: &dyn Log) -> Result<WriteModel, LedgerError> {
    load_write_model_from_snapshot(store).map(|(model, _)| model)
}

/// [`load_write_model`], and the seq of the snapshot it started from (0: none).
fn load_write_model_from_snapshot(store: &dyn Log) -> Result<(WriteModel, Seq), LedgerError> {
    // Up to the head as it is now (on a shared log, others may append while this reads).
    let head = store.latest_head()?;
    let mut model = match stored_write_model(store, head.seq) {
        Ok(Some(model)) => model,
        Ok(None) => WriteModel::default(),
        Err(why) => {
            tracing::warn!("the stored write-model snapshot is not used, the log is folded instead: {why}");
            WriteModel::default()
        }
    };
    let snapshot_seq = model.head_seq;
    try_for_each_envelope(store, model.head_seq + 1, |env| {
        if env.seq > head.seq {
            return Ok(ControlFlow::Break(()));
        }
        model.apply(&env)?;
        Ok(ControlFlow::Continue(()))
    })?;
    if model.head_seq != head.seq {
        return Err(corrupt(
            model.head_seq,
            format!("the log ends at seq {} but its head says {}", model.head_seq, head.seq),
        ));
    }
    Ok((model, snapshot_seq))
}

fn writer_loop(
    shared: Arc<Shared>,
    mut model: WriteModel,
    mut snapshotted: Seq,
    mut rx: mpsc::Receiver<Request>,
    to_projector: std::sync::mpsc::SyncSender<Vec<Envelope>>,
    to_compactor: std::sync::mpsc::SyncSender<()>,
) {
    let mut stats = writer_stats(&shared, &model);
    // `snapshotted`: the seq of the latest snapshot as far as this writer knows (it started
    // from the model there; 0: from nothing).
    let every = write_model_snapshot_every(&shared.config);
    // Set after an append fails with an IO fault: sled 0.34 then fails every write, and reads
    // of what it holds in memory are not to be trusted, until it is opened again. It is, before
    // the next batch, once the disk has room again (see `recover`).
    let mut broken: Option<String> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut requests = vec![first];
        let mut queued = requests[0].commands.len();
        while queued < BATCH_EVENTS_MAX {
            match rx.try_recv() {
                Ok(r) => {
                    queued += r.commands.len();
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        if let Some(fault) = broken.clone() {
            match recover(&shared) {
                Ok(m) => {
                    model = m;
                    stats = writer_stats(&shared, &model);
                    broken = None;
                }
                Err(why) => {
                    let msg = format!(
                        "the ledger cannot write yet ({why}); nothing of this batch was appended; the last append failed: {fault}"
                    );
                    for r in requests {
                        let _ = r.reply.send(Err((ErrorKind::Io, msg.clone())));
                    }
                    continue;
                }
            }
        }
        let result = commit(&shared, &mut model, &mut stats, &requests);
        match result {
            Ok(Committed { mut outcomes, caught_up, appended }) => {
                if !appended.is_empty() {
                    shared.write_fault.lock().expect("fault lock").take();
                }
                let m = &shared.metrics;
                for o in &outcomes {
                    let counter = match o {
                        Ok(a) if a.duplicate => &m.duplicates,
                        Ok(_) => &m.appended,
                        Err(_) => &m.rejected,
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                shared.head_tx.send_replace(shared.head.lock().expect("head lock").seq);
                for r in requests.into_iter().rev() {
                    let mine = outcomes.split_off(outcomes.len() - r.commands.len());
                    let _ = r.reply.send(Ok(mine));
                }
                if !appended.is_empty() {
                    // Full means a signal is already pending: nothing to add.
                    let _ = to_compactor.try_send(());
                }
                let mut committed = caught_up;
                committed.extend(appended);
                if !committed.is_empty() && to_projector.send(committed).is_err() {
                    tracing::warn!("the projector has stopped; queries will load the head state from checkpoints");
                }
                if model.head_seq >= snapshotted.saturating_add(every) {
                    snapshotted = store_write_model(&*shared.log, &model).unwrap_or(snapshotted);
                }
            }
            Err(e) => {
                tracing::error!("append failed: {e}");
                let (kind, msg) = (e.kind(), e.to_string());
                *shared.write_fault.lock().expect("fault lock") = Some(msg.clone());
                for r in requests {
                    let _ = r.reply.send(Err((kind, msg.clone())));
                }
                if kind == ErrorKind::Io {
                    // What reached the disk is intact (a restart finds every acknowledged
                    // event); the store in this process is not.
                    broken = Some(msg);
                    continue;
                }
                // The model may hold events that never reached the disk: start again from it.
                match load_write_model(&*shared.log) {
                    Ok(m) => {
                        model = m;
                        stats = LogStats::of(&shared, &model);
                    }
                    Err(e) => {
                        tracing::error!("cannot reload the write model, the writer stops: {e}");
                        *shared.write_fault.lock().expect("fault lock") =
                            Some(format!("the writer stopped: it cannot reload the write model: {e}"));
                        return;
                    }
                }
            }
        }
    }
    // Stopping (the ledger is closed): a process that appended a few events leaves a snapshot
    // for the next, unless the latest is recent enough.
    let tail_min = shared.config.checkpoint_every.max(1);
    if broken.is_none() && model.head_seq >= snapshotted.saturating_add(tail_min) {
        store_write_model(&*shared.log, &model);
    }
    // Freeing a million-entry model takes a tenth of a second: not on the closing path (a
    // process that exits next lets the OS have it).
    let _ = std::thread::Builder::new().name("custos-drop".into()).spawn(move || drop(model));
}

/// Reopens the store after a failed append, once the disk has room, and reloads what the
/// writer and the queries keep in memory from what is on disk (the failed batch may or may not
/// be there): the write model, the boundary records, and the head state (dropped: the next
/// query loads it).
fn recover(shared: &Shared) -> Result<WriteModel, String> {
    let head = shared.log.recover().map_err(|e| format!("its store does not reopen: {e}"))?;
    let model = load_write_model(&*shared.log).map_err(|e| e.to_string())?;
    let bounds = stored_bounds(&*shared.log, head.seq).map_err(|e| e.to_string())?;
    let _commit = shared.commit_lock.lock().expect("commit lock");
    install_bounds(shared, bounds);
    *shared.head.lock().expect("head lock") = head;
    *shared.current.write().expect("current lock") = None;
    shared.checkpoint_cache.lock().expect("cache lock").clear();
    // The projector never saw a failed batch that reached the disk anyway: queries must not
    // wait for it to fold that far.
    let mut folded = shared.folded.lock().expect("folded lock");
    *folded = (*folded).max(head.seq);
    shared.folded_cv.notify_all();
    drop(folded);
    shared.head_tx.send_replace(head.seq);
    tracing::warn!("the store was reopened after a failed append; the log ends at seq {}", head.seq);
    Ok(model)
}

/// Moves the ledger's head to the log's latest, when other processes appended: the boundary
/// records first (a query must never combine a head with bounds that do not cover it), then
/// the head, the projector's mark (queries must not wait for it to fold events it never
/// saw; the next query loads them from the log) and the live tail's signal.
fn follow(shared: &Shared) -> Result<(), LedgerError> {
    if !shared.log.shared_writers() {
        return Ok(());
    }
    let latest = shared.log.latest_head()?;
    if latest.seq <= shared.head.lock().expect("head lock").seq {
        return Ok(());
    }
    let _commit = shared.commit_lock.lock().expect("commit lock");
    let latest = shared.log.latest_head()?;
    if latest.seq <= shared.head.lock().expect("head lock").seq {
        return Ok(());
    }
    install_bounds(shared, stored_bounds(&*shared.log, latest.seq)?);
    *shared.head.lock().expect("head lock") = latest;
    let mut folded = shared.folded.lock().expect("folded lock");
    *folded = (*folded).max(latest.seq);
    shared.folded_cv.notify_all();
    drop(folded);
    shared.head_tx.send_replace(latest.seq);
    Ok(())
}

/// A location that looks like a URL of another kind (`mysql://…`) is refused, never taken
/// for a folder's name.
fn refuse_other_urls(location: &str) -> Result<(), LedgerError> {
    let scheme = location.trim_start().split("://").next().unwrap_or("");
    if location.contains("://")
        && !custos_postgres::Target::is_url(location)
        && !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(LedgerError::BadRequest(format!(
            "{scheme}:// is not a place for a ledger: give a folder, or a postgres:// URL"
        )));
    }
    Ok(())
}

/// Opens the log `location` names (see [`Ledger::open_at`]).
pub(crate) fn open_log_at(location: &str, holder: &str) -> Result<Box<dyn Log>, LedgerError> {
    refuse_other_urls(location)?;
    if custos_postgres::Target::is_url(location) {
        let target = custos_postgres::Target::parse(location)?;
        Ok(Box::new(custos_postgres::PgLog::open(&target, holder)?))
    } else {
        Ok(Box::new(custos_sled::Store::open(Path::new(location), holder).map_err(LogError::from)?))
    }
}

/// What the writer tracks about valid times to record boundary information atomically with
/// the events it describes.
pub(crate) struct LogStats {
    pub max_occurred: Timestamp,
    pub tail_min: Timestamp,
    /// Boundary records written so far, and the seq of the last (0: none).
    pub boundaries: u64,
    pub last_boundary: Seq,
    /// False while the stored boundary records are incomplete: the count record is then left
    /// as it is (its last seq can never match again), so the damage is not papered over.
    pub count_known: bool,
    /// The stats follow from stored boundary records read for the writer's model (or from the
    /// events it appended or caught up on since): a catch-up may then derive them from the
    /// events; when false it reads the records again.
    pub synced: bool,
}

impl LogStats {
    fn of(shared: &Shared, model: &WriteModel) -> LogStats {
        let boundaries = shared.boundaries.read().expect("boundaries lock");
        LogStats {
            max_occurred: model.max_occurred_at.unwrap_or(Timestamp::MIN),
            tail_min: *shared.tail_min.lock().expect("tail lock"),
            boundaries: boundaries.len() as u64,
            last_boundary: boundaries.last().map_or(0, |b| b.seq),
            count_known: !shared.bounds_damaged.load(Ordering::SeqCst),
            synced: true,
        }
    }
}

/// The writer's bounds for the log as its write model holds it. The model is loaded when the
/// writer starts, possibly after other processes appended beyond what the ledger's bounds were
/// loaded for, so the boundary records are read again here: a writer that trusted bounds older
/// than its model would write boundary records that miss a boundary another process wrote.
/// Read for the model's head or later (another writer may append meanwhile): the extra
/// events are then folded again at the next catch-up, which changes no minimum or maximum.
fn writer_stats(shared: &Shared, model: &WriteModel) -> LogStats {
    let synced = match stored_bounds(&*shared.log, model.head_seq) {
        Ok(bounds) => {
            install_bounds(shared, bounds);
            true
        }
        // The bounds the ledger holds are used until the next catch-up reads them again.
        Err(e) => {
            tracing::warn!("cannot read the boundary records for the writer: {e}");
            false
        }
    };
    LogStats { synced, ..LogStats::of(shared, model) }
}

/// Decides, seals and durably appends one group of requests; returns the outcomes (one per
/// command, in order) and the envelopes appended.
fn commit(
    shared: &Shared,
    model: &mut WriteModel,
    stats: &mut LogStats,
    requests: &[Request],
) -> Result<Committed, LedgerError> {
    let store = &*shared.log;
    // The commit lock first (a rebuild's swap and a verify's snapshot see the log and its
    // boundary records together), then the log's own: no other writer appends until this
    // batch is in, so it is decided against the latest state.
    let _commit = shared.commit_lock.lock().expect("commit lock");
    let lock = store.lock_head()?;
    let head = lock.head();
    let caught_up = catch_up(shared, model, stats, head)?;

    let first_seq = head.seq + 1;
    let mut prev_hash: Hash = if head.seq == 0 { GENESIS_HASH } else { head.hash };
    let now = Timestamp::now();
    let mut outcomes = Vec::new();
    let mut pending: Vec<Envelope> = Vec::new();
    let mut records = Vec::new();
    let mut index = Vec::new();
    for command in requests.iter().flat_map(|r| r.commands.iter()) {
        let existing = match model.id_candidate(&command.id) {
            Some(seq) if seq >= first_seq => pending.get((seq - first_seq) as usize).cloned(),
            Some(seq) => read_envelope(store, seq)?,
            None => None,
        };
        match model.decide(command, existing.as_ref(), now) {
            Ok(Decision::Duplicate { seq }) => {
                outcomes.push(Ok(Appended { id: command.id.clone(), seq, duplicate: true, new_asset: None }))
            }
            Ok(Decision::Append(new)) => {
                let seq = first_seq + pending.len() as u64;
                let (env, record) = new.seal(seq, &prev_hash);
                // Check the envelope across the boundary: what we write must read back as itself.
                debug_assert_eq!(Envelope::decode(&record).as_ref(), Ok(&env));
                prev_hash = env.hash;
                index.extend(index_entries(&env));
                let new_asset = env.event.asset_amount().map(|(a, _)| *a).filter(|a| !model.has_asset(a));
                model.apply(&env).expect("an event the model just decided applies to it");
                outcomes.push(Ok(Appended { id: env.event_id.clone(), seq, duplicate: false, new_asset }));
                records.push(record);
                pending.push(env);
            }
            Err(rejection) => outcomes.push(Err(rejection)),
        }
    }
    if pending.is_empty() {
        *shared.head.lock().expect("head lock") = head;
        return Ok(Committed { outcomes, caught_up, appended: pending });
    }
    let last = pending.last().expect("non-empty");
    // Boundary information goes in the same atomic step as the events it describes, so that a
    // point-in-time query never trusts a bound the log does not back.
    let (meta, new_boundaries, after) = boundary_meta(shared.config.checkpoint_every, stats, &pending);
    let LogStats { max_occurred, tail_min, .. } = after;
    let batch = AppendBatch {
        first_seq,
        records,
        index,
        head: Head { seq: last.seq, hash: last.hash, recorded_at: last.recorded_at },
        meta,
    };
    let appended = lock.append(batch).map_err(|e| {
        let kind = if matches!(e, LogError::Corruption { .. }) { ErrorKind::Corruption } else { ErrorKind::Io };
        LedgerError::AppendFailed {
            kind,
            message: format!(
                "{e} while appending seq {first_seq}-{}: the outcome of this batch is unknown; re-send it, ids make that safe",
                last.seq
            ),
        }
    })?;
    *stats = after;
    let m = &shared.metrics;
    m.fsync_us.observe(appended.flush_us + appended.fsync_us);
    m.batch_events.observe(pending.len() as u64);
    m.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.boundaries.write().expect("boundaries lock").extend(new_boundaries);
    *shared.tail_min.lock().expect("tail lock") = tail_min;
    *shared.max_occurred.lock().expect("max lock") = Some(max_occurred);
    *shared.head.lock().expect("head lock") = Head { seq: last.seq, hash: last.hash, recorded_at: last.recorded_at };
    Ok(Committed { outcomes, caught_up, appended: pending })
}

/// Named metadata values, as the log writes them.
pub(crate) type Meta = Vec<(String, Vec<u8>)>;

/// The metadata appended with `events` (which follow the events `stats` describes): a
/// boundary record at every multiple of `k`, the smallest `occurred_at` after the last one,
/// and the largest of the log. Returns it with the new boundaries and the stats after.
pub(crate) fn boundary_meta(k: u64, stats: &LogStats, events: &[Envelope]) -> (Meta, Vec<BoundaryInfo>, LogStats) {
    let mut meta = Vec::new();
    let mut new_boundaries = Vec::new();
    let (mut max_occurred, mut tail_min) = (stats.max_occurred, stats.tail_min);
    let (mut count, mut last) = (stats.boundaries, stats.last_boundary);
    for env in events {
        max_occurred = max_occurred.max(env.occurred_at);
        tail_min = tail_min.min(env.occurred_at);
        if env.seq % k == 0 {
            let info = BoundaryInfo { seq: env.seq, max_occurred, min_occurred: tail_min };
            meta.push((boundary_name(env.seq), boundary_value(&info)));
            new_boundaries.push(info);
            tail_min = Timestamp::MAX;
            (count, last) = (count + 1, env.seq);
        }
    }
    meta.push((TAIL_MIN.to_string(), tail_min.nanos().to_be_bytes().to_vec()));
    meta.push((MAX_OCCURRED.to_string(), max_occurred.nanos().to_be_bytes().to_vec()));
    if stats.count_known && (!new_boundaries.is_empty() || stats.boundaries == 0) {
        meta.push((BOUNDARY_COUNT.to_string(), boundary_count_value(count, last)));
    }
    let count_known = stats.count_known;
    let synced = stats.synced;
    (
        meta,
        new_boundaries,
        LogStats { max_occurred, tail_min, boundaries: count, last_boundary: last, count_known, synced },
    )
}

/// What one group commit did: the outcomes (one per command, in order), the events other
/// writers had appended since this one last looked (folded into the write model before
/// deciding), and the events it appended.
struct Committed {
    outcomes: Vec<Outcome>,
    caught_up: Vec<Envelope>,
    appended: Vec<Envelope>,
}

/// Folds into the write model the events other writers appended up to `head` (on an engine
/// several processes write), and reloads the boundary records they wrote with them. Nothing
/// to do when this writer is the only one.
fn catch_up(
    shared: &Shared,
    model: &mut WriteModel,
    stats: &mut LogStats,
    head: Head,
) -> Result<Vec<Envelope>, LedgerError> {
    if head.seq == model.head_seq {
        return Ok(Vec::new());
    }
    if head.seq < model.head_seq {
        return Err(corrupt(
            head.seq,
            format!("the log's head went back from seq {} to seq {}", model.head_seq, head.seq),
        ));
    }
    let mut events = Vec::new();
    try_for_each_envelope(&*shared.log, model.head_seq + 1, |env| {
        if env.seq > head.seq {
            return Ok(ControlFlow::Break(()));
        }
        model.apply(&env)?;
        events.push(env);
        Ok(ControlFlow::Continue(()))
    })?;
    if model.head_seq != head.seq {
        return Err(corrupt(model.head_seq + 1, format!("the log's head says seq {} but it is not stored", head.seq)));
    }
    let k = shared.config.checkpoint_every;
    if !stats.synced || events.iter().any(|e| e.seq % k == 0) {
        // Another writer wrote boundary records: read them as they are stored.
        install_bounds(shared, stored_bounds(&*shared.log, head.seq)?);
        *stats = LogStats::of(shared, model);
    } else {
        // No boundary crossed: the tail's bounds follow from the events alone, exactly as
        // their writer computed what it stored (`boundary_meta`), without reading it back
        // (a round trip per metadata record on a shared log, at every group commit).
        let (_, _, after) = boundary_meta(k, stats, &events);
        *shared.tail_min.lock().expect("tail lock") = after.tail_min;
        *shared.max_occurred.lock().expect("max lock") = Some(after.max_occurred);
        *stats = after;
    }
    Ok(events)
}

/// Folds committed batches into the projections at the head, in order, and writes their
/// checkpoints. Checkpoints are a cache of the log: failing to write one costs speed, not
/// correctness (the head state is dropped and queries load it again from the log).
fn projector_loop(shared: Arc<Shared>, rx: std::sync::mpsc::Receiver<Vec<Envelope>>) {
    /// Marks the projector stopped however the thread ends, so no query waits for it.
    struct Running<'a>(&'a Shared);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.projector_running.store(false, Ordering::SeqCst);
            let _folded = self.0.folded.lock();
            self.0.folded_cv.notify_all();
        }
    }
    let _running = Running(&shared);
    for batch in rx {
        if let Err(e) = fold_into_projections(&shared, &batch) {
            tracing::warn!("projection checkpoint not written: {e}");
            *shared.current.write().expect("current lock") = None;
        }
        let last = batch.last().map_or(0, |e| e.seq);
        let mut folded = shared.folded.lock().expect("folded lock");
        *folded = (*folded).max(last);
        shared.folded_cv.notify_all();
    }
}

/// Folds appended events into the shared head state that queries read, and writes the
/// checkpoints due at boundaries.
fn fold_into_projections(shared: &Shared, pending: &[Envelope]) -> Result<(), LedgerError> {
    let store = &*shared.log;
    let k = shared.config.checkpoint_every;
    // (projection, seq, encoded state): encoded under the lock (the state must be exactly at
    // the boundary), named and written after.
    let mut due: Vec<(&'static str, Seq, Vec<u8>)> = Vec::new();
    {
        let mut slot = shared.current.write().expect("current lock");
        let before = pending[0].seq - 1;
        let balances_every = checkpoint_interval::<Balances>(&shared.config);
        let at_boundary = pending.iter().any(|e| e.seq % k == 0 || e.seq % balances_every == 0);
        if !at_boundary && slot.as_ref().is_none_or(|c| c.balances.last_seq() != before) {
            // No checkpoint is due and no query holds the head state: nothing to fold into
            // (the next query loads it; one `custos deposit` never pays for it).
            *slot = None;
            return Ok(());
        }
        if slot.as_ref().is_none_or(|c| c.balances.last_seq() != before) {
            // Everything up to the batch is on disk already; start from the state before it.
            *slot = Some(load_current_until(shared, before)?);
        }
        let c = slot.as_mut().expect("loaded");
        for env in pending {
            c.balances.apply(env, Timestamp::MAX)?;
            c.losses.apply(env, Timestamp::MAX)?;
            c.max_occurred = c.max_occurred.max(env.occurred_at);
            if env.seq % checkpoint_interval::<Balances>(&shared.config) == 0 {
                due.push((Balances::NAME, env.seq, checkpoint_value(&c.balances)));
            }
            if env.seq % k == 0 {
                due.push((Losses::NAME, env.seq, checkpoint_value(&c.losses)));
            }
            if let Some(block) = collect_loss_block(&mut c.loss_since, &mut c.loss_events, env, k) {
                due.push((LOSS_BLOCK, env.seq, block));
            }
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    // Into the generations active now: a rebuild swaps them while holding this lock.
    let _generations = shared.generation_lock.lock().expect("generation lock");
    let mut put = Vec::new();
    for (name, version) in [(Balances::NAME, Balances::SCHEMA_VERSION), (Losses::NAME, Losses::SCHEMA_VERSION)] {
        let generation = match active_generation(store, name)? {
            Some(g) => g,
            None => {
                let mut v = 1u64.to_be_bytes().to_vec();
                v.extend_from_slice(&version.to_be_bytes());
                put.push((active_name(name), v));
                1
            }
        };
        for (_, seq, bytes) in due.iter_mut().filter(|(n, _, _)| *n == name) {
            put.push((format!("{}{seq:020}", checkpoint_prefix(name, generation)), std::mem::take(bytes)));
        }
        if name == Losses::NAME {
            for (_, seq, bytes) in due.iter_mut().filter(|(n, _, _)| *n == LOSS_BLOCK) {
                put.push((loss_block_name(generation, *seq), std::mem::take(bytes)));
            }
        }
    }
    store.write_meta(put, vec![])?;
    store.sync()?;
    Ok(())
}

/// The projections as of `seq` (used when the projector starts mid-way).
fn load_current_until(shared: &Shared, seq: Seq) -> Result<Current, LedgerError> {
    let store = &*shared.log;
    let mut balances: Balances = load_checkpoint(shared, seq)?.unwrap_or_default();
    let mut losses: Losses = load_checkpoint(shared, seq)?.unwrap_or_default();
    let boundaries = shared.boundaries.read().expect("boundaries lock").clone();
    let from = balances.last_seq().min(losses.last_seq());
    // Unknown (so never "after everything") while the boundary records are incomplete.
    let mut max_occurred = if shared.bounds_damaged.load(Ordering::SeqCst) {
        Timestamp::MAX
    } else {
        boundaries.iter().rev().find(|b| b.seq <= from).map_or(Timestamp::MIN, |b| b.max_occurred)
    };
    // The loss events since the last boundary at or before `seq`, for the next loss block:
    // every event after it passes through this fold (`from` is a checkpoint's seq, at or before
    // that boundary).
    let k = shared.config.checkpoint_every;
    let loss_since = seq - seq % k;
    let mut loss_events = Vec::new();
    try_for_each_envelope(store, from + 1, |env| {
        if env.seq > seq {
            return Ok(ControlFlow::Break(()));
        }
        if env.seq > balances.last_seq() {
            balances.apply(&env, Timestamp::MAX)?;
        }
        if env.seq > losses.last_seq() {
            losses.apply(&env, Timestamp::MAX)?;
        }
        max_occurred = max_occurred.max(env.occurred_at);
        if env.seq > loss_since && env.loss_time().is_some() {
            loss_events.push(env);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    // Should `from` ever be after that boundary, the block is not written (never incomplete).
    let loss_since = loss_since.max(from);
    Ok(Current { balances, losses, max_occurred, loss_since, loss_events })
}

/// Decides commands against a private copy of the write model without appending anything:
/// `import --strict` checks a whole file this way before appending any of it.
pub struct DryRun<'a> {
    ledger: &'a Ledger,
    model: WriteModel,
    pending: HashMap<Seq, Envelope>,
    prev_hash: Hash,
    now: Timestamp,
}

impl<'a> DryRun<'a> {
    pub fn new(ledger: &'a Ledger) -> Result<DryRun<'a>, LedgerError> {
        let head = ledger.head();
        Ok(DryRun {
            ledger,
            model: load_write_model(ledger.store())?,
            pending: HashMap::new(),
            prev_hash: head.hash,
            now: Timestamp::now(),
        })
    }

    /// Decides `command` as if everything checked before it had been appended.
    pub fn check(&mut self, command: &Command) -> Result<Result<(), Rejection>, LedgerError> {
        let existing = match self.model.id_candidate(&command.id) {
            Some(seq) => match self.pending.get(&seq) {
                Some(env) => Some(env.clone()),
                None => read_envelope(self.ledger.store(), seq)?,
            },
            None => None,
        };
        match self.model.decide(command, existing.as_ref(), self.now) {
            Ok(Decision::Append(new)) => {
                let seq = self.model.head_seq + 1;
                let (env, _) = new.seal(seq, &self.prev_hash);
                self.prev_hash = env.hash;
                self.model.apply(&env).expect("an event the model just decided applies to it");
                self.pending.insert(seq, env);
                Ok(Ok(()))
            }
            Ok(Decision::Duplicate { .. }) => Ok(Ok(())),
            Err(r) => Ok(Err(r)),
        }
    }
}
