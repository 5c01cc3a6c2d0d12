//! The Custos log on sled 0.34. The only crate that knows sled.
//!
//! It stores opaque, already-encoded records (the ledger crate encodes and hash-chains them) in
//! seq order, keeps the indexes it is handed, and makes every append durable before it returns:
//! one `apply_batch` for the records, every index entry and the new head (atomic), then sled's
//! `flush()`, then an `fsync` of sled's data file, because sled's flush ends in
//! `sync_file_range`, which does not flush the disk's write cache or the file's metadata
//! (sled issue 1452).

pub mod layout;
mod lock;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use custos_domain::Seq;

use custos_domain::{Envelope, EventId, StreamId, Timestamp};
use custos_log::{
    failpoint, index_entries, AppendBatch, AppendStats, Head, HeadLock, IndexEntry, IndexFinding, IndexKey, IndexKind,
    Log, LogError, TimeIndex,
};
use layout::*;

/// The store's own errors; the [`Log`] implementation answers them as [`LogError`]s.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the log's head moved to seq {found} while a batch for seq {expected} was being written")]
    Conflict { expected: Seq, found: Seq },
    #[error("the ledger at {dir} is held by {holder}")]
    Locked { dir: PathBuf, holder: String },
    /// The disk or the file system failed (a full device, a read error, a missing file). What
    /// was being done is in `what`.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the ledger at {dir} has layout version {found}; this build reads version {expected}")]
    LayoutVersion { dir: PathBuf, found: u32, expected: u32 },
    /// Stored data that breaks a rule of the layout; `seq` names the event when it is known.
    #[error("corruption{}: {what}", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Corruption { seq: Option<Seq>, what: String },
}

impl From<StoreError> for LogError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { expected, found } => LogError::Conflict { expected, found },
            StoreError::Locked { dir, holder } => {
                LogError::Locked { location: format!("the ledger at {}", dir.display()), holder }
            }
            StoreError::Io { what, source } => LogError::Io { what, source },
            StoreError::LayoutVersion { dir, found, expected } => LogError::Version {
                location: format!("the ledger at {}", dir.display()),
                what: "layout",
                found,
                expected,
            },
            StoreError::Corruption { seq, what } => LogError::Corruption { seq, what },
        }
    }
}

impl StoreError {
    fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corruption { seq: None, what: what.into() }
    }
}

/// sled's errors, in the store's terms (nothing outside this crate sees sled's types).
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled turns its own corruption into an IO error on some paths, with its Debug
            // form (and an empty backtrace) as the message: reported as the corruption it is.
            sled::Error::Io(source) if source.to_string().contains("Corruption {") => {
                StoreError::corrupt(format!("sled found damaged data: {}", without_backtrace(&source.to_string())))
            }
            sled::Error::Io(source) => StoreError::Io { what: "the embedded store (sled) failed".into(), source },
            sled::Error::Corruption { at, .. } => StoreError::corrupt(format!(
                "sled found a damaged page{}",
                at.map(|a| format!(" at {a:?}")).unwrap_or_default()
            )),
            other => StoreError::Io {
                what: "the embedded store (sled) failed".into(),
                source: std::io::Error::other(without_backtrace(&other.to_string())),
            },
        }
    }
}

/// sled's messages without the backtrace it prints when it has none (`backtrace ()`,
/// `bt: ()`): noise to an operator.
fn without_backtrace(message: &str) -> String {
    message.replace(" backtrace ()", "").replace(", bt: ()", "")
}

/// Beside sled, in the ledger's folder: created with the store, then holding the last seq an
/// append made durable (written after its fsync, not fsynced itself: it may lag, never lead).
/// sled recovers from damaged files by dropping what it cannot read, silently; a store that
/// opens behind this file (or empty while it exists) lost acknowledged events.
const ACKED_FILE: &str = "custos.acked";

/// `ACKED_FILE`'s content: a tag, the seq, and a check of the seq (a torn write reads as
/// unknown, never as another seq).
fn acked_record(seq: Seq) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(b"custos:1");
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    out[16..].copy_from_slice(&fnv64(&seq.to_be_bytes()).to_be_bytes());
    out
}

fn parse_acked(bytes: &[u8]) -> Option<Seq> {
    let seq = Seq::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes.len() == 24 && acked_record(seq)[..] == *bytes).then_some(seq)
}

/// Opens sled. sled 0.34 panics on some damaged files instead of answering an error; that is
/// caught here (no panic may reach a user) and reported as corruption.
fn open_sled(path: &Path) -> Result<sled::Db> {
    let config = sled::Config::new().path(path).cache_capacity(128 << 20);
    // The default hook would print the panic as if it were a bug of ours; it is the files'.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
    std::panic::set_hook(hook);
    match opened {
        Ok(db) => Ok(db?),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(StoreError::corrupt(format!("sled cannot read its files in {} ({why})", path.display())))
        }
    }
}

/// Opens sled once this process holds the ledger's lock file. sled then cannot be held by
/// another process, only by this one's previous handle of the same store, whose IO threads
/// can still hold sled's file lock for a moment after it was dropped (seen in CI under load:
/// a restart in the model test failed with sled's "could not acquire lock"): wait for them,
/// up to `SLED_RELEASE_WAIT`.
fn open_sled_held(path: &Path) -> Result<sled::Db> {
    let started = Instant::now();
    loop {
        match open_sled(path) {
            Err(StoreError::Io { source, .. })
                if source.to_string().contains("could not acquire lock") && started.elapsed() < SLED_RELEASE_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// How long an open waits for this process's previous handle of a store to let go of it.
const SLED_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `StoreError::Io` saying what was being done.
fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
struct Segment {
    id: u64,
    last_seq: Seq,
    entries: u64,
    /// The first entry of each page, in order: finding the page that holds a key is a binary
    /// search here and one `get`, never a reverse scan of sled (slow in 0.34).
    pages: Vec<(u64, Seq)>,
    /// Where the pages are when not in sled (see `SEGMENT_FILE_ENTRIES_MIN`).
    file: Option<SegmentFile>,
}

/// An index page as read: sled's buffer as sled hands it out (no copy on the lookup path), or
/// the bytes read from a segment file.
enum Page {
    Sled(sled::IVec),
    File(Vec<u8>),
}

impl std::ops::Deref for Page {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Page::Sled(v) => v,
            Page::File(v) => v,
        }
    }
}

/// A segment's pages in a file: its pointer, an open handle, and each page's checksum.
#[derive(Debug, Clone)]
struct SegmentFile {
    pointer: FilePointer,
    handle: Arc<File>,
    checksums: Arc<Vec<u64>>,
}

pub struct Store {
    dir: PathBuf,
    /// sled, reopened after an IO fault (sled keeps failing every write after one until it is
    /// opened again); `None` while that is under way.
    db: RwLock<Option<sled::Db>>,
    /// Where large metadata values live (see `META_FILE_BYTES_MIN`), one file each, named by
    /// a hexadecimal id that is never reused.
    files: PathBuf,
    next_file: std::sync::atomic::AtomicU64,
    data_file: File,
    /// `ACKED_FILE`, rewritten after every durable append.
    acked: File,
    head: Mutex<Head>,
    /// Segment directory per index kind, ordered by id. Readers hold it shared while they walk
    /// segments so that a merge (which holds it exclusively) is never seen half done.
    segments: RwLock<[Vec<Segment>; INDEX_KINDS]>,
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Held while merging segments: one merge at a time.
    compacting: Mutex<()>,
    /// Held by the one writer that may append (see [`Log::lock_head`]).
    append_lock: Mutex<()>,
    notices: Mutex<Vec<String>>,
    /// What was found damaged and repaired from the log when this handle opened the store.
    repaired: Mutex<Vec<String>>,
    _lock: lock::ProcessLock,
}

/// Present once the loss-time index covers the whole log.
const LOSS_INDEX: &str = "index/loss_time";

/// Free space the disk must have before sled is reopened after a fault: reopening sled while
/// the disk was still full damaged its files in a test ("sled found a damaged page" on every
/// later open), so [`Log::recover`] waits for room rather than try.
const RECOVERY_FREE_BYTES_MIN: u64 = 8 << 20;

/// The number of index kinds.
const INDEX_KINDS: usize = IndexKind::ALL.len();

/// Segments of one size class merged at a time (and the base of the classes). 8 rather than 4:
/// on a 1M-event import the merges rewrite each entry about twice instead of three times (import
/// ~3.6 s -> ~3.2 s); a lookup reads at most 7 pages per class (3 classes at 1M entries).
const SEGMENT_MERGE_RATIO: u64 = 8;

/// Keys removed per batch when clearing a metadata prefix.
const REMOVE_BATCH_KEYS: usize = 1024;

/// Chunks read per window of a scan (~64 x 6 KiB x 64 events).
const SCAN_WINDOW_CHUNKS: usize = 64;

/// `SEGMENT_FILE_ENTRIES_MIN`, or `CUSTOS_SEGMENT_FILE_ENTRIES_MIN` when set: the crash suite
/// lowers it so that a small storm merges segment files (any value gives the same index).
fn segment_file_entries_min() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("CUSTOS_SEGMENT_FILE_ENTRIES_MIN")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(SEGMENT_FILE_ENTRIES_MIN)
    })
}

fn kind_slot(kind: IndexKind) -> usize {
    IndexKind::ALL.iter().position(|k| *k == kind).expect("known kind")
}

impl Store {
    /// Opens (creating if needed) the ledger in `dir`. `holder` says who is opening it, recorded so
    /// that a second process is told who holds the ledger.
    pub fn open(dir: &Path, holder: &str) -> Result<Store> {
        let what = format!("cannot open the ledger at {}", dir.display());
        let io = |source| StoreError::Io { what: what.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = lock::ProcessLock::acquire(dir, holder).map_err(|e| match e {
            lock::LockError::Held { holder } => StoreError::Locked { dir: dir.to_path_buf(), holder },
            lock::LockError::Io(e) => io(e),
        })?;
        let db = open_sled_held(&dir.join("sled"))?;
        let data_file = File::open(dir.join("sled").join("db")).map_err(io)?;
        let marker = dir.join(ACKED_FILE);
        let created = marker.exists();
        match db.get(KEY_LAYOUT)? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_ref().try_into().map_err(|_| StoreError::corrupt("layout version record is not 4 bytes"))?,
                );
                if found < LAYOUT_VERSION {
                    db.insert(KEY_LAYOUT, &LAYOUT_VERSION.to_be_bytes())?;
                } else if found != LAYOUT_VERSION {
                    return Err(StoreError::LayoutVersion { dir: dir.to_path_buf(), found, expected: LAYOUT_VERSION });
                }
            }
            None if created => {
                // sled recovers from damaged files by dropping what it cannot read, down to an
                // empty store; this ledger was created here, so its log is gone, not new.
                return Err(StoreError::corrupt(format!(
                    "the embedded store in {} holds no ledger, but one was created here ({} exists): its files are damaged or were replaced; restore them from a backup",
                    dir.join("sled").display(),
                    marker.display()
                )));
            }
            None => {
                db.insert(KEY_LAYOUT, &LAYOUT_VERSION.to_be_bytes())?;
                db.flush()?;
                data_file.sync_all().map_err(io)?;
            }
        }
        if !created {
            // After the layout record is durable: a crash in between leaves a ledger without
            // the marker, which the next open writes.
            File::create(&marker).and_then(|f| f.sync_all()).map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let acked = std::fs::OpenOptions::new().read(true).write(true).open(&marker).map_err(io)?;
        let head = match db.get(KEY_HEAD)? {
            Some(v) => decode_head(&v).ok_or_else(|| StoreError::corrupt("head record is malformed"))?,
            None => {
                if db.scan_prefix([PREFIX_CHUNK]).next().is_some() {
                    return Err(StoreError::corrupt("events are stored but the head record is missing"));
                }
                Head::EMPTY
            }
        };
        let acked_seq = std::fs::read(&marker).ok().and_then(|b| parse_acked(&b));
        if let Some(acked_seq) = acked_seq.filter(|a| *a > head.seq) {
            return Err(StoreError::corrupt(format!(
                "the log in {} ends at seq {}, but seq {acked_seq} was acknowledged ({} says so): sled dropped events it could not read from damaged files; restore them from a backup",
                dir.join("sled").display(),
                head.seq,
                marker.display()
            )));
        }
        let files = dir.join("files");
        let (segments, damaged) = load_segments(&db, &files)?;
        if !files.exists() {
            std::fs::create_dir_all(&files).map_err(io)?;
            // The folder's own entry is durable before any file in it is pointed at.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let mut last_file = 0u64;
        for entry in std::fs::read_dir(&files).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if let Some(id) = name.to_str().and_then(|n| u64::from_str_radix(n, 16).ok()) {
                last_file = last_file.max(id);
            }
        }
        let store = Store {
            dir: dir.to_path_buf(),
            db: RwLock::new(Some(db)),
            files,
            next_file: std::sync::atomic::AtomicU64::new(last_file + 1),
            data_file,
            acked,
            head: Mutex::new(head),
            segments: RwLock::new(segments),
            synced_blobs: Mutex::new(HashSet::new()),
            compacting: Mutex::new(()),
            append_lock: Mutex::new(()),
            notices: Mutex::new(Vec::new()),
            repaired: Mutex::new(Vec::new()),
            _lock: lock,
        };
        // A file id is never handed out again while a pointer names it, even if its file is
        // gone (a new file under that id would be removed as the old one).
        let referenced = store.referenced_files()?;
        if let Some(max) = referenced.iter().max() {
            store.next_file.fetch_max(max + 1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut rebuilt = HashSet::new();
        for (kind, why) in damaged {
            if rebuilt.insert(kind_slot(kind)) {
                let n = store.rebuild_index(kind)?;
                let text = format!("rebuilt the {} index from the log ({n} entries): {why}", kind.name());
                store.repaired.lock().expect("repairs lock").push(text.clone());
                store.notice(text);
            }
        }
        store.ensure_loss_index()?;
        let removed = store.remove_unreferenced_files()?;
        if removed > 0 {
            store.notice(format!(
                "removed {removed} checkpoint or index file(s) nothing pointed at (left by an interrupted write)"
            ));
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn notice(&self, text: String) {
        self.notices.lock().expect("notices lock").push(text);
    }

    /// Logs written before the loss-time index existed get it now, from one scan of the log,
    /// in one atomic step with the record that says it is there.
    fn ensure_loss_index(&self) -> Result<()> {
        if self.get_meta(LOSS_INDEX)?.is_some() {
            return Ok(());
        }
        let entries = self.entries_from_log(IndexKind::LossTime)?;
        let head = self.head().seq;
        let n = entries.len();
        self.add_index(IndexKind::LossTime, entries, vec![(LOSS_INDEX.to_string(), vec![1])])?;
        if head > 0 {
            self.notice(format!(
                "built the loss-time index of this ledger ({n} entries from {head} events; written before it existed)"
            ));
        }
        Ok(())
    }

    /// Whether `dir` holds a store (the folder layout is this crate's business alone).
    pub fn exists(dir: &Path) -> bool {
        dir.join("sled").exists()
    }

    /// The sled handle (a reference count).
    fn db(&self) -> Result<sled::Db> {
        self.db.read().expect("db lock").clone().ok_or_else(|| StoreError::Io {
            what: format!("the store in {} is being reopened after an IO fault", self.dir.display()),
            source: std::io::Error::other("not open"),
        })
    }

    /// Bytes free for this store on its file system.
    pub fn free_bytes(&self) -> Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).map_err(|e| StoreError::Io {
            what: format!("the path {} has a NUL byte", self.dir.display()),
            source: std::io::Error::other(e),
        })?;
        // SAFETY: statvfs with a valid C string and a zeroed struct it fills.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(StoreError::Io {
                what: format!("cannot ask for the free space of {}", self.dir.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }

    /// Opens sled again after an IO fault (a full disk, say): sled fails every write after one
    /// until it is reopened. Reloads the head and the index segments from what is on disk
    /// (a batch whose outcome was unknown may or may not be there). Fails, leaving the store
    /// to be reopened again later, while sled cannot open (the fault persists, or a reader
    /// still holds the old handle).
    pub fn reopen(&self) -> Result<Head> {
        let mut segments = self.segments.write().expect("segments lock");
        let mut slot = self.db.write().expect("db lock");
        drop(slot.take());
        let db = open_sled(&self.dir.join("sled"))?;
        let head = match db.get(KEY_HEAD)? {
            Some(v) => decode_head(&v).ok_or_else(|| StoreError::corrupt("head record is malformed"))?,
            None => Head::EMPTY,
        };
        let (loaded, damaged) = load_segments(&db, &self.dir.join("files"))?;
        if let Some((kind, why)) = damaged.first() {
            return Err(StoreError::corrupt(format!(
                "the {} index: {why} (open the ledger again to rebuild it)",
                kind.name()
            )));
        }
        *segments = loaded;
        *slot = Some(db);
        *self.head.lock().expect("head lock") = head;
        Ok(head)
    }

    pub fn head(&self) -> Head {
        *self.head.lock().expect("head lock")
    }

    /// Writes the batch atomically and returns once it is durable. The caller holds the
    /// append lock (see [`custos_log::Log::lock_head`]).
    fn append(&self, batch: AppendBatch) -> Result<AppendStats> {
        let started = Instant::now();
        let head = batch.head;
        let current = self.head().seq;
        if batch.first_seq != current + 1 || head.seq + 1 != batch.first_seq + batch.records.len() as u64 {
            return Err(StoreError::Conflict { expected: batch.first_seq.saturating_sub(1), found: current });
        }
        let mut sb = sled::Batch::default();
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut chunk_first = batch.first_seq;
        for (seq, record) in (batch.first_seq..).zip(batch.records) {
            if !chunk.is_empty() && (chunk.len() >= CHUNK_EVENTS_WRITE || chunk_bytes + record.len() > CHUNK_BYTES_MAX)
            {
                sb.insert(&chunk_key(chunk_first), encode_chunk(&chunk));
                chunk.clear();
                chunk_bytes = 0;
                chunk_first = seq;
            }
            chunk_bytes += record.len();
            chunk.push(record);
        }
        if !chunk.is_empty() {
            sb.insert(&chunk_key(chunk_first), encode_chunk(&chunk));
        }
        let mut by_kind: [Vec<(u64, Seq)>; INDEX_KINDS] = Default::default();
        for e in &batch.index {
            by_kind[kind_slot(e.key.kind())].push((key_of(&e.key), e.seq));
        }
        let mut new_segments = Vec::new();
        for (kind, mut entries) in IndexKind::ALL.into_iter().zip(by_kind) {
            if entries.is_empty() {
                continue;
            }
            entries.sort_unstable();
            let id = entries.iter().map(|e| e.1).min().expect("non-empty");
            let last_seq = entries.iter().map(|e| e.1).max().expect("non-empty");
            let pages = write_segment(&mut sb, kind, id, last_seq, &entries, None);
            new_segments.push((kind, Segment { id, last_seq, entries: entries.len() as u64, pages, file: None }));
        }
        sb.insert(KEY_HEAD, &encode_head(&head)[..]);
        for (name, value) in batch.meta {
            // Parts of a previous, longer value would survive; appends only write fixed-size meta.
            insert_meta(&mut sb, &name, &value);
        }
        {
            let mut dir = self.segments.write().expect("segments lock");
            failpoint("append:before-batch");
            self.db()?.apply_batch(sb)?;
            failpoint("append:after-batch");
            for (kind, seg) in new_segments {
                dir[kind_slot(kind)].push(seg);
            }
        }
        let written = Instant::now();
        let stats = self.sync_timed(started, written, ("append:after-flush", "append:after-fsync"))?;
        *self.head.lock().expect("head lock") = head;
        // Best effort: a lost write only weakens the check on open, never fails it.
        use std::os::unix::fs::FileExt;
        let _ = self.acked.write_at(&acked_record(head.seq), 0);
        Ok(stats)
    }

    /// Flushes and fsyncs, passing the two failpoints named.
    fn sync_timed(&self, started: Instant, written: Instant, points: (&str, &str)) -> Result<AppendStats> {
        self.db()?.flush()?;
        failpoint(points.0);
        let flushed = Instant::now();
        self.fsync()?;
        failpoint(points.1);
        let synced = Instant::now();
        Ok(AppendStats {
            write_us: (written - started).as_micros() as u64,
            flush_us: (flushed - written).as_micros() as u64,
            fsync_us: (synced - flushed).as_micros() as u64,
        })
    }

    /// Flushes sled and fsyncs its data file (and any blob files sled wrote), so that everything
    /// written so far survives power loss.
    pub fn sync(&self) -> Result<()> {
        let now = Instant::now();
        self.sync_timed(now, now, ("sync:after-flush", "sync:after-fsync")).map(|_| ())
    }

    fn fsync(&self) -> Result<()> {
        let what = format!("cannot fsync the log in {}", self.dir.display());
        let io = |source| StoreError::Io { what: what.clone(), source };
        self.data_file.sync_all().map_err(io)?;
        // sled writes values over its blob threshold to files it never fsyncs. The layout keeps
        // every value below that threshold, but if one ever lands there it is made durable too.
        let blobs = self.dir.join("sled").join("blobs");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            let mut synced = self.synced_blobs.lock().expect("blob set lock");
            let mut any = false;
            for entry in entries.flatten() {
                if synced.insert(entry.file_name()) {
                    if let Ok(f) = File::open(entry.path()) {
                        f.sync_all().map_err(io)?;
                        any = true;
                    }
                }
            }
            if any {
                File::open(&blobs).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Merges index segments so there are O(log n) of them, tiered: a segment's class is
    /// floor(log8(entries)); classes never increase from the oldest segment to the newest (a
    /// newest segment bigger than the one before it absorbs it), and `SEGMENT_MERGE_RATIO`
    /// segments of one class are merged into one of a higher class. Each entry is rewritten about
    /// once per class it climbs (log8 of the index's size over a commit's), and a lookup visits at
    /// most `SEGMENT_MERGE_RATIO - 1` segments per class. Merging rewrites pages but never changes
    /// what the index says, so it need not be durable before it returns.
    ///
    /// Appends do not merge: the caller runs this after appends, on any thread (the ledger has
    /// a compactor thread for it). Appends may land while it merges; a merge replaces exactly the
    /// segments it read, wherever they are by then.
    pub fn compact(&self) -> Result<()> {
        let _one_at_a_time = self.compacting.lock().expect("compaction lock");
        for kind in IndexKind::ALL {
            while let Some(run) = self.segments_to_merge(kind) {
                self.merge_segments(kind, &run)?;
            }
        }
        Ok(())
    }

    /// Adds an index that did not exist when the log was written (a later build's): writes
    /// `entries` (for events already in the log) as the first segment of `kind`, with `meta`,
    /// in one atomic batch, durably.
    fn add_index(&self, kind: IndexKind, mut entries: Vec<(u64, Seq)>, meta: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut dir = self.segments.write().expect("segments lock");
        assert!(dir[kind_slot(kind)].is_empty(), "the {} index already has segments", kind.name());
        let mut sb = sled::Batch::default();
        let mut segment = None;
        if !entries.is_empty() {
            entries.sort_unstable();
            let id = entries.iter().map(|e| e.1).min().expect("non-empty");
            let last_seq = entries.iter().map(|e| e.1).max().expect("non-empty");
            let file = self.write_segment_file(&entries)?;
            let pages = write_segment(&mut sb, kind, id, last_seq, &entries, file.as_ref().map(|f| &f.pointer));
            segment = Some(Segment { id, last_seq, entries: entries.len() as u64, pages, file });
        }
        for (name, value) in meta {
            insert_meta(&mut sb, &name, &value);
        }
        self.db()?.apply_batch(sb)?;
        dir[kind_slot(kind)].extend(segment);
        drop(dir);
        self.sync()
    }

    /// The trailing segments of `kind` that are due to be merged, if any.
    fn segments_to_merge(&self, kind: IndexKind) -> Option<Vec<Segment>> {
        let dir = self.segments.read().expect("segments lock");
        let segs = &dir[kind_slot(kind)];
        let n = segs.len();
        let class = |s: &Segment| s.entries.max(1).ilog(SEGMENT_MERGE_RATIO);
        if n >= 2 && class(&segs[n - 1]) > class(&segs[n - 2]) {
            return Some(segs[n - 2..].to_vec());
        }
        let c = class(segs.last()?);
        let same = segs.iter().rev().take_while(|s| class(s) == c).count();
        (same as u64 >= SEGMENT_MERGE_RATIO).then(|| segs[n - same..].to_vec())
    }

    /// Replaces `run` (the trailing segments of `kind`, oldest first) with one segment holding
    /// all their entries, under the oldest one's id, in one atomic batch.
    fn merge_segments(&self, kind: IndexKind, run: &[Segment]) -> Result<()> {
        let mut merged = Vec::with_capacity(run.iter().map(|s| s.entries as usize).sum());
        for seg in run {
            merged.extend(self.segment_entries(kind, seg)?);
        }
        // Sorted runs one after another: the stable sort finds and merges them in O(n log runs).
        merged.sort();
        let file = self.write_segment_file(&merged)?;
        let mut sb = sled::Batch::default();
        let mut old_files = Vec::new();
        for seg in run {
            match &seg.file {
                Some(f) => {
                    old_files.push(f.pointer.id);
                    sb.remove(&dir_part_key(kind, seg.id, SEGMENT_FILE_PART));
                }
                None => {
                    for first in &seg.pages {
                        sb.remove(&page_key(kind, seg.id, *first));
                    }
                }
            }
            for part in 0..seg.pages.len().div_ceil(DIR_PART_ENTRIES) {
                sb.remove(&dir_part_key(kind, seg.id, part as u32));
            }
            sb.remove(&segment_key(kind, seg.id));
        }
        let id = run[0].id;
        let last_seq = run.iter().map(|s| s.last_seq).max().expect("a run is not empty");
        let pages = write_segment(&mut sb, kind, id, last_seq, &merged, file.as_ref().map(|f| &f.pointer));
        {
            let mut dir = self.segments.write().expect("segments lock");
            self.db()?.apply_batch(sb)?;
            failpoint("merge:after-batch");
            let segs = &mut dir[kind_slot(kind)];
            let at = segs.iter().position(|s| s.id == id).expect("only compaction removes segments");
            debug_assert!(segs[at..at + run.len()].iter().zip(run).all(|(a, b)| a.id == b.id), "the run is intact");
            segs.splice(at..at + run.len(), [Segment { id, last_seq, entries: merged.len() as u64, pages, file }]);
        }
        if !old_files.is_empty() {
            failpoint("merge:before-file-remove");
            // The batch that stopped pointing at them is durable before they go: a crash
            // would otherwise bring back pointers to removed files.
            self.sync()?;
            self.remove_meta_files(&old_files);
        }
        Ok(())
    }

    /// For `entries` (sorted) of at least `SEGMENT_FILE_ENTRIES_MIN`, their segment file,
    /// written durably (data and directory entry) and opened; `None` for fewer (they stay in
    /// sled).
    fn write_segment_file(&self, entries: &[(u64, Seq)]) -> Result<Option<SegmentFile>> {
        if entries.len() < segment_file_entries_min() {
            return Ok(None);
        }
        let bytes = encode_segment_file(entries);
        let pointer = self.write_meta_file(&bytes)?;
        File::open(&self.files)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("cannot sync {}", self.files.display())))?;
        let path = self.meta_file_path(pointer.id);
        let handle = File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
        let checksums = decode_checksums(&bytes[entries.len() * 16..]);
        Ok(Some(SegmentFile { pointer, handle: Arc::new(handle), checksums: Arc::new(checksums) }))
    }

    /// Page `i` of `seg`, from sled or from its file (checked against its checksum).
    fn read_page(&self, kind: IndexKind, seg: &Segment, i: usize) -> Result<Page> {
        let Some(f) = &seg.file else {
            let v = self.db()?.get(page_key(kind, seg.id, seg.pages[i]))?.ok_or_else(|| {
                StoreError::corrupt(format!("{} index page of segment {} is missing", kind.name(), seg.id))
            })?;
            return Ok(Page::Sled(v));
        };
        use std::os::unix::fs::FileExt;
        let start = i * PAGE_BYTES;
        let end = (start + PAGE_BYTES).min(seg.entries as usize * 16);
        let mut page = vec![0u8; end - start];
        let path = || self.meta_file_path(f.pointer.id);
        f.handle.read_exact_at(&mut page, start as u64).map_err(io_err(format!(
            "cannot read the {} index from {}",
            kind.name(),
            path().display()
        )))?;
        // The checksum is the file's own; the first entry is the directory's (in sled), so a
        // page of another file of the same length is refused too.
        let starts_right =
            decode_page(page.get(..16).unwrap_or_default()).and_then(|mut p| p.next()) == Some(seg.pages[i]);
        if page_checksum(&page) != f.checksums[i] || !starts_right {
            return Err(StoreError::corrupt(format!(
                "page {i} of the {} index in {} does not match its checksum or its directory (the index is derived from the log: `custos rebuild` rebuilds it)",
                kind.name(),
                path().display()
            )));
        }
        Ok(Page::File(page))
    }

    fn segment_entries(&self, kind: IndexKind, seg: &Segment) -> Result<Vec<(u64, Seq)>> {
        if let Some(f) = &seg.file {
            let bytes = self.read_meta_file(&format!("the {} index segment {}", kind.name(), seg.id), f.pointer)?;
            let entries = bytes.get(..seg.entries as usize * 16).and_then(decode_page).ok_or_else(|| {
                StoreError::corrupt(format!("the {} index segment {} is shorter than its entries", kind.name(), seg.id))
            })?;
            return Ok(entries.collect());
        }
        let id = seg.id;
        let mut out = Vec::new();
        for item in self.db()?.scan_prefix(page_prefix(kind, id)) {
            let (k, v) = item?;
            let page = decode_page(&v).ok_or_else(|| {
                StoreError::corrupt(format!("{} index page {:?} is not a whole number of entries", kind.name(), k))
            })?;
            out.extend(page);
        }
        Ok(out)
    }

    /// Every seq the index maps `key` to, ascending.
    pub fn index_get(&self, kind: IndexKind, key: u64) -> Result<Vec<Seq>> {
        Ok(self.index_range(kind, key, key)?.into_iter().map(|(_, s)| s).collect())
    }

    /// Every `(key, seq)` with `lo <= key <= hi`, sorted by key then seq.
    pub fn index_range(&self, kind: IndexKind, lo: u64, hi: u64) -> Result<Vec<(u64, Seq)>> {
        let mut out = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        let dir = self.segments.read().expect("segments lock");
        for seg in &dir[kind_slot(kind)] {
            // The page that may hold `lo` is the last one starting at or before it.
            let start = seg.pages.partition_point(|first| *first <= (lo, 0)).saturating_sub(1);
            let n = seg.pages[start..].iter().take_while(|first| first.0 <= hi).count();
            for i in start..start + n {
                let v = self.read_page(kind, seg, i)?;
                let page = decode_page(&v)
                    .ok_or_else(|| StoreError::corrupt(format!("{} index page is malformed", kind.name())))?;
                out.extend(page.filter(|(key, _)| *key >= lo && *key <= hi));
            }
        }
        drop(dir);
        out.sort_unstable();
        Ok(out)
    }

    /// The whole index, sorted by key then seq.
    pub fn index_all(&self, kind: IndexKind) -> Result<Vec<(u64, Seq)>> {
        self.index_range(kind, 0, u64::MAX)
    }

    /// The whole index as `index_all`, with every segment file checked against its SHA-256
    /// (for verification).
    pub fn index_all_verified(&self, kind: IndexKind) -> Result<Vec<(u64, Seq)>> {
        let dir = self.segments.read().expect("segments lock");
        let mut out = Vec::new();
        for seg in &dir[kind_slot(kind)] {
            out.extend(self.segment_entries(kind, seg)?);
        }
        drop(dir);
        out.sort_unstable();
        Ok(out)
    }

    /// The stored record of `seq`, if it exists.
    pub fn record(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        if seq == 0 {
            return Ok(None);
        }
        // The chunk holding `seq` starts at most CHUNK_EVENTS_MAX - 1 seqs before it: a short
        // forward scan (sled 0.34's reverse iteration is slow) finds the last one that starts
        // at or before `seq`.
        let lo = seq.saturating_sub(CHUNK_EVENTS_MAX as u64 - 1);
        let mut found = None;
        for item in self.db()?.range(chunk_key(lo).to_vec()..=chunk_key(seq).to_vec()) {
            found = Some(item?);
        }
        let Some((k, v)) = found else {
            return Ok(None);
        };
        let first = chunk_first_seq(&k)?;
        let view = ChunkView::parse(&v).ok_or_else(|| chunk_corrupt(first))?;
        Ok(view.record((seq - first) as usize).map(<[u8]>::to_vec))
    }

    /// Calls `f(seq, record)` for every record from `from` on, in seq order, until it breaks.
    pub fn for_each_record(&self, from: Seq, mut f: impl FnMut(Seq, &[u8]) -> ControlFlow<()>) -> Result<()> {
        let from = from.max(1);
        // Start at the chunk holding `from`.
        let lo = from.saturating_sub(CHUNK_EVENTS_MAX as u64 - 1);
        let mut start = chunk_key(from).to_vec();
        for item in self.db()?.range(chunk_key(lo).to_vec()..=chunk_key(from).to_vec()) {
            start = item?.0.to_vec();
        }
        // Read a window of chunks, drop the iterator, then call `f`: a sled iterator pins its
        // epoch, and nothing sled replaces while one is alive is freed, so one iterator over a
        // whole scan that also writes (a rebuild writing checkpoints) grew to gigabytes.
        let end = chunk_key(u64::MAX).to_vec();
        loop {
            let window: Vec<(sled::IVec, sled::IVec)> =
                self.db()?.range(start.clone()..=end.clone()).take(SCAN_WINDOW_CHUNKS).collect::<Result<_, _>>()?;
            let Some((last_key, _)) = window.last() else { return Ok(()) };
            let next = chunk_first_seq(last_key)?.checked_add(1);
            for (k, v) in &window {
                let first = chunk_first_seq(k)?;
                let view = ChunkView::parse(v).ok_or_else(|| chunk_corrupt(first))?;
                for i in 0..view.len() {
                    let seq = first + i as u64;
                    if seq < from {
                        continue;
                    }
                    if f(seq, view.record(i).expect("in range")).is_break() {
                        return Ok(());
                    }
                }
            }
            match next {
                Some(n) if window.len() == SCAN_WINDOW_CHUNKS => start = chunk_key(n).to_vec(),
                _ => return Ok(()),
            }
        }
    }

    /// A metadata value (stored in parts of at most `META_PART_BYTES` bytes, reassembled here).
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let mut out: Option<Vec<u8>> = None;
        for item in self.db()?.scan_prefix(meta_part_prefix(name)) {
            let (k, v) = item?;
            if let Some(pointer) = file_pointer(&k, &v) {
                return self.read_meta_file(&format!("metadata {name}"), pointer?).map(Some);
            }
            out.get_or_insert_with(Vec::new).extend_from_slice(&v);
        }
        Ok(out)
    }

    fn meta_file_path(&self, id: u64) -> PathBuf {
        file_path(&self.files, id)
    }

    /// The value a file pointer stands for, checked against the length and hash it records.
    fn read_meta_file(&self, what: &str, p: FilePointer) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self.meta_file_path(p.id);
        let file = open_stored_file(&path, p.len, what)?;
        // Its length was checked before reading: never more than the pointer says is read.
        let mut bytes = Vec::with_capacity(p.len as usize);
        file.take(p.len)
            .read_to_end(&mut bytes)
            .map_err(io_err(format!("cannot read {what} from {}", path.display())))?;
        if bytes.len() as u64 != p.len || sha256(&bytes) != p.hash {
            return Err(StoreError::corrupt(format!(
                "{what}: {} does not match the length and SHA-256 recorded for it",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// Writes `value` to a new file, durably (data and directory entry) before anything can
    /// point at it; returns its pointer.
    fn write_meta_file(&self, value: &[u8]) -> Result<FilePointer> {
        use std::io::Write;
        let id = self.next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let what = format!("cannot write {}", self.meta_file_path(id).display());
        let io = |source| StoreError::Io { what: what.clone(), source };
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).open(self.meta_file_path(id)).map_err(io)?;
        f.write_all(value).map_err(io)?;
        failpoint("meta:after-file-write");
        f.sync_all().map_err(io)?;
        failpoint("meta:after-file-fsync");
        Ok(FilePointer { id, len: value.len() as u64, hash: sha256(value) })
    }

    /// Removes files under `files/` that no metadata value or index segment points at (left by a crash between
    /// writing a file and the batch that points at it, or between a batch that dropped a
    /// pointer and the file's removal); returns how many. Reads every metadata key: call it
    /// when metadata is small (checkpoints in files, old generations removed).
    pub fn remove_unreferenced_files(&self) -> Result<usize> {
        let what = format!("cannot sweep {}", self.files.display());
        let io = |source| StoreError::Io { what: what.clone(), source };
        // A merge's new segment file is unreferenced until its batch: none runs meanwhile.
        let _no_merge = self.compacting.lock().expect("compaction lock");
        // Taken before the scan: a file written meanwhile has a larger id and is left alone.
        let written_before = self.next_file.load(std::sync::atomic::Ordering::Relaxed);
        let referenced = self.referenced_files()?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.files).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some(id) = name.to_str().and_then(|n| u64::from_str_radix(n, 16).ok()) else { continue };
            if id < written_before && !referenced.contains(&id) {
                std::fs::remove_file(self.meta_file_path(id)).map_err(io)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The ids of every file a metadata value or an index segment points at.
    fn referenced_files(&self) -> Result<HashSet<u64>> {
        let mut referenced = HashSet::new();
        for item in self.db()?.scan_prefix([PREFIX_META]) {
            let (k, v) = item?;
            if let Some(p) = file_pointer(&k, &v) {
                referenced.insert(p?.id);
            }
        }
        for item in self.db()?.scan_prefix([PREFIX_SEGMENT]) {
            let (k, v) = item?;
            if k.len() == 14 && k.ends_with(&SEGMENT_FILE_PART.to_be_bytes()) {
                referenced.extend(FilePointer::decode(&v).map(|p| p.id));
            }
        }
        Ok(referenced)
    }

    /// The entries of index `kind` for every event in the log, from one scan of it.
    fn entries_from_log(&self, kind: IndexKind) -> Result<Vec<(u64, Seq)>> {
        let mut entries = Vec::new();
        let mut bad = None;
        self.for_each_record(1, |seq, record| match Envelope::decode(record) {
            Ok(env) => {
                entries.extend(
                    index_entries(&env).into_iter().filter(|e| e.key.kind() == kind).map(|e| (key_of(&e.key), e.seq)),
                );
                ControlFlow::Continue(())
            }
            Err(e) => {
                bad = Some(StoreError::Corruption { seq: Some(seq), what: e.to_string() });
                ControlFlow::Break(())
            }
        })?;
        bad.map_or(Ok(entries), Err)
    }

    /// Replaces every segment of `kind` with one built from a scan of the log, in one atomic
    /// batch, durably, then removes the files of the replaced segments; answers the entries.
    fn rebuild_index(&self, kind: IndexKind) -> Result<usize> {
        let _one_at_a_time = self.compacting.lock().expect("compaction lock");
        let mut entries = self.entries_from_log(kind)?;
        entries.sort_unstable();
        let mut sb = sled::Batch::default();
        // Everything stored for this kind, including segments left out when their file was
        // found damaged.
        let mut old_files = Vec::new();
        for item in self.db()?.scan_prefix([PREFIX_SEGMENT, tag(kind)]) {
            let (k, v) = item?;
            if k.len() == 14 && k.ends_with(&SEGMENT_FILE_PART.to_be_bytes()) {
                old_files.extend(FilePointer::decode(&v).map(|p| p.id));
            }
            sb.remove(k);
        }
        for item in self.db()?.scan_prefix([PREFIX_PAGE, tag(kind)]) {
            sb.remove(item?.0);
        }
        let segment = match (entries.first(), entries.iter().map(|e| e.1).max()) {
            (Some(_), Some(last_seq)) => {
                let id = entries.iter().map(|e| e.1).min().expect("non-empty");
                let file = self.write_segment_file(&entries)?;
                let pages = write_segment(&mut sb, kind, id, last_seq, &entries, file.as_ref().map(|f| &f.pointer));
                Some(Segment { id, last_seq, entries: entries.len() as u64, pages, file })
            }
            _ => None,
        };
        let mut dir = self.segments.write().expect("segments lock");
        self.db()?.apply_batch(sb)?;
        dir[kind_slot(kind)] = segment.into_iter().collect();
        drop(dir);
        self.sync()?;
        self.remove_meta_files(&old_files);
        Ok(entries.len())
    }

    /// Removes the files of metadata values no longer referenced (after the batch that dropped
    /// their pointers). A crash before this leaves an unreferenced file: garbage, never a
    /// wrong value.
    fn remove_meta_files(&self, ids: &[u64]) {
        for id in ids {
            let _ = std::fs::remove_file(self.meta_file_path(*id));
            failpoint("meta:after-file-remove");
        }
    }

    /// Metadata names starting with `prefix`, in name order.
    pub fn list_meta(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for item in self.db()?.scan_prefix(meta_key(prefix)) {
            let (k, _) = item?;
            let name_end = k.len().saturating_sub(5);
            let name = String::from_utf8_lossy(&k[1..name_end]).into_owned();
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Writes and removes metadata in one atomic step (not fsynced: metadata written this way is
    /// derived data that can be rebuilt from the log; call [`Store::sync`] when it must last).
    pub fn write_meta(&self, put: Vec<(String, Vec<u8>)>, remove: Vec<String>) -> Result<()> {
        let mut sb = sled::Batch::default();
        let mut replaced = Vec::new();
        for name in remove.iter().chain(put.iter().map(|(n, _)| n)) {
            for item in self.db()?.scan_prefix(meta_part_prefix(name)) {
                let (k, v) = item?;
                if let Some(Ok(p)) = file_pointer(&k, &v) {
                    replaced.push(p.id);
                }
                sb.remove(k);
            }
        }
        let mut wrote_files = false;
        for (name, value) in put {
            if value.len() >= META_FILE_BYTES_MIN {
                let pointer = self.write_meta_file(&value)?;
                wrote_files = true;
                let mut k = meta_part_prefix(&name);
                k.extend_from_slice(&META_FILE_PART.to_be_bytes());
                sb.insert(k, pointer.encode());
            } else {
                insert_meta(&mut sb, &name, &value);
            }
        }
        if wrote_files {
            // The new files' directory entries are durable before sled can persist a pointer.
            File::open(&self.files)
                .and_then(|d| d.sync_all())
                .map_err(io_err(format!("cannot sync {}", self.files.display())))?;
            failpoint("meta:after-dir-fsync");
        }
        self.db()?.apply_batch(sb)?;
        failpoint("meta:after-batch");
        self.remove_meta_files(&replaced);
        Ok(())
    }

    /// Removes every metadata value whose name starts with `prefix`, in bounded batches (each
    /// atomic on its own; not fsynced: removing derived data can be redone).
    pub fn remove_meta_prefix(&self, prefix: &str) -> Result<()> {
        let start = meta_key(prefix);
        loop {
            let items: Vec<(sled::IVec, sled::IVec)> =
                self.db()?.scan_prefix(&start).take(REMOVE_BATCH_KEYS).collect::<Result<_, _>>()?;
            if items.is_empty() {
                return Ok(());
            }
            let mut sb = sled::Batch::default();
            let mut files = Vec::new();
            for (k, v) in items {
                if let Some(Ok(p)) = file_pointer(&k, &v) {
                    files.push(p.id);
                }
                sb.remove(k);
            }
            self.db()?.apply_batch(sb)?;
            self.remove_meta_files(&files);
        }
    }

    /// Bytes the store occupies on disk (sled and the metadata files).
    pub fn size_on_disk(&self) -> Result<u64> {
        let files: u64 = std::fs::read_dir(&self.files)
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        Ok(self.db()?.size_on_disk()? + files)
    }
}

/// The append lock of the embedded store: one writer at a time in this process (the process
/// lock keeps other processes out), so the head cannot move while it is held.
struct SledHeadLock<'a> {
    store: &'a Store,
    head: Head,
    _held: std::sync::MutexGuard<'a, ()>,
}

impl HeadLock for SledHeadLock<'_> {
    fn head(&self) -> Head {
        self.head
    }
    fn append(self: Box<Self>, batch: AppendBatch) -> custos_log::Result<AppendStats> {
        Ok(self.store.append(batch)?)
    }
}

impl Log for Store {
    fn location(&self) -> String {
        format!("the ledger at {}", self.dir.display())
    }
    fn head(&self) -> Head {
        Store::head(self)
    }
    fn latest_head(&self) -> custos_log::Result<Head> {
        Ok(Store::head(self))
    }
    fn lock_head(&self) -> custos_log::Result<Box<dyn HeadLock + '_>> {
        let held = self.append_lock.lock().expect("append lock");
        Ok(Box::new(SledHeadLock { store: self, head: Store::head(self), _held: held }))
    }
    fn record(&self, seq: Seq) -> custos_log::Result<Option<Vec<u8>>> {
        Ok(Store::record(self, seq)?)
    }
    fn for_each_record(&self, from: Seq, f: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>) -> custos_log::Result<()> {
        Ok(Store::for_each_record(self, from, f)?)
    }
    fn stream_seqs(&self, stream: &StreamId) -> custos_log::Result<Vec<Seq>> {
        Ok(self.index_get(IndexKind::Stream, key_of(&IndexKey::Stream(stream.clone())))?)
    }
    fn event_id_seqs(&self, id: &EventId) -> custos_log::Result<Vec<Seq>> {
        Ok(self.index_get(IndexKind::EventId, key_of(&IndexKey::EventId(id.clone())))?)
    }
    fn time_seqs(&self, index: TimeIndex, lo: Timestamp, hi: Timestamp) -> custos_log::Result<Vec<Seq>> {
        let kind = match index {
            TimeIndex::OccurredAt => IndexKind::OccurredAt,
            TimeIndex::LossTime => IndexKind::LossTime,
        };
        let mut seqs: Vec<Seq> = self.index_range(kind, time_key(lo), time_key(hi))?.into_iter().map(|e| e.1).collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }
    fn flags(&self) -> custos_log::Result<Vec<(Seq, Seq)>> {
        Ok(self.index_all(IndexKind::Flag)?)
    }
    fn check_index(&self, up_to: Seq, expected: Vec<IndexEntry>) -> custos_log::Result<Vec<IndexFinding>> {
        let mut want: [Vec<(u64, Seq)>; INDEX_KINDS] = Default::default();
        for e in &expected {
            want[kind_slot(e.key.kind())].push((key_of(&e.key), e.seq));
        }
        drop(expected);
        let mut found = Vec::new();
        for (kind, mut want) in IndexKind::ALL.into_iter().zip(want) {
            want.sort_unstable();
            let mut have = match self.index_all_verified(kind) {
                Ok(have) => have,
                Err(StoreError::Corruption { what, .. }) => {
                    found.push(IndexFinding {
                        seq: None,
                        what: format!(
                            "the {} index is damaged: {what}; `custos rebuild` rebuilds it from the log",
                            kind.name()
                        ),
                        more: 0,
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            have.retain(|(_, s)| *s <= up_to);
            if want != have {
                let first =
                    want.iter().zip(have.iter()).position(|(a, b)| a != b).unwrap_or(want.len().min(have.len()));
                let seq = want.get(first).or(have.get(first)).map(|e| e.1);
                found.push(IndexFinding {
                    seq,
                    what: format!(
                        "the {} index differs from the log ({} entries stored, {} expected; first difference at seq {})",
                        kind.name(),
                        have.len(),
                        want.len(),
                        seq.map_or("?".into(), |s| s.to_string())
                    ), more: 0 });
            }
        }
        Ok(found)
    }
    fn get_meta(&self, name: &str) -> custos_log::Result<Option<Vec<u8>>> {
        Ok(Store::get_meta(self, name)?)
    }
    fn list_meta(&self, prefix: &str) -> custos_log::Result<Vec<String>> {
        Ok(Store::list_meta(self, prefix)?)
    }
    fn write_meta(&self, put: Vec<(String, Vec<u8>)>, remove: Vec<String>) -> custos_log::Result<()> {
        Ok(Store::write_meta(self, put, remove)?)
    }
    fn remove_meta_prefix(&self, prefix: &str) -> custos_log::Result<()> {
        Ok(Store::remove_meta_prefix(self, prefix)?)
    }
    fn sync(&self) -> custos_log::Result<()> {
        Ok(Store::sync(self)?)
    }
    fn maintain(&self) -> custos_log::Result<()> {
        Ok(self.compact()?)
    }
    fn recover(&self) -> custos_log::Result<Head> {
        let free = self.free_bytes()?;
        if free < RECOVERY_FREE_BYTES_MIN {
            return Err(LogError::Io {
                what: format!("{} MiB free on its disk", free >> 20),
                source: std::io::Error::other(format!(
                    "it reopens its store once {} MiB are",
                    RECOVERY_FREE_BYTES_MIN >> 20
                )),
            });
        }
        Ok(self.reopen()?)
    }
    fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().expect("notices lock"))
    }
    fn repairs_on_open(&self) -> Vec<String> {
        self.repaired.lock().expect("repairs lock").clone()
    }
    fn repair_indexes(&self) -> custos_log::Result<Vec<String>> {
        let mut out = Vec::new();
        for kind in IndexKind::ALL {
            if let Err(e) = self.index_all_verified(kind) {
                let n = self.rebuild_index(kind)?;
                out.push(format!("rebuilt the {} index from the log ({n} entries): {e}", kind.name()));
            }
        }
        Ok(out)
    }
}

/// The first `(key, seq)` of each page of a segment.
type PageDirectory = Vec<(u64, Seq)>;

/// Writes a segment's pages (unless they are in `file`) and its record (last seq, entry count, page directory); returns the
/// page directory.
fn write_segment(
    sb: &mut sled::Batch,
    kind: IndexKind,
    id: u64,
    last_seq: Seq,
    entries: &[(u64, Seq)],
    file: Option<&FilePointer>,
) -> Vec<(u64, Seq)> {
    let mut pages = Vec::with_capacity(entries.len().div_ceil(PAGE_ENTRIES_MAX));
    for page in entries.chunks(PAGE_ENTRIES_MAX) {
        if file.is_none() {
            sb.insert(&page_key(kind, id, page[0]), encode_page(page));
        }
        pages.push(page[0]);
    }
    if let Some(p) = file {
        sb.insert(&dir_part_key(kind, id, SEGMENT_FILE_PART), p.encode());
    }
    let mut meta = Vec::with_capacity(16);
    meta.extend_from_slice(&last_seq.to_be_bytes());
    meta.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    sb.insert(&segment_key(kind, id), meta);
    for (i, part) in pages.chunks(DIR_PART_ENTRIES).enumerate() {
        sb.insert(&dir_part_key(kind, id, i as u32), encode_page(part));
    }
    pages
}

/// Reads every segment record with its page directory: from its parts; or, for segments
/// written by earlier builds, from the record itself or the page keys.
/// Every segment, and for each kind whose segment file is missing or of the wrong length (the
/// segment is left out, so the kind must be rebuilt before it is read), why.
type LoadedSegments = ([Vec<Segment>; INDEX_KINDS], Vec<(IndexKind, String)>);

fn load_segments(db: &sled::Db, files: &Path) -> Result<LoadedSegments> {
    // (kind slot, segment id) -> (record: last seq, entries, legacy directory bytes; directory
    // parts; file pointer)
    type Found =
        std::collections::BTreeMap<(usize, u64), (Option<(Seq, u64, Vec<u8>)>, PageDirectory, Option<FilePointer>)>;
    let mut found = Found::new();
    for item in db.scan_prefix([PREFIX_SEGMENT]) {
        let (k, v) = item?;
        let kind = IndexKind::ALL
            .into_iter()
            .find(|kind| k.get(1) == Some(&tag(*kind)))
            .ok_or_else(|| StoreError::corrupt(format!("unknown index segment key {k:?}")))?;
        let malformed = || StoreError::corrupt(format!("malformed {} index segment record", kind.name()));
        let id = u64::from_be_bytes(k.get(2..10).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?);
        let entry = found.entry((kind_slot(kind), id)).or_default();
        match k.len() {
            10 => {
                let last_seq = u64::from_be_bytes(v.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?);
                let entries = u64::from_be_bytes(v.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?);
                entry.0 = Some((last_seq, entries, v[16..].to_vec()));
            }
            14 if k.ends_with(&SEGMENT_FILE_PART.to_be_bytes()) => {
                entry.2 = Some(FilePointer::decode(&v).ok_or_else(malformed)?);
            }
            14 => entry.1.extend(decode_page(&v).ok_or_else(malformed)?),
            _ => return Err(malformed()),
        }
    }
    let mut segments: [Vec<Segment>; INDEX_KINDS] = Default::default();
    let mut damaged = Vec::new();
    for ((slot, id), (header, mut pages, pointer)) in found {
        let kind = IndexKind::ALL[slot];
        let malformed = || StoreError::corrupt(format!("{} index segment {id} has no record", kind.name()));
        let (last_seq, entries, legacy_dir) = header.ok_or_else(malformed)?;
        if pages.is_empty() && !legacy_dir.is_empty() {
            pages = decode_page(&legacy_dir).ok_or_else(malformed)?.collect();
        }
        if pages.is_empty() && entries > 0 {
            for item in db.scan_prefix(page_prefix(kind, id)) {
                let (pk, _) = item?;
                let first = (|| {
                    Some((
                        u64::from_be_bytes(pk.get(10..18)?.try_into().ok()?),
                        u64::from_be_bytes(pk.get(18..26)?.try_into().ok()?),
                    ))
                })()
                .ok_or_else(malformed)?;
                pages.push(first);
            }
        }
        let file = match pointer.map(|p| open_segment_file(files, kind, id, p, entries, &pages)) {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                damaged.push((kind, e.to_string()));
                continue;
            }
            None => None,
        };
        segments[slot].push(Segment { id, last_seq, entries, pages, file });
    }
    Ok((segments, damaged))
}

/// Opens a segment's file and reads its page checksums (the tail of the file), checking that
/// its length is what its pointer and its entries say, and that its first and last pages start
/// with the entries its page directory (in sled) names: a segment file is checked against its
/// own checksums on every read, so another segment's file of the same length put in its place
/// would pass those, and is caught here (and on every page read, by `read_page`).
fn open_segment_file(
    files: &Path,
    kind: IndexKind,
    id: u64,
    pointer: FilePointer,
    entries: u64,
    directory: &[(u64, Seq)],
) -> Result<SegmentFile> {
    let pages = directory.len();
    use std::os::unix::fs::FileExt;
    let path = file_path(files, pointer.id);
    let what = || format!("cannot read the {} index segment {id} from {}", kind.name(), path.display());
    let body = entries * 16;
    if pointer.len != body + pages as u64 * 8 {
        return Err(StoreError::corrupt(format!(
            "the {} index segment {id}: its pointer says {} bytes, its directory {}",
            kind.name(),
            pointer.len,
            body + pages as u64 * 8
        )));
    }
    let handle = open_stored_file(&path, pointer.len, &format!("the {} index segment {id}", kind.name()))?;
    let mut tail = vec![0u8; pages * 8];
    handle.read_exact_at(&mut tail, body).map_err(io_err(what()))?;
    for i in [0, pages.saturating_sub(1)].into_iter().filter(|i| *i < pages) {
        let mut first = [0u8; 16];
        handle.read_exact_at(&mut first, (i * PAGE_BYTES) as u64).map_err(io_err(what()))?;
        if decode_page(&first).and_then(|mut p| p.next()) != Some(directory[i]) {
            return Err(StoreError::corrupt(format!(
                "the {} index segment {id} in {} is not the file written for it (page {i} starts elsewhere than its directory says)",
                kind.name(),
                path.display()
            )));
        }
    }
    Ok(SegmentFile { pointer, handle: Arc::new(handle), checksums: Arc::new(decode_checksums(&tail)) })
}

/// Opens a file under `files/` for reading, refusing (as corruption, before reading a byte)
/// anything but a regular file of the length recorded for it: a symlink (to `/dev/zero`, say),
/// a FIFO (opened without blocking) or a file of another size put in its place.
fn open_stored_file(path: &Path, len: u64, what: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => StoreError::corrupt(format!("{what}: {} is a symbolic link", path.display())),
                _ => StoreError::Io { what: format!("cannot read {what} from {}", path.display()), source: e },
            },
        )?;
    let meta = file.metadata().map_err(io_err(format!("cannot read {what} from {}", path.display())))?;
    if !meta.is_file() || meta.len() != len {
        let found = if meta.is_file() { format!("{} bytes", meta.len()) } else { "not a regular file".to_string() };
        return Err(StoreError::corrupt(format!(
            "{what}: {} is {found}, not the {len} bytes recorded for it",
            path.display()
        )));
    }
    Ok(file)
}

/// The file of id `id` under `files/`: its id in hexadecimal, 16 digits.
fn file_path(files: &Path, id: u64) -> PathBuf {
    files.join(format!("{id:016x}"))
}

fn decode_checksums(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

fn meta_part_prefix(name: &str) -> Vec<u8> {
    let mut k = meta_key(name);
    k.push(0);
    k
}

/// Where a large metadata value lives: its file, length and SHA-256.
#[derive(Debug, Clone, Copy)]
struct FilePointer {
    id: u64,
    len: u64,
    hash: [u8; 32],
}

impl FilePointer {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v
    }
    fn decode(value: &[u8]) -> Option<FilePointer> {
        (value.len() == 48).then_some(())?;
        Some(FilePointer {
            id: u64::from_be_bytes(value.get(..8)?.try_into().ok()?),
            len: u64::from_be_bytes(value.get(8..16)?.try_into().ok()?),
            hash: value.get(16..48)?.try_into().ok()?,
        })
    }
}

/// The file pointer a metadata part holds, if it is one (`Some(Err)`: malformed).
fn file_pointer(key: &[u8], value: &[u8]) -> Option<Result<FilePointer>> {
    if !key.ends_with(&META_FILE_PART.to_be_bytes()) {
        return None;
    }
    Some(FilePointer::decode(value).ok_or_else(|| {
        StoreError::corrupt(format!("metadata file pointer under {:?} is malformed", String::from_utf8_lossy(key)))
    }))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Metadata values are split into parts small enough to stay inline in sled's log.
fn insert_meta(sb: &mut sled::Batch, name: &str, value: &[u8]) {
    let parts: Vec<&[u8]> = if value.is_empty() { vec![value] } else { value.chunks(META_PART_BYTES).collect() };
    for (i, part) in parts.into_iter().enumerate() {
        let mut k = meta_part_prefix(name);
        k.extend_from_slice(&(i as u32).to_be_bytes());
        sb.insert(k, part);
    }
}

fn chunk_first_seq(key: &[u8]) -> Result<Seq> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::corrupt(format!("malformed chunk key {key:?}")))
}

fn chunk_corrupt(first: Seq) -> StoreError {
    StoreError::Corruption { seq: Some(first), what: format!("the chunk starting at seq {first} is malformed") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: Seq, n: usize) -> AppendBatch {
        let records: Vec<Vec<u8>> = (0..n).map(|i| format!("record-{}", first + i as u64).into_bytes()).collect();
        let index = (0..n)
            .flat_map(|i| {
                let s = first + i as u64;
                [
                    IndexEntry { key: IndexKey::FlagOf(s % 7), seq: s },
                    IndexEntry { key: IndexKey::EventId(EventId::new(&format!("e{s}")).unwrap()), seq: s },
                ]
            })
            .collect();
        AppendBatch {
            first_seq: first,
            records,
            index,
            head: Head { seq: first + n as u64 - 1, hash: [1; 32], recorded_at: custos_domain::Timestamp::MIN },
            meta: vec![],
        }
    }

    fn event_key(s: Seq) -> u64 {
        key_of(&IndexKey::EventId(EventId::new(&format!("e{s}")).unwrap()))
    }

    #[test]
    fn sled_corruption_is_reported_as_corruption_without_its_empty_backtrace() {
        let inner = sled::Error::Corruption { at: None, bt: () };
        // The two forms sled hands back: its own variant, and that variant as an IO error.
        let as_io = sled::Error::Io(std::io::Error::from(inner.clone()));
        for e in [inner, as_io] {
            let shown = StoreError::from(e);
            let text = shown.to_string();
            assert!(matches!(shown, StoreError::Corruption { .. }), "{text}");
            assert!(!text.contains("backtrace") && !text.contains("bt:"), "{text}");
        }
    }

    #[test]
    fn appends_read_back_and_indexes_survive_merging_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let sizes = [1usize, 1, 3, 700, 1, 1, 2, 300, 5];
        {
            let store = Store::open(tmp.path(), "test").unwrap();
            let mut first = 1;
            for n in sizes {
                store.append(batch(first, n)).unwrap();
                store.compact().unwrap();
                first += n as u64;
            }
        }
        let total: u64 = sizes.iter().sum::<usize>() as u64;
        let store = Store::open(tmp.path(), "test").unwrap();
        assert_eq!(store.head().seq, total);
        for s in 1..=total {
            assert_eq!(store.record(s).unwrap().unwrap(), format!("record-{s}").into_bytes());
        }
        assert!(store.record(total + 1).unwrap().is_none());
        let mut seen = Vec::new();
        store
            .for_each_record(500, |s, _| {
                seen.push(s);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, (500..=total).collect::<Vec<_>>());
        let want: Vec<Seq> = (1..=total).filter(|s| s % 7 == 3).collect();
        assert_eq!(store.index_get(IndexKind::Flag, 3).unwrap(), want);
        assert_eq!(store.index_all(IndexKind::EventId).unwrap().len() as u64, total);
        let segs = store.segments.read().unwrap()[kind_slot(IndexKind::Flag)].len();
        assert!(segs <= 4, "segments were merged: {segs}");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        store.write_meta(vec![("proj/a".into(), big.clone()), ("proj/b".into(), vec![])], vec![]).unwrap();
        assert_eq!(store.get_meta("proj/a").unwrap().unwrap(), big);
        assert_eq!(store.get_meta("proj/b").unwrap().unwrap(), Vec::<u8>::new());
        assert_eq!(store.list_meta("proj/").unwrap(), vec!["proj/a".to_string(), "proj/b".to_string()]);
        store.write_meta(vec![("proj/a".into(), vec![1])], vec!["proj/b".into()]).unwrap();
        assert_eq!(store.get_meta("proj/a").unwrap().unwrap(), vec![1]);
        assert_eq!(store.list_meta("proj/").unwrap(), vec!["proj/a".to_string()]);
    }

    fn meta_files(store: &Store) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&store.files).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn large_metadata_lives_in_checked_files_that_go_when_their_value_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let big = |seed: u8| -> Vec<u8> { (0..META_FILE_BYTES_MIN as u32 + 10).map(|i| (i as u8) ^ seed).collect() };
        {
            let store = Store::open(tmp.path(), "test").unwrap();
            store.write_meta(vec![("cp/x/1".into(), big(1)), ("cp/x/2".into(), big(2))], vec![]).unwrap();
            assert_eq!(meta_files(&store).len(), 2);
            assert_eq!(store.list_meta("cp/x/").unwrap(), vec!["cp/x/1".to_string(), "cp/x/2".to_string()]);
            // Replaced by a small value: the file goes, the value is read from sled.
            store.write_meta(vec![("cp/x/1".into(), vec![7])], vec![]).unwrap();
            assert_eq!(meta_files(&store).len(), 1);
            assert_eq!(store.get_meta("cp/x/1").unwrap().unwrap(), vec![7]);
            store.sync().unwrap();
        }
        // Reopened: the value reads back, new files get new ids, a prefix removal takes files.
        let store = Store::open(tmp.path(), "test").unwrap();
        assert_eq!(store.get_meta("cp/x/2").unwrap().unwrap(), big(2));
        store.write_meta(vec![("cp/x/3".into(), big(3))], vec![]).unwrap();
        let files = meta_files(&store);
        assert_eq!(files.len(), 2);
        assert_ne!(files[0], files[1]);
        // One changed byte in a file is found by its hash and named.
        let mut bytes = std::fs::read(&files[1]).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&files[1], bytes).unwrap();
        let err = store.get_meta("cp/x/3").unwrap_err().to_string();
        assert!(err.contains("cp/x/3") && err.contains("SHA-256"), "{err}");
        // A file nothing points at (a crash between writing it and its batch) is collected;
        // the ones values point at stay.
        std::fs::write(
            store.files.join(format!("{:016x}", store.next_file.fetch_add(1, std::sync::atomic::Ordering::Relaxed))),
            b"orphan",
        )
        .unwrap();
        assert_eq!(meta_files(&store).len(), 3);
        assert_eq!(store.remove_unreferenced_files().unwrap(), 1);
        assert_eq!(meta_files(&store), files);
        store.remove_meta_prefix("cp/x/").unwrap();
        assert!(store.list_meta("cp/").unwrap().is_empty());
        assert!(meta_files(&store).is_empty());
    }

    fn segment_files(store: &Store) -> Vec<u64> {
        let dir = store.segments.read().unwrap();
        let mut ids: Vec<u64> = dir.iter().flatten().filter_map(|s| s.file.as_ref()).map(|f| f.pointer.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Merged segments of 4,096 entries or more live in files: one per segment, none left
    /// behind when a merge replaces them, none swept while pointed at, every page checked.
    #[test]
    fn big_segments_live_in_checked_files_that_go_when_merged_away() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "test").unwrap();
        let mut first = 1u64;
        let mut most_files = 0;
        // 64 batches of 600: every 8 merge into a 4,800-entry file; the 8 files into one.
        for _ in 0..64 {
            store.append(batch(first, 600)).unwrap();
            store.compact().unwrap();
            first += 600;
            let ids = segment_files(&store);
            most_files = most_files.max(ids.len());
            let on_disk = std::fs::read_dir(tmp.path().join("files")).unwrap().count();
            assert_eq!(on_disk, ids.len(), "one file per file segment, nothing left behind");
        }
        assert!(most_files >= 7, "merges wrote segment files ({most_files})");
        let total = first - 1;
        let files = segment_files(&store);
        assert_eq!(files.len(), 2, "one file per index kind after the last merge: {files:?}");
        drop(store);
        let store = Store::open(tmp.path(), "test").unwrap();
        assert_eq!(segment_files(&store), files, "reopened: the same files, none swept");
        for key in [0, 3, 6] {
            let want: Vec<Seq> = (1..=total).filter(|s| s % 7 == key).collect();
            assert_eq!(store.index_get(IndexKind::Flag, key).unwrap(), want);
        }
        for s in [1, 4_321, total] {
            assert_eq!(store.index_get(IndexKind::EventId, event_key(s)).unwrap(), vec![s]);
        }
        let mut want: Vec<(u64, Seq)> = (1..=total).map(|s| (event_key(s), s)).collect();
        want.sort_unstable();
        assert_eq!(store.index_all(IndexKind::EventId).unwrap(), want);
        // A flipped bit in a page is corruption, named with its file, for a lookup and for the
        // whole-index read (verify's), which checks the file's SHA-256.
        let flag_file = {
            let dir = store.segments.read().unwrap();
            dir[kind_slot(IndexKind::Flag)][0].file.as_ref().unwrap().pointer.id
        };
        let path = store.meta_file_path(flag_file);
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[PAGE_BYTES + 9] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(tmp.path(), "test").unwrap();
        let name = format!("{flag_file:016x}");
        let lookups: Vec<String> =
            (0..7u64).filter_map(|k| store.index_get(IndexKind::Flag, k).err()).map(|e| e.to_string()).collect();
        assert!(
            !lookups.is_empty() && lookups.iter().all(|e| e.contains(&name) && e.contains("checksum")),
            "{lookups:?}"
        );
        let all = store.index_all_verified(IndexKind::Flag).unwrap_err().to_string();
        assert!(all.contains(&name) && all.contains("SHA-256"), "{all}");
        // A file cut short is found when the store opens (the segment is left out and its
        // index rebuilt from the log: tests/tests/tamper.rs, with real envelopes).
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        drop(store);
        let db = open_sled(&tmp.path().join("sled")).unwrap();
        let (segments, damaged) = load_segments(&db, &tmp.path().join("files")).unwrap();
        assert_eq!(damaged.len(), 1, "{damaged:?}");
        assert_eq!(damaged[0].0, IndexKind::Flag);
        assert!(damaged[0].1.contains(&name) && damaged[0].1.contains("bytes"), "{damaged:?}");
        assert!(segments[kind_slot(IndexKind::Flag)]
            .iter()
            .all(|s| s.file.as_ref().map(|f| f.pointer.id) != Some(flag_file)));
    }

    #[test]
    fn tiered_merging_keeps_few_segments_and_every_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "test").unwrap();
        let mut first = 1u64;
        let mut x = 12345u64;
        for round in 0..400 {
            // Mostly small commits (a server), now and then an import-sized one.
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = if round % 37 == 0 { 500 + (x >> 33) as usize % 1500 } else { 1 + (x >> 33) as usize % 9 };
            store.append(batch(first, n)).unwrap();
            store.compact().unwrap();
            first += n as u64;
            let dir = store.segments.read().unwrap();
            for segs in dir.iter() {
                let classes: Vec<u32> = segs.iter().map(|s| s.entries.max(1).ilog(SEGMENT_MERGE_RATIO)).collect();
                assert!(classes.windows(2).all(|w| w[0] >= w[1]), "classes never increase: {classes:?}");
                for c in &classes {
                    let same = classes.iter().filter(|d| *d == c).count() as u64;
                    assert!(
                        same < SEGMENT_MERGE_RATIO,
                        "at most {} segments per class: {classes:?}",
                        SEGMENT_MERGE_RATIO - 1
                    );
                }
                let ids: Vec<u64> = segs.iter().map(|s| s.id).collect();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "segments stay in seq order: {ids:?}");
            }
        }
        let total = first - 1;
        drop(store);
        let store = Store::open(tmp.path(), "test").unwrap();
        for key in 0..7 {
            let want: Vec<Seq> = (1..=total).filter(|s| s % 7 == key).collect();
            assert_eq!(store.index_get(IndexKind::Flag, key).unwrap(), want);
        }
        let mut want: Vec<(u64, Seq)> = (1..=total).map(|s| (event_key(s), s)).collect();
        want.sort_unstable();
        assert_eq!(store.index_all(IndexKind::EventId).unwrap(), want);
    }

    #[test]
    fn an_open_waits_for_this_processs_previous_handle_to_let_go() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "test").unwrap();
        // A handle outliving the store, as sled's IO threads can for a moment.
        let lingering = store.db().unwrap();
        drop(store);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(lingering);
        });
        let again = Store::open(tmp.path(), "test");
        assert!(again.is_ok(), "{:?}", again.err());
        t.join().unwrap();
    }

    #[test]
    fn a_second_opener_is_told_who_holds_the_ledger() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = Store::open(tmp.path(), "custos serve").unwrap();
        // flock is per open file description, so a second open in this process conflicts too.
        let err = Store::open(tmp.path(), "custos balances").err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("custos serve") && msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    }
}
