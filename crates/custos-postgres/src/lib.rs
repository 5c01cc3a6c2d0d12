//! The Custos log on PostgreSQL: the engine for platforms that outgrow one machine.
//!
//! Each event is one row of `custos_events`: the envelope bytes the hash chain covers (the same
//! bytes as on sled, so the same log has the same digest on both engines) and, beside them,
//! typed columns an auditor can query with plain SQL. The head is one row of `custos_head`;
//! a writer locks it (`SELECT … FOR UPDATE`) for the whole of a group commit, so writers in any
//! number of processes append one gap-free, hash-chained log, each deciding against the
//! latest state. Metadata (checkpoints, boundary records) is `custos_meta`. The schema is in
//! `SCHEMA` and ARCHITECTURE.md.
//!
//! The client is tokio-postgres on a small runtime of this crate's own: every call of the
//! [`Log`] interface is a blocking call that runs its query there, so it works from any thread,
//! inside an async runtime or not.

mod rows;

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use custos_domain::{EventId, Seq, StreamId, Timestamp};
use custos_log::{
    AppendBatch, AppendStats, Head, HeadLock, IndexEntry, IndexFinding, Log, LogError, Result, TimeIndex,
};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

pub use rows::EventRow;

/// The schema version this build writes. A database with a newer one is refused; an older
/// one is migrated on open.
pub const SCHEMA_VERSION: i32 = 2;

/// The schema, as of version 1 (`MIGRATIONS` bring it to [`SCHEMA_VERSION`]). `COLLATE "C"`
/// on metadata names: byte order, as the ledger lists them.
const SCHEMA: &str = r#"
CREATE TABLE custos_schema (
    version integer NOT NULL
);
CREATE TABLE custos_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL,
    recorded_ns bigint NOT NULL
);
INSERT INTO custos_head (seq, hash, recorded_ns) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000', -9223372036854775808);
CREATE TABLE custos_events (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    envelope bytea NOT NULL,
    hash bytea NOT NULL,
    stream text NOT NULL,
    stream_version bigint NOT NULL,
    event_id text NOT NULL UNIQUE,
    kind text NOT NULL,
    account text,
    asset text,
    amount numeric,
    usd_value numeric,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    occurred_ns bigint NOT NULL,
    recorded_ns bigint NOT NULL,
    ref text,
    unauthorized boolean,
    flag_of bigint,
    loss_ns bigint,
    UNIQUE (stream, stream_version)
);
CREATE INDEX custos_events_occurred ON custos_events (occurred_ns, seq);
CREATE INDEX custos_events_loss ON custos_events (loss_ns, seq) WHERE loss_ns IS NOT NULL;
CREATE INDEX custos_events_flag ON custos_events (flag_of, seq) WHERE flag_of IS NOT NULL;
CREATE TABLE custos_meta (
    name text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
"#;

/// The steps from each version to the next: `MIGRATIONS[i]` takes a schema from version `i + 1`
/// to `i + 2`, in the transaction that records the new version.
const MIGRATIONS: &[(&str, &str)] = &[(
    // Checkpoints are megabytes of already dense bincode: PostgreSQL's pglz compression of
    // them cost a tenth of an import's server time and saved little.
    "checkpoint values stored uncompressed",
    "ALTER TABLE custos_meta ALTER COLUMN value SET STORAGE EXTERNAL;",
)];

/// Rows read per query of a scan.
const SCAN_WINDOW_ROWS: i64 = 4096;

/// Where a ledger on PostgreSQL lives: a `postgres://` or `postgresql://` URL without a
/// password (the password comes from `PGPASSWORD` or the password file, never a command line).
#[derive(Debug, Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    shown: String,
}

impl Target {
    /// Whether `s` names a PostgreSQL database rather than a folder: a `postgres:` or
    /// `postgresql:` scheme, in any case, spaces before it ignored (a scheme is
    /// case-insensitive; such a location is never taken for a folder's name).
    pub fn is_url(s: &str) -> bool {
        let s = s.trim_start().to_ascii_lowercase();
        s.starts_with("postgres:") || s.starts_with("postgresql:")
    }

    pub fn parse(url: &str) -> Result<Target> {
        // The URL itself is never repeated: it may hold a password.
        let bad = |why: String| LogError::Refused(format!("cannot use the PostgreSQL URL given: {why}"));
        let trimmed = url.trim_start();
        let scheme_end = trimmed.find(':').unwrap_or(0);
        let (scheme, rest) = trimmed.split_at(scheme_end);
        if !rest.starts_with("://") {
            return Err(bad(format!("a PostgreSQL URL starts {}://USER@HOST:PORT/DB", scheme.to_ascii_lowercase())));
        }
        let url = format!("{}{rest}", scheme.to_ascii_lowercase());
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(format!("{e}")))?;
        if config.get_password().is_some() {
            return Err(bad(
                "it holds a password; give it in PGPASSWORD or ~/.pgpass (PGPASSFILE), never on a command line".into(),
            ));
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().map(str::to_string).unwrap_or_else(|| std::env::var("USER").unwrap_or_default());
        let db = config.get_dbname().map(str::to_string).unwrap_or_else(|| user.clone());
        if config.get_user().is_none() {
            config.user(&user);
        }
        if let Some(password) = password_for(&host, port, &db, &user) {
            config.password(password);
        }
        Ok(Target { shown: format!("postgres://{user}@{host}:{port}/{db}"), config })
    }

    /// The URL without any secret, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The password for a connection: `PGPASSWORD`, else the first matching line of the password
/// file (`PGPASSFILE`, default `~/.pgpass`; `host:port:database:user:password`, `*` matching
/// anything), as libpq reads them.
fn password_for(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    pgpass_lookup(&std::fs::read_to_string(file).ok()?, host, port, db, user)
}

fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        // Fields are separated by unescaped colons; `\:` and `\\` are literal.
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut()?.extend(chars.next()),
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], db)
            && matches(&fields[3], user)
        {
            return fields.pop();
        }
    }
    None
}

/// The client's own runtime: worker threads that run the queries while the caller waits (a
/// current-thread runtime would run nothing: no one drives it).
fn client_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custos-postgres")
        .enable_all()
        .build()
        .map_err(|e| LogError::io("cannot start the PostgreSQL client's runtime", e))
}

/// Connections not in use, and how to make more.
struct Pool {
    config: tokio_postgres::Config,
    shown: String,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    async fn get(&self) -> Result<Client> {
        loop {
            let idle = self.idle.lock().expect("pool lock").pop();
            match idle {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => continue,
                None => break,
            }
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.error("cannot connect", e))?;
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("the connection to {shown} ended: {e}");
            }
        });
        Ok(client)
    }

    fn put(&self, client: Client) {
        if !client.is_closed() {
            self.idle.lock().expect("pool lock").push(client);
        }
    }

    /// A PostgreSQL error in the log's terms.
    fn error(&self, doing: &str, e: tokio_postgres::Error) -> LogError {
        use tokio_postgres::error::SqlState;
        let code = e.code().cloned();
        if code == Some(SqlState::READ_ONLY_SQL_TRANSACTION) {
            return LogError::Refused(format!(
                "{} is read-only (a hot standby): it answers queries for what it has replayed; send writes to the primary",
                self.shown
            ));
        }
        let detail = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        LogError::Io { what: format!("{doing} ({})", self.shown), source: std::io::Error::other(detail) }
    }
}

/// The log in a PostgreSQL database.
pub struct PgLog {
    shown: String,
    runtime: Option<tokio::runtime::Runtime>,
    pool: Arc<Pool>,
    head: Mutex<Head>,
    /// The database is a hot standby: no writes.
    read_only: bool,
    notices: Mutex<Vec<String>>,
}

impl PgLog {
    /// Opens the ledger in the database `target` names, creating its schema when the database
    /// has none. Refused when the server could lose an acknowledged commit (`fsync` or
    /// `synchronous_commit` off), or the schema is newer than this build's.
    pub fn open(target: &Target, holder: &str) -> Result<PgLog> {
        let runtime = client_runtime()?;
        let mut config = target.config.clone();
        config.application_name(holder);
        let pool = Arc::new(Pool { config, shown: target.shown.clone(), idle: Mutex::new(Vec::new()) });
        let mut log = PgLog {
            shown: target.shown.clone(),
            runtime: Some(runtime),
            pool,
            head: Mutex::new(Head::EMPTY),
            read_only: false,
            notices: Mutex::new(Vec::new()),
        };
        let pool = Arc::clone(&log.pool);
        let read_only = log.run(async move {
            let client = pool.get().await?;
            let setting = |name: &'static str| {
                let client = &client;
                let pool = &pool;
                async move {
                    let row = client
                        .query_one(&format!("SHOW {name}"), &[])
                        .await
                        .map_err(|e| pool.error("cannot read the server's settings", e))?;
                    Ok::<String, LogError>(row.get(0))
                }
            };
            for name in ["fsync", "synchronous_commit"] {
                let value = setting(name).await?;
                if value == "off" {
                    return Err(LogError::Refused(format!(
                        "{} has {name} = {value}: an acknowledged append could be lost in a crash; turn it on (postgresql.conf) before keeping a ledger there",
                        pool.shown
                    )));
                }
            }
            let recovery: bool = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|e| pool.error("cannot ask whether the server is a standby", e))?
                .get(0);
            pool.put(client);
            Ok(recovery)
        })?;
        log.read_only = read_only;
        log.ensure_schema()?;
        log.check_head()?;
        log.latest_head()?;
        Ok(log)
    }

    /// Whether the database holds a Custos ledger.
    pub fn exists(target: &Target) -> Result<bool> {
        let log = PgLog::open_unchecked(target)?;
        let pool = Arc::clone(&log.pool);
        log.run(async move {
            let client = pool.get().await?;
            let row = client
                .query_one("SELECT to_regclass('custos_schema') IS NOT NULL", &[])
                .await
                .map_err(|e| pool.error("cannot look for a ledger", e))?;
            Ok(row.get(0))
        })
    }

    fn open_unchecked(target: &Target) -> Result<PgLog> {
        let runtime = client_runtime()?;
        Ok(PgLog {
            shown: target.shown.clone(),
            runtime: Some(runtime),
            pool: Arc::new(Pool {
                config: target.config.clone(),
                shown: target.shown.clone(),
                idle: Mutex::new(vec![]),
            }),
            head: Mutex::new(Head::EMPTY),
            read_only: true,
            notices: Mutex::new(Vec::new()),
        })
    }

    /// Runs `fut` on this log's runtime and waits for it (from any thread, in an async
    /// context or not: the wait is a plain channel receive).
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.as_ref().expect("the runtime lives as long as the log").spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(LogError::io(format!("the client of {} stopped", self.shown), std::io::Error::other("runtime gone")))
        })
    }

    /// Creates the schema in a database without one, or migrates an older one; refuses a
    /// newer one. Under an advisory lock, so that two processes opening a fresh database at
    /// once create it once.
    fn ensure_schema(&self) -> Result<()> {
        let pool = Arc::clone(&self.pool);
        let read_only = self.read_only;
        let (created, migrated) = self.run(async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await.map_err(|e| pool.error("cannot begin a transaction", e))?;
            if !read_only {
                tx.execute("SELECT pg_advisory_xact_lock(7213469121)", &[])
                    .await
                    .map_err(|e| pool.error("cannot lock the schema", e))?;
            }
            let exists: bool = tx
                .query_one("SELECT to_regclass('custos_schema') IS NOT NULL", &[])
                .await
                .map_err(|e| pool.error("cannot look for the schema", e))?
                .get(0);
            let mut created = false;
            let mut migrated = Vec::new();
            if exists {
                let found: i32 = tx
                    .query_one("SELECT max(version) FROM custos_schema", &[])
                    .await
                    .map_err(|e| pool.error("cannot read the schema version", e))?
                    .try_get::<_, Option<i32>>(0)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                if found > SCHEMA_VERSION {
                    return Err(LogError::Version {
                        location: format!("the ledger in {}", pool.shown),
                        what: "schema",
                        found: found as u32,
                        expected: SCHEMA_VERSION as u32,
                    });
                }
                if found < 1 {
                    return Err(LogError::corrupt(format!(
                        "{} has a custos_schema table without a version",
                        pool.shown
                    )));
                }
                if found < SCHEMA_VERSION {
                    if read_only {
                        return Err(LogError::Refused(format!(
                            "{} holds a ledger of schema version {found}, older than this build's ({SCHEMA_VERSION}), and is a read-only standby: open the ledger once on the primary, which migrates it",
                            pool.shown
                        )));
                    }
                    for (i, (what, sql)) in MIGRATIONS.iter().enumerate().skip((found - 1) as usize) {
                        tx.batch_execute(sql).await.map_err(|e| pool.error("cannot migrate the schema", e))?;
                        let to = i as i32 + 2;
                        tx.execute("UPDATE custos_schema SET version = $1", &[&to])
                            .await
                            .map_err(|e| pool.error("cannot record the schema version", e))?;
                        migrated.push(format!("schema version {} to {to}: {what}", to - 1));
                    }
                }
            } else if read_only {
                return Err(LogError::Refused(format!(
                    "{} is a read-only standby without a ledger: create the ledger on the primary",
                    pool.shown
                )));
            } else {
                tx.batch_execute(SCHEMA).await.map_err(|e| pool.error("cannot create the schema", e))?;
                for (_, sql) in MIGRATIONS {
                    tx.batch_execute(sql).await.map_err(|e| pool.error("cannot create the schema", e))?;
                }
                tx.execute("INSERT INTO custos_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])
                    .await
                    .map_err(|e| pool.error("cannot record the schema version", e))?;
                created = true;
            }
            tx.commit().await.map_err(|e| pool.error("cannot commit the schema", e))?;
            pool.put(client);
            Ok((created, migrated))
        })?;
        for step in migrated {
            let notice = format!("migrated the ledger in {}: {step}", self.shown);
            tracing::info!("{notice}");
            self.notices.lock().expect("notices lock").push(notice);
        }
        if created {
            tracing::info!("created the ledger schema (version {SCHEMA_VERSION}) in {}", self.shown);
        }
        Ok(())
    }

    /// The head row must name the last stored event, with its hash (read in one statement, so
    /// one snapshot): an edited `custos_head`, or events deleted at the end, would otherwise
    /// make every answer silently stop short. Refused like a damaged embedded store.
    fn check_head(&self) -> Result<()> {
        let shown = self.shown.clone();
        self.query(
            "cannot read the head",
            "SELECT h.seq, h.hash, e.seq, e.hash FROM custos_head h \
             LEFT JOIN LATERAL (SELECT seq, hash FROM custos_events ORDER BY seq DESC LIMIT 1) e ON true",
            vec![],
            move |rows| {
                let row = rows.first().ok_or_else(|| LogError::corrupt("the head row is missing"))?;
                let (head, head_hash): (i64, Vec<u8>) = (row.get(0), row.get(1));
                let (last, last_hash): (Option<i64>, Option<Vec<u8>>) = (row.get(2), row.get(3));
                let hex = |h: &[u8]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
                let agrees = match (last, &last_hash) {
                    (None, _) => head == 0,
                    (Some(l), Some(h)) => l == head && *h == head_hash,
                    _ => false,
                };
                if agrees {
                    return Ok(());
                }
                Err(LogError::Corruption {
                    seq: Some(seq_of(head.min(last.unwrap_or(0)))),
                    what: format!(
                        "in {shown}, custos_head says seq {head} ({}) but the last stored event is {}: the head or the log was changed outside the ledger; restore the database from a backup",
                        hex(&head_hash),
                        match (last, &last_hash) {
                            (Some(l), Some(h)) => format!("seq {l} ({})", hex(h)),
                            _ => "none".to_string(),
                        }
                    ),
                })
            },
        )
    }

    fn refuse_writes(&self) -> Result<()> {
        if self.read_only {
            return Err(LogError::Refused(format!(
                "the ledger in {} is a read replica (a hot standby): it answers queries for the prefix it has replayed and takes no writes; send writes to the primary",
                self.shown
            )));
        }
        Ok(())
    }

    /// Runs one query on a pooled connection.
    fn query<T: Send + 'static>(
        &self,
        doing: &'static str,
        sql: &'static str,
        params: Params,
        map: impl FnOnce(Vec<tokio_postgres::Row>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = Arc::clone(&self.pool);
        self.run(async move {
            let client = pool.get().await?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_sql()).collect();
            let rows = client.query(sql, &refs).await.map_err(|e| pool.error(doing, e))?;
            pool.put(client);
            map(rows)
        })
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        // Dropping a runtime inside an async context panics; this does not wait.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A query parameter, owned (the query runs on another thread).
enum Param {
    I64(i64),
    Text(String),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::I64(v) => v,
            Param::Text(v) => v,
        }
    }
}

type Params = Vec<Param>;

fn seq_param(seq: Seq) -> Param {
    Param::I64(i64::try_from(seq).unwrap_or(i64::MAX))
}

fn seq_of(v: i64) -> Seq {
    Seq::try_from(v).unwrap_or(0)
}

/// The head from the simple protocol's text row `(seq, hex hash, recorded_ns)`.
fn head_of_text(row: &tokio_postgres::SimpleQueryRow) -> Result<Head> {
    let bad = |what: &str| LogError::corrupt(format!("custos_head holds {what}"));
    let seq: i64 = row.get(0).and_then(|v| v.parse().ok()).ok_or_else(|| bad("no seq"))?;
    let hex = row.get(1).ok_or_else(|| bad("no hash"))?;
    let hash: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("a hash that is not hex"))?;
    let recorded_ns: i64 = row.get(2).and_then(|v| v.parse().ok()).ok_or_else(|| bad("no recorded_ns"))?;
    Ok(Head {
        seq: seq_of(seq),
        hash: hash.try_into().map_err(|_| LogError::corrupt("the head's hash is not 32 bytes"))?,
        recorded_at: Timestamp::from_nanos(recorded_ns),
    })
}

fn head_of(row: &tokio_postgres::Row) -> Result<Head> {
    let hash: Vec<u8> = row.get(1);
    Ok(Head {
        seq: seq_of(row.get(0)),
        hash: hash.try_into().map_err(|_| LogError::corrupt("the head's hash is not 32 bytes"))?,
        recorded_at: Timestamp::from_nanos(row.get(2)),
    })
}

/// The head row, locked until the transaction ends.
struct PgHeadLock<'a> {
    log: &'a PgLog,
    /// A connection inside `BEGIN … SELECT … FOR UPDATE`; dropped without a COMMIT, the
    /// connection closes and the server rolls the transaction back.
    client: Option<Client>,
    head: Head,
}

impl HeadLock for PgHeadLock<'_> {
    fn head(&self) -> Head {
        self.head
    }

    fn append(mut self: Box<Self>, mut batch: AppendBatch) -> Result<AppendStats> {
        let started = Instant::now();
        if batch.first_seq != self.head.seq + 1 || batch.head.seq + 1 != batch.first_seq + batch.records.len() as u64 {
            return Err(LogError::Conflict { expected: batch.first_seq.saturating_sub(1), found: self.head.seq });
        }
        let client = self.client.take().expect("a lock appends once");
        let pool = Arc::clone(&self.log.pool);
        let head = batch.head;
        let meta = std::mem::take(&mut batch.meta);
        let (client, write_us, commit_us) = self.log.run(async move {
            let write = async {
                rows::copy_in(&client, &batch, |e| pool.error("cannot append", e)).await?;
                // The metadata and the head in one statement, one round trip (typed, so not
                // prepared first).
                let (names, values): (Vec<String>, Vec<Vec<u8>>) = meta.into_iter().unzip();
                client
                    .execute_typed(
                        "WITH meta AS (INSERT INTO custos_meta (name, value) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value) \
                         UPDATE custos_head SET seq = $3, hash = $4, recorded_ns = $5",
                        &[
                            (&names, Type::TEXT_ARRAY),
                            (&values, Type::BYTEA_ARRAY),
                            (&(head.seq as i64), Type::INT8),
                            (&head.hash.as_slice(), Type::BYTEA),
                            (&head.recorded_at.nanos(), Type::INT8),
                        ],
                    )
                    .await
                    .map_err(|e| pool.error("cannot write metadata and move the head", e))?;
                Ok::<_, LogError>(())
            };
            write.await?;
            let written = Instant::now();
            custos_log::failpoint("append:before-batch");
            client.batch_execute("COMMIT").await.map_err(|e| pool.error("cannot commit the append", e))?;
            custos_log::failpoint("append:after-batch");
            let committed = Instant::now();
            Ok((client, (written - started).as_micros() as u64, (committed - written).as_micros() as u64))
        })?;
        self.log.pool.put(client);
        *self.log.head.lock().expect("head lock") = head;
        Ok(AppendStats { write_us, flush_us: commit_us, fsync_us: 0 })
    }
}

async fn upsert_meta(
    client: &impl tokio_postgres::GenericClient,
    meta: Vec<(String, Vec<u8>)>,
) -> Result<(), tokio_postgres::Error> {
    if meta.is_empty() {
        return Ok(());
    }
    let (names, values): (Vec<String>, Vec<Vec<u8>>) = meta.into_iter().unzip();
    client
        .execute(
            "INSERT INTO custos_meta (name, value) SELECT * FROM UNNEST($1::text[], $2::bytea[]) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&names, &values],
        )
        .await
        .map(|_| ())
}

impl Log for PgLog {
    fn location(&self) -> String {
        format!("the ledger in {}", self.shown)
    }

    fn head(&self) -> Head {
        *self.head.lock().expect("head lock")
    }

    fn shared_writers(&self) -> bool {
        true
    }

    fn latest_head(&self) -> Result<Head> {
        let head =
            self.query("cannot read the head", "SELECT seq, hash, recorded_ns FROM custos_head", vec![], |rows| {
                head_of(rows.first().ok_or_else(|| LogError::corrupt("the head row is missing"))?)
            })?;
        *self.head.lock().expect("head lock") = head;
        Ok(head)
    }

    fn lock_head(&self) -> Result<Box<dyn HeadLock + '_>> {
        self.refuse_writes()?;
        let pool = Arc::clone(&self.pool);
        let (client, head) = self.run(async move {
            let client = pool.get().await?;
            // One round trip: the simple protocol takes both statements at once.
            let messages = client
                .simple_query("BEGIN; SELECT seq, encode(hash, 'hex'), recorded_ns FROM custos_head FOR UPDATE")
                .await
                .map_err(|e| pool.error("cannot lock the head", e))?;
            let row = messages
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .ok_or_else(|| LogError::corrupt("custos_head has no row"))?;
            Ok((client, head_of_text(row)?))
        })?;
        *self.head.lock().expect("head lock") = head;
        Ok(Box::new(PgHeadLock { log: self, client: Some(client), head }))
    }

    fn record(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        self.query(
            "cannot read an event",
            "SELECT envelope FROM custos_events WHERE seq = $1",
            vec![seq_param(seq)],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn for_each_record(&self, from: Seq, f: &mut dyn FnMut(Seq, &[u8]) -> ControlFlow<()>) -> Result<()> {
        let mut next = from.max(1);
        loop {
            let rows: Vec<(Seq, Vec<u8>)> = self.query(
                "cannot read events",
                "SELECT seq, envelope FROM custos_events WHERE seq >= $1 ORDER BY seq LIMIT 4096",
                vec![seq_param(next)],
                |rows| Ok(rows.iter().map(|r| (seq_of(r.get(0)), r.get(1))).collect()),
            )?;
            for (seq, record) in &rows {
                if f(*seq, record).is_break() {
                    return Ok(());
                }
            }
            match rows.last() {
                Some((last, _)) if rows.len() as i64 == SCAN_WINDOW_ROWS => next = last + 1,
                _ => return Ok(()),
            }
        }
    }

    fn stream_seqs(&self, stream: &StreamId) -> Result<Vec<Seq>> {
        self.query(
            "cannot read a stream",
            "SELECT seq FROM custos_events WHERE stream = $1 ORDER BY stream_version",
            vec![Param::Text(stream.as_str().to_string())],
            |rows| Ok(rows.iter().map(|r| seq_of(r.get(0))).collect()),
        )
    }

    fn event_id_seqs(&self, id: &EventId) -> Result<Vec<Seq>> {
        self.query(
            "cannot look up an event id",
            "SELECT seq FROM custos_events WHERE event_id = $1",
            vec![Param::Text(id.as_str().to_string())],
            |rows| Ok(rows.iter().map(|r| seq_of(r.get(0))).collect()),
        )
    }

    fn time_seqs(&self, index: TimeIndex, lo: Timestamp, hi: Timestamp) -> Result<Vec<Seq>> {
        let sql = match index {
            TimeIndex::OccurredAt => "SELECT seq FROM custos_events WHERE occurred_ns BETWEEN $1 AND $2 ORDER BY seq",
            TimeIndex::LossTime => "SELECT seq FROM custos_events WHERE loss_ns BETWEEN $1 AND $2 ORDER BY seq",
        };
        self.query("cannot read events by time", sql, vec![Param::I64(lo.nanos()), Param::I64(hi.nanos())], |rows| {
            Ok(rows.iter().map(|r| seq_of(r.get(0))).collect())
        })
    }

    fn flags(&self) -> Result<Vec<(Seq, Seq)>> {
        self.query(
            "cannot read the flags",
            "SELECT flag_of, seq FROM custos_events WHERE flag_of IS NOT NULL ORDER BY flag_of, seq",
            vec![],
            |rows| Ok(rows.iter().map(|r| (seq_of(r.get(0)), seq_of(r.get(1)))).collect()),
        )
    }

    fn check_index(&self, up_to: Seq, expected: Vec<IndexEntry>) -> Result<Vec<IndexFinding>> {
        let expected = rows::Expected::of(expected);
        let mut checker = rows::Checker::new(expected);
        let mut next: Seq = 1;
        loop {
            let stored: Vec<EventRow> = self.query(
                "cannot read events",
                rows::SELECT_CHECKED,
                vec![seq_param(next), seq_param(up_to)],
                |rows| rows.iter().map(EventRow::from_row).collect(),
            )?;
            for row in &stored {
                checker.row(row);
            }
            match stored.last() {
                Some(last) if stored.len() as i64 == SCAN_WINDOW_ROWS => next = last.seq + 1,
                _ => break,
            }
        }
        Ok(checker.end())
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.query(
            "cannot read metadata",
            "SELECT value FROM custos_meta WHERE name = $1",
            vec![Param::Text(name.to_string())],
            |rows| Ok(rows.first().map(|r| r.get(0))),
        )
    }

    fn list_meta(&self, prefix: &str) -> Result<Vec<String>> {
        self.query(
            "cannot list metadata",
            "SELECT name FROM custos_meta WHERE starts_with(name, $1) ORDER BY name",
            vec![Param::Text(prefix.to_string())],
            |rows| Ok(rows.iter().map(|r| r.get(0)).collect()),
        )
    }

    fn write_meta(&self, put: Vec<(String, Vec<u8>)>, remove: Vec<String>) -> Result<()> {
        self.refuse_writes()?;
        let pool = Arc::clone(&self.pool);
        self.run(async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await.map_err(|e| pool.error("cannot begin a transaction", e))?;
            if !remove.is_empty() {
                tx.execute("DELETE FROM custos_meta WHERE name = ANY($1)", &[&remove])
                    .await
                    .map_err(|e| pool.error("cannot remove metadata", e))?;
            }
            upsert_meta(&tx, put).await.map_err(|e| pool.error("cannot write metadata", e))?;
            custos_log::failpoint("meta:after-batch");
            tx.commit().await.map_err(|e| pool.error("cannot commit metadata", e))?;
            pool.put(client);
            Ok(())
        })
    }

    fn remove_meta_prefix(&self, prefix: &str) -> Result<()> {
        self.refuse_writes()?;
        self.query(
            "cannot remove metadata",
            "DELETE FROM custos_meta WHERE starts_with(name, $1) RETURNING 1",
            vec![Param::Text(prefix.to_string())],
            |_| Ok(()),
        )
    }

    fn sync(&self) -> Result<()> {
        // Every write is a committed transaction, and commits are durable (synchronous_commit
        // is checked on open).
        Ok(())
    }

    fn maintain(&self) -> Result<()> {
        // The server's autovacuum keeps the tables; nothing to do here.
        Ok(())
    }

    fn recover(&self) -> Result<Head> {
        self.pool.idle.lock().expect("pool lock").clear();
        self.latest_head()
    }

    fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().expect("notices lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\nother:5432:db:u:nope\nlocalhost:*:custos:alice:s\\:ecret\n*:*:*:*:fallback\n";
        assert_eq!(pgpass_lookup(text, "localhost", 5433, "custos", "alice").as_deref(), Some("s:ecret"));
        assert_eq!(pgpass_lookup(text, "db.example", 5432, "x", "bob").as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", 1, "d", "u"), None);
    }

    #[test]
    fn a_url_with_a_password_is_refused_and_never_shown() {
        let err = Target::parse("postgres://alice:hunter2@localhost:5432/custos").unwrap_err().to_string();
        assert!(err.contains("PGPASSWORD") && !err.contains("hunter2"), "{err}");
        let t = Target::parse("postgresql://alice@127.0.0.1:5433/ledger").unwrap();
        assert_eq!(t.shown(), "postgres://alice@127.0.0.1:5433/ledger");
        assert!(Target::is_url("postgres://x") && Target::is_url("postgresql://x") && !Target::is_url("./data"));
        // A scheme is case-insensitive, and a near-URL is never a folder's name.
        for near in ["POSTGRES://x", "Postgres://x", " postgres://x", "postgres:/x", "PostgreSQL:x"] {
            assert!(Target::is_url(near), "{near}");
        }
        assert_eq!(Target::parse("POSTGRES://alice@db:5433/l").unwrap().shown(), "postgres://alice@db:5433/l");
        let err = Target::parse("postgres:/alice@db/l").unwrap_err().to_string();
        assert!(err.contains("starts postgres://USER@HOST:PORT/DB"), "{err}");
    }
}
