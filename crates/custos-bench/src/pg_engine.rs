//! The PostgreSQL column of the bench (`--postgres URL`): the same workload, the same
//! questions at the same moments, on the scale-out engine, with PostgreSQL's own `COPY` as the
//! raw limit, measured in the same run as sled.
//!
//! Two raw limits, because they answer different questions: `COPY` of the workload CSV into a
//! table of its ten columns without indexes (what the server can ingest at all), and `COPY` of
//! the ledger's own rows (envelopes and typed columns, as the import wrote them) into a table
//! with `custos_events`' definition and indexes (what any loader of this schema pays on this
//! server).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, NoTls};

/// An administrative connection to the server the `--postgres` URL names (its database is
/// where `CREATE DATABASE` runs; the bench's own databases are made beside it).
pub struct Server {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The URL without its database, e.g. `postgres://postgres@127.0.0.1:55432`.
    base: String,
}

impl Server {
    pub fn connect(url: &str) -> Result<Server> {
        let (base, _) = url.rsplit_once('/').context("--postgres wants postgres://USER@HOST:PORT/DB")?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let (client, conn) =
            rt.block_on(tokio_postgres::connect(url, NoTls)).with_context(|| format!("connect {url}"))?;
        rt.spawn(conn);
        Ok(Server { rt, client, base: base.to_string() })
    }

    /// A fresh, empty database named `name` (dropped first when it exists); returns its URL.
    pub fn fresh_db(&self, name: &str) -> Result<String> {
        self.rt.block_on(async {
            self.client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
            self.client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
            Ok::<_, tokio_postgres::Error>(())
        })?;
        Ok(format!("{}/{name}", self.base))
    }

    pub fn drop_db(&self, name: &str) -> Result<()> {
        self.rt.block_on(self.client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))?;
        Ok(())
    }

    fn connect_to(&self, url: &str) -> Result<Client> {
        let (client, conn) = self.rt.block_on(tokio_postgres::connect(url, NoTls))?;
        self.rt.spawn(conn);
        Ok(client)
    }

    /// Events/s of `COPY … FROM STDIN (FORMAT csv)` of the workload into a fresh table of its
    /// columns without indexes, in one transaction, committed.
    pub fn raw_csv_copy(&self, csv: &Path) -> Result<f64> {
        let url = self.fresh_db("custos_bench_rawcsv")?;
        let client = self.connect_to(&url)?;
        let bytes = std::fs::read(csv)?;
        let header = bytes.split(|b| *b == b'\n').next().context("empty CSV")?;
        let columns: Vec<String> =
            String::from_utf8_lossy(header).trim().split(',').map(|c| format!("\"{c}\" text")).collect();
        let rows = self.rt.block_on(async {
            client.batch_execute(&format!("CREATE TABLE workload ({})", columns.join(", "))).await?;
            let started = Instant::now();
            client.batch_execute("BEGIN").await?;
            let sink = client.copy_in("COPY workload FROM STDIN (FORMAT csv, HEADER true)").await?;
            futures_send(sink, bytes).await?;
            client.batch_execute("COMMIT").await?;
            let n: i64 = client.query_one("SELECT count(*) FROM workload", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>((n, started.elapsed()))
        })?;
        drop(client);
        self.drop_db("custos_bench_rawcsv")?;
        Ok(rows.0 as f64 / rows.1.as_secs_f64())
    }

    /// Events/s of a binary `COPY` of the rows a ledger's import wrote (read from `ledger_db`)
    /// into a fresh table `LIKE custos_events INCLUDING ALL` (its constraints and indexes),
    /// in one transaction, committed.
    pub fn raw_rows_copy(&self, ledger_url: &str) -> Result<f64> {
        let from = self.connect_to(ledger_url)?;
        let url = self.fresh_db("custos_bench_rawrows")?;
        let to = self.connect_to(&url)?;
        let ddl = self.rt.block_on(async {
            // The table's definition, read back from the ledger's database.
            let rows = from
                .query(
                    "SELECT 'CREATE TABLE custos_events (' || string_agg(format('%I %s%s', attname, \
                     format_type(atttypid, atttypmod), CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END), ', ' \
                     ORDER BY attnum) || ')' FROM pg_attribute WHERE attrelid = 'custos_events'::regclass \
                     AND attnum > 0 AND NOT attisdropped",
                    &[],
                )
                .await?;
            let mut ddl: Vec<String> = vec![rows[0].get(0)];
            for r in from
                .query(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'custos_events'::regclass",
                    &[],
                )
                .await?
            {
                ddl.push(format!("ALTER TABLE custos_events ADD {}", r.get::<_, String>(0)));
            }
            for r in from
                .query(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'custos_events' AND indexname NOT IN \
                     (SELECT conname FROM pg_constraint WHERE conrelid = 'custos_events'::regclass)",
                    &[],
                )
                .await?
            {
                ddl.push(r.get(0));
            }
            Ok::<_, tokio_postgres::Error>(ddl)
        })?;
        let data = self.rt.block_on(async {
            use futures_util::TryStreamExt;
            let stream = from.copy_out("COPY custos_events TO STDOUT (FORMAT binary)").await?;
            let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
            Ok::<_, tokio_postgres::Error>(chunks.concat())
        })?;
        let (n, elapsed) = self.rt.block_on(async {
            for statement in &ddl {
                to.batch_execute(statement).await?;
            }
            let started = Instant::now();
            to.batch_execute("BEGIN").await?;
            let sink = to.copy_in("COPY custos_events FROM STDIN (FORMAT binary)").await?;
            futures_send(sink, data).await?;
            to.batch_execute("COMMIT").await?;
            let n: i64 = to.query_one("SELECT count(*) FROM custos_events", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>((n, started.elapsed()))
        })?;
        drop((from, to));
        self.drop_db("custos_bench_rawrows")?;
        Ok(n as f64 / elapsed.as_secs_f64())
    }
}

/// Sends `bytes` through a `COPY … FROM STDIN` sink in 1 MiB chunks and finishes it.
async fn futures_send(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    bytes: Vec<u8>,
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::SinkExt;
    let mut sink = Box::pin(sink);
    let bytes = bytes::Bytes::from(bytes);
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + (1 << 20)).min(bytes.len());
        sink.as_mut().send(bytes.slice(at..end)).await?;
        at = end;
    }
    sink.as_mut().finish().await
}

/// Durable appends/s from two `custos-bench --append-worker` processes of `callers` callers
/// each on the ledger at `url`, started together: all appends over the span from the first
/// start to the last end.
pub fn two_processes(url: &str, callers: usize, per_process: usize) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for p in 0..2 {
        let mut child = Process::new(&exe)
            .args(["--append-worker", url, "--callers", &callers.to_string(), "--total", &per_process.to_string()])
            .args(["--prefix", &format!("p{p}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("append worker {p} did not start: {line:?}");
        }
        children.push((child, out));
    }
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().context("stdin")?, "go")?;
    }
    let (mut first, mut last) = (u128::MAX, 0u128);
    for (mut child, mut out) in children {
        let mut line = String::new();
        out.read_line(&mut line)?;
        let span: Vec<u128> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if span.len() != 2 || !child.wait()?.success() {
            bail!("append worker failed: {line:?}");
        }
        first = first.min(span[0]);
        last = last.max(span[1]);
    }
    let span = Duration::from_nanos(last.saturating_sub(first) as u64);
    Ok((2 * per_process) as f64 / span.as_secs_f64())
}
