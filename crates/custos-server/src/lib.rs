//! `custos serve`: one process holds the ledger (sled allows one), and serves it over HTTP to
//! everyone else. The only crate that knows HTTP.
//!
//! Reads mirror the CLI's queries with the same parameters and the same bytes (`format=json`
//! by default, `table` and `csv` too). Writes go through the ledger's group commit and are
//! answered only once durable. Two bearer tokens: read (auditors) and write (operators, who may
//! also read); no token, no access, except `GET /health`. Every request body, batch and range
//! is bounded, and bad input gets a 4xx with `{"error": {"code", "message"}}`, never a 5xx.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use custos_domain::{AccountId, Asset, Seq, Timestamp};
use custos_ledger::{Bound, ErrorKind, Histogram, Ledger, LedgerError, Outcome, VerifyReport, LATENCY_BUCKETS_US};
use custos_report::{Format, Report};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

/// Limits, each named, each answered with a 4xx when exceeded.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub read_token: String,
    pub write_token: String,
    /// Bodies of single commands and other small requests.
    pub body_bytes_max: usize,
    /// Bodies of `POST /v1/import`.
    pub import_bytes_max: u64,
    /// Lines in one import request.
    pub import_lines_max: u64,
    /// Rows of one `GET /v1/log` page.
    pub log_limit_max: u64,
    /// The most accounts one `balances` query may name.
    pub accounts_per_query_max: usize,
    /// The widest `replay` window, in seconds.
    pub replay_window_seconds_max: i64,
    /// How long a connection may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open waiting for the next request (before any token is
    /// checked, so a client that sends nothing holds nothing for long).
    pub header_timeout: Duration,
    /// The longest pause between two pieces of a request body (a slow import is fine; a
    /// stalled one is cut off with 408).
    pub body_idle_timeout: Duration,
    /// How long a request with a small body (a command, a verify) has in all, to arrive and be
    /// answered: the idle timeout alone would let such a body trickle in for hours.
    pub small_request_deadline: Duration,
    /// How long a shutdown waits for open connections (live tails among them) before closing
    /// the ledger anyway.
    pub shutdown_grace: Duration,
    /// Queries answered at once (each may hold a whole answer in memory: all balances, a
    /// replay window); more wait for a turn.
    pub queries_in_flight_max: usize,
    /// How long a query waits for a turn before it is answered 503 `busy` (retry later).
    pub query_wait_max: Duration,
}

impl ServerConfig {
    pub fn new(read_token: String, write_token: String) -> ServerConfig {
        ServerConfig {
            read_token,
            write_token,
            body_bytes_max: 64 * 1024,
            import_bytes_max: 64 * 1024 * 1024,
            import_lines_max: 250_000,
            log_limit_max: 10_000,
            accounts_per_query_max: 10_000,
            replay_window_seconds_max: 31 * 86_400,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            small_request_deadline: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            queries_in_flight_max: 4,
            query_wait_max: Duration::from_secs(5),
        }
    }
}

/// Imports served at once.
const IMPORTS_AT_ONCE: usize = 2;
/// The slowest an import body may average, past its first `body_idle_timeout`.
const IMPORT_BODY_BYTES_PER_S_MIN: u64 = 1024;

/// Commands per batch handed to the writer during an import.
const IMPORT_BATCH_COMMANDS: usize = 4096;
/// Events read per step while a tail catches up.
const TAIL_CATCH_UP_EVENTS: u64 = 1000;

/// A verify job's answer and when it came.
type JobResult = Arc<Mutex<Option<(Result<VerifyReport, String>, Instant)>>>;

struct Job {
    done: Arc<AtomicU64>,
    total: u64,
    result: JobResult,
}

/// A finished verify job's answer is kept this long, then forgotten (404).
const VERIFY_JOB_KEPT: Duration = Duration::from_secs(15 * 60);
/// At most this many finished jobs are kept (the oldest go first).
const VERIFY_JOBS_KEPT_MAX: usize = 16;

impl Job {
    fn finished_at(&self) -> Option<Instant> {
        self.result.lock().expect("job lock").as_ref().map(|(_, at)| *at)
    }
}

/// Forgets finished jobs past their time or past the count; returns the running job, if any.
fn prune_jobs(jobs: &mut HashMap<u64, Job>) -> Option<u64> {
    jobs.retain(|_, j| j.finished_at().is_none_or(|at| at.elapsed() < VERIFY_JOB_KEPT));
    let mut finished: Vec<(Instant, u64)> = jobs.iter().filter_map(|(id, j)| Some((j.finished_at()?, *id))).collect();
    finished.sort_unstable();
    let excess = finished.len().saturating_sub(VERIFY_JOBS_KEPT_MAX);
    for (_, id) in finished.into_iter().take(excess) {
        jobs.remove(&id);
    }
    jobs.iter().find(|(_, j)| j.finished_at().is_none()).map(|(id, _)| *id)
}

#[derive(Clone)]
pub struct App {
    ledger: Arc<Ledger>,
    config: Arc<ServerConfig>,
    jobs: Arc<Mutex<HashMap<u64, Job>>>,
    next_job: Arc<AtomicU64>,
    query_us: Arc<Histogram>,
    requests_refused: Arc<AtomicU64>,
    /// Turns for queries (`ServerConfig::queries_in_flight_max`).
    query_turns: Arc<tokio::sync::Semaphore>,
    queries_refused: Arc<AtomicU64>,
    import_slots: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Read,
    Write,
}

/// An error answer: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// Each kind of ledger error as HTTP (DESIGN.md, "Errors"): a bad request is the client's
/// (400), an IO fault is the server's and may pass (503), corruption names its seq (500).
impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e.kind() {
            ErrorKind::BadRequest => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            ErrorKind::Io => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "io_error", e.to_string()),
            ErrorKind::Corruption => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corruption", e.to_string()),
        }
    }
}

impl From<custos_report::ReportError> for ApiError {
    fn from(e: custos_report::ReportError) -> Self {
        match e {
            custos_report::ReportError::Ledger(l) => l.into(),
            other => ApiError::bad("bad_request", other.to_string()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad("bad_query", e.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Equal-length byte strings compared without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl App {
    pub fn new(ledger: Arc<Ledger>, config: ServerConfig) -> App {
        App {
            ledger,
            jobs: Arc::default(),
            next_job: Arc::new(AtomicU64::new(1)),
            query_us: Arc::new(Histogram::new(LATENCY_BUCKETS_US)),
            requests_refused: Arc::default(),
            query_turns: Arc::new(tokio::sync::Semaphore::new(config.queries_in_flight_max.max(1))),
            queries_refused: Arc::default(),
            import_slots: Arc::new(tokio::sync::Semaphore::new(IMPORTS_AT_ONCE)),
            config: Arc::new(config),
        }
    }

    fn role(&self, headers: &HeaderMap) -> ApiResult<Role> {
        let refuse = |code, msg: &str| {
            self.requests_refused.fetch_add(1, Ordering::Relaxed);
            ApiError::new(StatusCode::UNAUTHORIZED, code, msg)
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(refuse("unauthorized", "an Authorization: Bearer token is required"));
        };
        // The scheme's name is case-insensitive (RFC 9110, 11.1).
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .map_or("", |(_, t)| t)
            .as_bytes();
        // Compare against both tokens every time, so timing says nothing about which matched.
        let write = constant_time_eq(token, self.config.write_token.as_bytes());
        let read = constant_time_eq(token, self.config.read_token.as_bytes());
        match (write, read) {
            (true, _) => Ok(Role::Write),
            (false, true) => Ok(Role::Read),
            _ => Err(refuse("unauthorized", "the bearer token is not valid")),
        }
    }

    fn require(&self, headers: &HeaderMap, needed: Role) -> ApiResult<()> {
        let role = self.role(headers)?;
        if needed == Role::Write && role != Role::Write {
            self.requests_refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this token may read but not write"));
        }
        Ok(())
    }

    /// Runs a blocking ledger query off the async workers, timing it.
    /// At most `queries_in_flight_max` at once, so that the memory their answers hold is
    /// bounded however many clients ask; one that waits past `query_wait_max` is 503 `busy`.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> ApiResult<T> + Send + 'static,
    ) -> ApiResult<(T, tokio::sync::OwnedSemaphorePermit)> {
        let wait = self.config.query_wait_max;
        let turn = match tokio::time::timeout(wait, Arc::clone(&self.query_turns).acquire_owned()).await {
            Ok(Ok(turn)) => turn,
            _ => {
                self.queries_refused.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!(
                        "{} queries are being answered and this one waited {} s for a turn; retry later",
                        self.config.queries_in_flight_max,
                        wait.as_secs_f64()
                    ),
                ));
            }
        };
        let ledger = Arc::clone(&self.ledger);
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || f(&ledger).map(|value| (value, turn)))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        self.query_us.observe(started.elapsed().as_micros() as u64);
        out
    }
}

/// `ServerConfig::small_request_deadline` as a layer (408 past it).
fn small_body_deadline(config: &ServerConfig) -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.small_request_deadline)
}

pub fn router(app: App) -> Router {
    let import_limit = DefaultBodyLimit::max(app.config.import_bytes_max as usize);
    let body_limit = DefaultBodyLimit::max(app.config.body_bytes_max);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/balances", get(balances))
        .route("/v1/losses", get(losses))
        .route("/v1/history", get(history))
        .route("/v1/replay", get(replay))
        .route("/v1/withdrawals", get(withdrawals))
        .route("/v1/assets", get(assets))
        .route("/v1/log", get(log))
        .route("/v1/digest", get(digest))
        .route("/v1/proof/inclusion", get(inclusion_proof))
        .route("/v1/proof/consistency", get(consistency_proof))
        .route("/v1/verify", post(verify_start).layer::<_, std::convert::Infallible>(small_body_deadline(&app.config)))
        .route("/v1/verify/{job}", get(verify_status))
        .route("/v1/tail", get(tail))
        .route(
            "/v1/commands",
            post(command).layer::<_, std::convert::Infallible>(small_body_deadline(&app.config)).layer(body_limit),
        )
        .route("/v1/import", post(import).layer(import_limit))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(app)
}

/// Serves until `shutdown` resolves; in-flight requests finish (writes are answered as durable
/// or not applied), then the ledger is closed.
pub async fn serve(
    ledger: Arc<Ledger>,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, body_timeout, grace) =
        (config.header_timeout, config.body_idle_timeout, config.shutdown_grace);
    let app = App::new(Arc::clone(&ledger), config);
    let service = router(app).layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout));
    // One HTTP/1.1 connection per accepted socket, with a deadline for its headers (axum::serve
    // sets none: slow-header and idle connections stayed open indefinitely).
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {} s; closing the ledger", grace.as_secs());
    }
    ledger.close().map_err(std::io::Error::other)?;
    Ok(())
}

/// A time parameter; a bare date is the end of that day, except for a lower bound (`from`,
/// `recorded_from`), where it is the start.
fn time_param(name: &'static str, v: &Option<String>) -> ApiResult<Option<Timestamp>> {
    let lower = name == "from" || name.ends_with("_from");
    let parse = if lower { Timestamp::parse_query_start } else { Timestamp::parse_query };
    v.as_deref().map(|s| parse(s).map_err(|e| ApiError::bad("bad_time", format!("{name}: {e}")))).transpose()
}

fn account_param(v: &Option<String>) -> ApiResult<Option<AccountId>> {
    v.as_deref().map(AccountId::new).transpose().map_err(|e| ApiError::bad("bad_account", e.to_string()))
}

fn format_param(v: &Option<String>) -> ApiResult<Format> {
    match v.as_deref() {
        None => Ok(Format::Json),
        Some(s) => Format::parse(s)
            .ok_or_else(|| ApiError::bad("bad_format", format!("format {s:?}: expected table, csv or json"))),
    }
}

/// Sends `report` as it is rendered: a blocking task writes it in 64 KiB pieces into a small
/// channel the response body reads, so the whole answer never sits in memory as text. The
/// query's turn is held until the last piece is sent, or until the client has not taken one
/// for `body_idle_timeout` (then the answer is cut off and the turn freed).
/// The header that names what a query asked about that the ledger has never seen, on an
/// answer that has rows for the rest.
pub const NEVER_SEEN_HEADER: &str = "custos-never-seen";

/// `report`, checked for the names the query gave that the ledger has never seen up to
/// `known_seq`: 404 `never_seen` when nothing is shown, else the report and what to say.
fn checked(
    l: &Ledger,
    known_seq: Seq,
    report: Report,
    accounts: &[AccountId],
    asset: Option<&Asset>,
) -> ApiResult<(Report, Option<String>)> {
    let unknown = custos_report::never_seen(l, known_seq, &report, accounts, asset)?;
    if unknown.is_empty() {
        return Ok((report, None));
    }
    let message = custos_report::never_seen_message(&unknown, known_seq);
    if report.rows.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "never_seen", message));
    }
    Ok((report, Some(message)))
}

fn respond(report: Report, format: Format, turn: tokio::sync::OwnedSemaphorePermit, app: &App) -> Response {
    respond_noting(report, format, turn, app, None)
}

/// [`respond`], with the [`NEVER_SEEN_HEADER`] when there is something to say.
fn respond_noting(
    report: Report,
    format: Format,
    turn: tokio::sync::OwnedSemaphorePermit,
    app: &App,
    never_seen: Option<String>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (handle, wait) = (tokio::runtime::Handle::current(), app.config.body_idle_timeout);
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let mut out = Pieces { tx, handle, wait, buf: Vec::with_capacity(PIECE_BYTES) };
        if report.write(format, &mut out).is_ok() {
            let _ = std::io::Write::flush(&mut out);
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }));
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if let Some(v) = never_seen.and_then(|m| HeaderValue::from_str(&m).ok()) {
        response.headers_mut().insert(NEVER_SEEN_HEADER, v);
    }
    response
}

/// The size of the pieces an answer is sent in.
const PIECE_BYTES: usize = 64 * 1024;

/// A writer that sends what it is given, in pieces, to a response body.
struct Pieces {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    handle: tokio::runtime::Handle,
    wait: Duration,
    buf: Vec<u8>,
}

impl Pieces {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE_BYTES)));
        let sent = self.handle.block_on(tokio::time::timeout(self.wait, self.tx.send(Ok(piece))));
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client stopped reading")),
        }
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= PIECE_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn bound_of(
    ledger: &Ledger,
    as_of: Option<Timestamp>,
    known_at: Option<Timestamp>,
    at_seq: Option<Seq>,
) -> ApiResult<Bound> {
    if let Some(n) = at_seq {
        if known_at.is_some() {
            return Err(ApiError::bad("bad_query", "at_seq and known_at cannot be combined"));
        }
        let head = ledger.head().seq;
        if n > head {
            return Err(ApiError::bad(
                "out_of_range",
                format!("at_seq {n} is beyond the head of the log (seq {head})"),
            ));
        }
    }
    Ok(ledger.bound(as_of, known_at, at_seq)?)
}

/// 200 while the ledger can write; 503 with the reason while it cannot (the last append failed
/// and none has succeeded since, or the writer stopped). Queries may still be answered then.
async fn health(State(app): State<App>) -> Response {
    let head_seq = app.ledger.head().seq;
    match app.ledger.write_fault() {
        None => Json(json!({"status": "ok", "head_seq": head_seq})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason, "head_seq": head_seq})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BalancesQ {
    account: Option<String>,
    /// Several accounts, comma-separated (an id holds no comma).
    accounts: Option<String>,
    asset: Option<String>,
    as_of: Option<String>,
    known_at: Option<String>,
    at_seq: Option<Seq>,
    all: Option<bool>,
    format: Option<String>,
}

async fn balances(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<BalancesQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let mut accounts: Vec<AccountId> = account_param(&q.account)?.into_iter().collect();
    for a in q.accounts.as_deref().into_iter().flat_map(|s| s.split(',')) {
        let a = AccountId::new(a.trim()).map_err(|e| ApiError::bad("bad_account", format!("accounts: {e}")))?;
        if !accounts.contains(&a) {
            accounts.push(a);
        }
    }
    if accounts.len() > app.config.accounts_per_query_max {
        return Err(ApiError::bad(
            "range_too_large",
            format!("at most {} accounts in one query", app.config.accounts_per_query_max),
        ));
    }
    let asset =
        q.asset.as_deref().map(Asset::new).transpose().map_err(|e| ApiError::bad("bad_asset", e.to_string()))?;
    let (as_of, known_at) = (time_param("as_of", &q.as_of)?, time_param("known_at", &q.known_at)?);
    let ((report, never_seen), turn) = app
        .query(move |l| {
            let bound = bound_of(l, as_of, known_at, q.at_seq)?;
            let report = custos_report::balances(l, &bound, &accounts, asset.as_ref(), q.all.unwrap_or(false))?;
            checked(l, bound.known_seq, report, &accounts, asset.as_ref())
        })
        .await?;
    Ok(respond_noting(report, format, turn, &app, never_seen))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LossesQ {
    as_of: Option<String>,
    known_at: Option<String>,
    at_seq: Option<Seq>,
    detail: Option<bool>,
    format: Option<String>,
}

async fn losses(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<LossesQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let (as_of, known_at) = (time_param("as_of", &q.as_of)?, time_param("known_at", &q.known_at)?);
    let (report, turn) = app
        .query(move |l| {
            let bound = bound_of(l, as_of, known_at, q.at_seq)?;
            Ok(custos_report::losses(&l.losses_at(&bound)?, &bound, q.detail.unwrap_or(false)))
        })
        .await?;
    Ok(respond(report, format, turn, &app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQ {
    account: String,
    asset: Option<String>,
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
    known_at: Option<String>,
    at_seq: Option<Seq>,
    format: Option<String>,
}

async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<HistoryQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let account = AccountId::new(&q.account).map_err(|e| ApiError::bad("bad_account", e.to_string()))?;
    let asset =
        q.asset.as_deref().map(Asset::new).transpose().map_err(|e| ApiError::bad("bad_asset", e.to_string()))?;
    let (from, to, known_at) =
        (time_param("from", &q.from)?, time_param("to", &q.to)?, time_param("known_at", &q.known_at)?);
    let as_of = time_param("as_of", &q.as_of)?;
    let (report, turn) = app
        .query(move |l| {
            let bound = bound_of(l, as_of, known_at, q.at_seq)?;
            let report = custos_report::history(l, &account, asset.as_ref(), from, to, &bound)?;
            checked(l, bound.known_seq, report, std::slice::from_ref(&account), asset.as_ref())
        })
        .await?;
    Ok(respond_noting(report.0, format, turn, &app, report.1))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetsQ {
    known_at: Option<String>,
    at_seq: Option<Seq>,
    format: Option<String>,
}

async fn assets(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<AssetsQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let known_at = time_param("known_at", &q.known_at)?;
    let (report, turn) = app
        .query(move |l| {
            let bound = bound_of(l, None, known_at, q.at_seq)?;
            Ok(custos_report::assets(l, &bound)?)
        })
        .await?;
    Ok(respond(report, format, turn, &app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawalsQ {
    account: Option<String>,
    unauthorized: Option<bool>,
    as_of: Option<String>,
    known_at: Option<String>,
    at_seq: Option<Seq>,
    format: Option<String>,
}

async fn withdrawals(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<WithdrawalsQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let account = account_param(&q.account)?;
    let (as_of, known_at) = (time_param("as_of", &q.as_of)?, time_param("known_at", &q.known_at)?);
    let (report, turn) = app
        .query(move |l| {
            let bound = bound_of(l, as_of, known_at, q.at_seq)?;
            let report = custos_report::withdrawals(l, &bound, account.as_ref(), q.unauthorized.unwrap_or(false))?;
            checked(l, bound.known_seq, report, account.as_slice(), None)
        })
        .await?;
    Ok(respond_noting(report.0, format, turn, &app, report.1))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQ {
    from: String,
    to: String,
    known_at: Option<String>,
    at_seq: Option<Seq>,
    order: Option<String>,
    format: Option<String>,
}

async fn replay(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<ReplayQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let from = time_param("from", &Some(q.from.clone()))?.expect("given");
    let to = time_param("to", &Some(q.to.clone()))?.expect("given");
    if from > to {
        return Err(ApiError::bad("bad_range", format!("from {from} is after to {to}")));
    }
    let max = app.config.replay_window_seconds_max;
    // In i128: the difference of two i64 nanosecond times can overflow an i64 (1678 to 2262
    // wrapped to a negative window and passed).
    if (i128::from(to.nanos()) - i128::from(from.nanos())) / 1_000_000_000 > i128::from(max) {
        return Err(ApiError::bad("range_too_large", format!("a replay window is at most {max} seconds")));
    }
    let known_at = time_param("known_at", &q.known_at)?;
    let order = match q.order.as_deref() {
        None => custos_ledger::ReplayOrder::Valid,
        Some(o) => custos_report::parse_replay_order(o).map_err(|e| ApiError::bad("bad_order", e))?,
    };
    let (report, turn) = app
        .query(move |l| {
            let bound = bound_of(l, None, known_at, q.at_seq)?;
            Ok(custos_report::replay(l, from, to, &bound, order, format)?)
        })
        .await?;
    Ok(respond(report, format, turn, &app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQ {
    from_seq: Option<Seq>,
    limit: Option<u64>,
    kind: Option<String>,
    account: Option<String>,
    from: Option<String>,
    to: Option<String>,
    recorded_from: Option<String>,
    recorded_to: Option<String>,
    format: Option<String>,
}

async fn log(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<LogQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let format = format_param(&q.format)?;
    let limit = q.limit.unwrap_or(100);
    let max = app.config.log_limit_max;
    if limit == 0 || limit > max {
        return Err(ApiError::bad("range_too_large", format!("limit must be 1..={max}")));
    }
    let from = q.from_seq.unwrap_or(1);
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(custos_domain::EventKind::parse_filter(k).map_err(|e| ApiError::bad("bad_kind", e))?),
    };
    let filter = custos_report::LogFilter {
        kind,
        account: account_param(&q.account)?,
        occurred: (time_param("from", &q.from)?, time_param("to", &q.to)?),
        recorded: (time_param("recorded_from", &q.recorded_from)?, time_param("recorded_to", &q.recorded_to)?),
    };
    let (report, turn) = app
        .query(move |l| {
            let head = l.head().seq;
            if from > head.saturating_add(1) {
                return Err(ApiError::bad(
                    "out_of_range",
                    format!("from_seq {from} is past the head of the log (seq {head}): nothing is there yet"),
                ));
            }
            let report = custos_report::log(l, from, limit, &filter)?;
            checked(l, l.head().seq, report, filter.account.as_slice(), None)
        })
        .await?;
    Ok(respond_noting(report.0, format, turn, &app, report.1))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQ {
    seq: Seq,
    size: Option<Seq>,
}

/// An RFC 9162 inclusion proof of the event at `seq` (the JSON of `custos prove --seq`).
async fn inclusion_proof(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<InclusionQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let (p, _turn) = app.query(move |l| Ok(l.inclusion_proof(q.seq, q.size)?)).await?;
    Ok(Json(custos_report::proofs::inclusion_json(&p)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQ {
    from: Seq,
    to: Seq,
}

/// An RFC 9162 consistency proof between two sizes (the JSON of `custos prove --from --to`).
async fn consistency_proof(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<ConsistencyQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let (p, _turn) = app.query(move |l| Ok(l.consistency_proof(q.from, q.to)?)).await?;
    Ok(Json(custos_report::proofs::consistency_json(&p)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestQ {
    at_seq: Option<Seq>,
}

/// The digest (chain link) and the Merkle tree head, at the head or `at_seq`: the fields of
/// `custos digest --format json`.
async fn digest(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<DigestQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let (h, _turn) = app.query(move |l| Ok(l.tree_head(q.at_seq)?)).await?;
    Ok(Json(custos_report::proofs::tree_head_json(&h)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    digest: Option<String>,
}

async fn verify_start(State(app): State<App>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let body: VerifyBody = if body.is_empty() {
        VerifyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("bad_json", e.to_string()))?
    };
    let digest = body.digest.as_deref().map(custos_report::parse_digest).transpose()?;
    let done = Arc::new(AtomicU64::new(0));
    let result = Arc::new(Mutex::new(None));
    let total = app.ledger.head().seq;
    let id = {
        // One verify at a time reads the whole log; a second waits for the first's answer.
        let mut jobs = app.jobs.lock().expect("jobs lock");
        if let Some(running) = prune_jobs(&mut jobs) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "verify_running",
                format!("verify job {running} is running; poll /v1/verify/{running} for its answer"),
            ));
        }
        let id = app.next_job.fetch_add(1, Ordering::Relaxed);
        jobs.insert(id, Job { done: Arc::clone(&done), total, result: Arc::clone(&result) });
        id
    };
    let ledger = Arc::clone(&app.ledger);
    tokio::task::spawn_blocking(move || {
        // A job always ends, so that it never holds the one slot for verify jobs forever.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ledger.verify(digest, &mut |d, _| done.store(d, Ordering::Relaxed)).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| Err("verify stopped on an internal error (a bug: see the server's log)".into()));
        *result.lock().expect("job lock") = Some((r, Instant::now()));
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"job": id, "poll": format!("/v1/verify/{id}")}))).into_response())
}

async fn verify_status(State(app): State<App>, headers: HeaderMap, Path(job): Path<String>) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let id: u64 = job.parse().map_err(|_| ApiError::bad("bad_job", format!("job {job:?} is not a number")))?;
    let mut jobs = app.jobs.lock().expect("jobs lock");
    prune_jobs(&mut jobs);
    let job = jobs
        .get(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no verify job {id}")))?;
    let result = job.result.lock().expect("job lock");
    let body = match result.as_ref().map(|(r, _)| r) {
        None => json!({"job": id, "state": "running", "done": job.done.load(Ordering::Relaxed), "total": job.total}),
        Some(Err(e)) => json!({"job": id, "state": "failed", "error": e}),
        Some(Ok(r)) => {
            let mut v = custos_report::verify_json(r);
            v["job"] = json!(id);
            v["state"] = json!("done");
            v
        }
    };
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TailQ {
    from_seq: Option<Seq>,
}

/// Server-sent events from `from_seq` on: the log up to the head (catch-up), then each event
/// as it is committed. Every event once, in seq order; the SSE id is the seq, so a client
/// that reconnects resumes from the last id it saw plus one.
async fn tail(
    State(app): State<App>,
    headers: HeaderMap,
    q: Result<Query<TailQ>, QueryRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Read)?;
    let Query(q) = q?;
    let start = q.from_seq.unwrap_or(1).max(1);
    let rx = app.ledger.subscribe();
    let ledger = Arc::clone(&app.ledger);
    let stream = futures_util::stream::unfold(
        (start, rx, VecDeque::<SseEvent>::new(), ledger),
        |(mut next, mut rx, mut buffer, ledger)| async move {
            loop {
                if let Some(ev) = buffer.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(ev), (next, rx, buffer, ledger)));
                }
                let head = *rx.borrow_and_update();
                if next <= head {
                    let (from, limit) = (next, (head - next + 1).min(TAIL_CATCH_UP_EVENTS));
                    let l = Arc::clone(&ledger);
                    let page = tokio::task::spawn_blocking(move || {
                        custos_report::log(&l, from, limit, &custos_report::LogFilter::default())
                    })
                    .await
                    .ok()?
                    .ok()?;
                    for row in page.to_json()["rows"].as_array().cloned().unwrap_or_default() {
                        let seq = row["seq"].as_u64().unwrap_or(next);
                        let kind = row["kind"].as_str().unwrap_or("event").to_string();
                        buffer.push_back(SseEvent::default().id(seq.to_string()).event(kind).data(row.to_string()));
                        next = seq + 1;
                    }
                    continue;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn outcome_json(o: &Outcome) -> (StatusCode, Value) {
    match o {
        Ok(a) => (
            StatusCode::OK,
            json!({"id": a.id.as_str(), "seq": a.seq, "duplicate": a.duplicate, "new_asset": a.new_asset.map(|x| x.to_string())}),
        ),
        Err(r) => (StatusCode::CONFLICT, json!({"error": {"code": r.code(), "message": r.to_string()}})),
    }
}

/// One command, in the import format as a JSON object (`occurred_at` may be left out: now).
async fn command(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    app.require(&headers, Role::Write)?;
    let body = body.map_err(|e| ApiError::new(e.status(), "body_too_large", e.body_text()))?;
    let cmd = custos_ledger::parse_json_command(1, &body, false).map_err(|e| {
        ApiError::bad(
            "bad_command",
            format!("{}{}", e.field.map(|f| format!("field {f}: ")).unwrap_or_default(), e.message),
        )
    })?;
    let outcome = app.ledger.submit(cmd).await?;
    let (status, body) = outcome_json(&outcome);
    Ok((status, Json(body)).into_response())
}

/// A JSON Lines body of commands, streamed: parsed as it arrives and appended in batches.
/// Answers with the same summary as `custos import`.
async fn import(State(app): State<App>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    app.require(&headers, Role::Write)?;
    let cfg = &app.config;
    // Imports run one or two at a time (the writer takes them in turn anyway): a body and its
    // parsed batches are held only for those.
    let _slot = match tokio::time::timeout(cfg.query_wait_max, Arc::clone(&app.import_slots).acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("{IMPORTS_AT_ONCE} imports are running; retry later"),
            ))
        }
    };
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    {
        if len > cfg.import_bytes_max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("an import body is at most {} bytes", cfg.import_bytes_max),
            ));
        }
    }
    let started = Instant::now();
    let mut stream = body.into_data_stream();
    let mut splitter = custos_ledger::LineSplitter::default();
    let mut read = 0u64;
    let mut summary = ImportSummary::default();
    let mut batch: Vec<(u64, custos_domain::Command)> = Vec::new();
    let mut finished = false;
    while !finished {
        // (line number, its command or why not; None for a blank line), parsed as they come.
        let mut lines: Vec<(u64, Option<custos_ledger::ImportLine>)> = Vec::new();
        let mut emit = |raw: custos_ledger::RawLine<'_>| lines.push((raw.number, custos_ledger::json_line(raw)));
        match stream.next().await {
            Some(Ok(bytes)) => {
                read += bytes.len() as u64;
                // A body trickling in (one byte a second passes the idle timeout) holds a slot
                // and its connection: past the idle timeout it must average 1 KiB/s.
                let secs = started.elapsed().as_secs();
                if started.elapsed() > cfg.body_idle_timeout && read < secs.max(1) * IMPORT_BODY_BYTES_PER_S_MIN {
                    let why = format!("the body came slower than {IMPORT_BODY_BYTES_PER_S_MIN} bytes a second");
                    summary.submit(&app.ledger, &mut batch).await?;
                    return Ok(summary.refused(StatusCode::REQUEST_TIMEOUT, "body_too_slow", why, started));
                }
                if read > cfg.import_bytes_max {
                    let why = format!("an import body is at most {} bytes", cfg.import_bytes_max);
                    summary.submit(&app.ledger, &mut batch).await?;
                    return Ok(summary.refused(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", why, started));
                }
                splitter.push(&bytes, &mut emit);
            }
            Some(Err(e)) => {
                return Ok(summary.refused(StatusCode::BAD_REQUEST, "bad_body", e.to_string(), started));
            }
            None => {
                finished = true;
                splitter.finish(&mut emit);
            }
        }
        for (number, parsed) in lines {
            if number > cfg.import_lines_max {
                let why = format!("an import is at most {} lines", cfg.import_lines_max);
                summary.submit(&app.ledger, &mut batch).await?;
                return Ok(summary.refused(StatusCode::PAYLOAD_TOO_LARGE, "too_many_lines", why, started));
            }
            summary.lines = number;
            match parsed {
                None => {}
                Some(custos_ledger::ImportLine { line, command: Ok(cmd) }) => batch.push((line, cmd)),
                Some(custos_ledger::ImportLine { line, command: Err(e) }) => {
                    summary.reject(json!({"line": line, "message": e.to_string()}))
                }
            }
            if batch.len() >= IMPORT_BATCH_COMMANDS {
                summary.submit(&app.ledger, &mut batch).await?;
            }
        }
    }
    summary.submit(&app.ledger, &mut batch).await?;
    let status = if summary.rejected == 0 { StatusCode::OK } else { StatusCode::CONFLICT };
    Ok((status, Json(summary.json(started))).into_response())
}

/// What an import did so far: the lines read, what was appended, the count of refusals and
/// the first `IMPORT_REJECTIONS_SHOWN` of them (an answer stays small however bad the body).
#[derive(Default)]
struct ImportSummary {
    lines: u64,
    appended: u64,
    duplicates: u64,
    rejected: u64,
    rejections: Vec<Value>,
    /// Symbols first used by this import, with the line that used them.
    new_assets: Vec<Value>,
}

/// Refusals an import's answer lists (all are counted).
const IMPORT_REJECTIONS_SHOWN: usize = 100;

impl ImportSummary {
    fn reject(&mut self, refusal: Value) {
        self.rejected += 1;
        if self.rejections.len() < IMPORT_REJECTIONS_SHOWN {
            self.rejections.push(refusal);
        }
    }
}

impl ImportSummary {
    async fn submit(&mut self, ledger: &Ledger, batch: &mut Vec<(u64, custos_domain::Command)>) -> ApiResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (numbers, commands): (Vec<u64>, Vec<_>) = std::mem::take(batch).into_iter().unzip();
        let outcomes = ledger.submit_batch(commands).await?;
        for (n, o) in numbers.into_iter().zip(outcomes) {
            match o {
                Ok(a) if a.duplicate => self.duplicates += 1,
                Ok(a) => {
                    self.appended += 1;
                    if let Some(asset) = a.new_asset {
                        self.new_assets
                            .push(json!({"asset": asset.to_string(), "decimal_places": asset.scale(), "line": n}));
                    }
                }
                Err(r) => self.reject(json!({"line": n, "code": r.code(), "message": format!("line {n}: {r}")})),
            }
        }
        Ok(())
    }

    fn json(&mut self, started: Instant) -> Value {
        self.rejections.sort_by_key(|r| r["line"].as_u64());
        json!({
            "lines": self.lines,
            "appended": self.appended,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejections_shown": self.rejections.len(),
            "new_assets": self.new_assets,
            "seconds": started.elapsed().as_millis() as u64 / 1000,
            "rejections": self.rejections,
        })
    }

    /// The answer to an import stopped at a limit: the error, and exactly what was done before.
    fn refused(mut self, status: StatusCode, code: &'static str, why: String, started: Instant) -> Response {
        let message = format!(
            "{why}; the import stopped there: lines 1-{} were read, {} appended, {} already present, {} rejected, nothing after (re-sending the whole file is safe: ids make it idempotent)",
            self.lines,
            self.appended,
            self.duplicates,
            self.rejected
        );
        let mut body = self.json(started);
        body["error"] = json!({"code": code, "message": message});
        (status, Json(body)).into_response()
    }
}

fn seconds_text(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn histogram_text(out: &mut String, name: &str, help: &str, h: &Histogram, as_seconds: bool) {
    use std::fmt::Write;
    let (buckets, sum, count) = h.snapshot();
    let v = |x: u64| if as_seconds { seconds_text(x) } else { x.to_string() };
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (le, c) in buckets {
        let le = le.map(v).unwrap_or_else(|| "+Inf".into());
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {count}", v(sum));
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> ApiResult<Response> {
    use std::fmt::Write;
    app.require(&headers, Role::Read)?;
    let m = app.ledger.metrics();
    let mut out = String::new();
    for (name, help, value) in [
        ("custos_appends_total", "Events appended (durable).", m.appended.load(Ordering::Relaxed)),
        ("custos_duplicates_total", "Commands answered as idempotent replays.", m.duplicates.load(Ordering::Relaxed)),
        ("custos_rejections_total", "Commands the ledger refused.", m.rejected.load(Ordering::Relaxed)),
        (
            "custos_commits_total",
            "Group commits (one batch, one flush + fsync each).",
            m.commits.load(Ordering::Relaxed),
        ),
        (
            "custos_requests_refused_total",
            "Requests refused for their token.",
            app.requests_refused.load(Ordering::Relaxed),
        ),
        (
            "custos_queries_busy_total",
            "Queries answered 503 busy: no turn within query_wait_max.",
            app.queries_refused.load(Ordering::Relaxed),
        ),
        ("custos_head_seq", "The seq of the last event in the log.", app.ledger.head().seq),
    ] {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    histogram_text(&mut out, "custos_fsync_seconds", "Flush + fsync time per group commit.", &m.fsync_us, true);
    histogram_text(&mut out, "custos_group_commit_events", "Events per group commit.", &m.batch_events, false);
    histogram_text(&mut out, "custos_query_seconds", "Time to answer a read request.", &app.query_us, true);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
