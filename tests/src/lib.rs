//! Helpers for the end-to-end tests: the real `custos` binary, temporary ledgers, and a small
//! command builder. Tests live in `tests/tests/`.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};
use std::sync::OnceLock;

use custos_domain::{AccountId, Amount, Asset, Command, CommandBody, EventId, Timestamp, Usd};

pub mod pg;

/// The engines a ledger runs on; the conformance tests run against each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sled, Backend::Postgres];

    /// A fresh, empty place for a ledger on this engine: a temporary folder, or a new database
    /// in the test process's PostgreSQL cluster.
    pub fn fresh(self) -> Fresh {
        match self {
            Backend::Sled => {
                let dir = tempfile::tempdir().unwrap();
                Fresh { location: dir.path().to_str().unwrap().to_string(), _dir: Some(dir) }
            }
            Backend::Postgres => Fresh { location: pg::fresh_db(), _dir: None },
        }
    }
}

/// Where a test's ledger lives (the folder is removed when this is dropped).
pub struct Fresh {
    pub location: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    pub fn open(&self, config: custos_ledger::LedgerConfig) -> custos_ledger::Ledger {
        custos_ledger::Ledger::open_at(&self.location, config).unwrap()
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The `custos` binary, built once per test process with the same cargo that runs the tests.
pub fn custos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Process::new(cargo)
            .args(["build", "-q", "-p", "custos", "--bin", "custos"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building custos failed");
        let target =
            std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target"));
        target.join("debug").join("custos")
    })
    .clone()
}

/// Runs `custos --db DIR ARGS...` and returns its output.
pub fn custos(dir: &Path, args: &[&str]) -> Output {
    Process::new(custos_bin()).arg("--db").arg(dir).args(args).env_remove("CUSTOS_DB").output().expect("custos runs")
}

/// [`custos`], killed and failed if it has not finished within `limit` (for inputs that once
/// made it wait forever).
pub fn custos_timeout(dir: &Path, args: &[&str], limit: std::time::Duration) -> Output {
    let child = Process::new(custos_bin())
        .arg("--db")
        .arg(dir)
        .args(args)
        .env_remove("CUSTOS_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("custos runs");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    // Its pipes are drained while it runs (a full pipe would stall it).
    std::thread::spawn(move || tx.send(child.wait_with_output().expect("custos output")));
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: signalling the child this function started, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("custos {args:?} did not finish within {limit:?}");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid time")
}

pub fn account(s: &str) -> AccountId {
    AccountId::new(s).expect("valid account")
}

pub fn asset(s: &str) -> Asset {
    Asset::new(s).expect("valid asset")
}

pub fn id(s: &str) -> EventId {
    EventId::new(s).expect("valid id")
}

pub fn cmd(ident: &str, at: &str, body: CommandBody) -> Command {
    Command { id: id(ident), occurred_at: Some(t(at)), recorded_at: None, expected_version: None, body }
}

pub fn deposit(ident: &str, at: &str, acct: &str, sym: &str, amount: &str) -> Command {
    let a = asset(sym);
    cmd(
        ident,
        at,
        CommandBody::Deposit {
            account: account(acct),
            amount: Amount::parse(amount, &a).expect("amount"),
            asset: a,
            usd_value: None,
        },
    )
}

pub fn withdraw(
    ident: &str,
    at: &str,
    acct: &str,
    sym: &str,
    amount: &str,
    usd: Option<&str>,
    unauthorized: bool,
) -> Command {
    let a = asset(sym);
    cmd(
        ident,
        at,
        CommandBody::Withdraw {
            account: account(acct),
            amount: Amount::parse(amount, &a).expect("amount"),
            asset: a,
            usd_value: usd.map(|u| Usd::parse(u).expect("usd")),
            unauthorized,
            destination: None,
            auth_factor: None,
        },
    )
}

pub fn reference(kind: &str, ident: &str, at: &str, withdrawal: &str) -> Command {
    let w = id(withdrawal);
    let body = match kind {
        "reverse" => CommandBody::Reverse { withdrawal: w, account: None, asset: None, amount: None },
        "reimburse" => CommandBody::Reimburse { withdrawal: w, account: None, asset: None, amount: None },
        "flag" => CommandBody::Flag { withdrawal: w, account: None, asset: None },
        other => panic!("unknown reference kind {other}"),
    };
    cmd(ident, at, body)
}

pub fn suspend(ident: &str, at: &str) -> Command {
    cmd(ident, at, CommandBody::SuspendWithdrawals { reason: None })
}

pub fn resume(ident: &str, at: &str) -> Command {
    cmd(ident, at, CommandBody::ResumeWithdrawals)
}

/// A multi-threaded runtime for library tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime")
}

/// Opens sled directly on a (closed) ledger folder: for tests that tamper with the stored log
/// the way an attacker with disk access would, below every check the ledger makes.
pub fn raw_sled(dir: &Path) -> sled::Db {
    sled::Config::new().path(dir.join("sled")).open().expect("sled opens")
}

/// Rewrites the stored record of every seq in a chunk through `f(seq, record) -> new record`.
pub fn rewrite_records(db: &sled::Db, mut f: impl FnMut(u64, &[u8]) -> Vec<u8>) {
    let chunks: Vec<(sled::IVec, sled::IVec)> =
        db.scan_prefix([custos_sled::layout::PREFIX_CHUNK]).map(|r| r.unwrap()).collect();
    for (k, v) in chunks {
        let first = u64::from_be_bytes(k[1..9].try_into().unwrap());
        let view = custos_sled::layout::ChunkView::parse(&v).expect("chunk parses");
        let records: Vec<Vec<u8>> = (0..view.len()).map(|i| f(first + i as u64, view.record(i).unwrap())).collect();
        db.insert(k, custos_sled::layout::encode_chunk(&records)).unwrap();
    }
    db.flush().unwrap();
}

/// Rewrites the log of a closed ledger through sled with `edit` applied to the envelope at
/// `seq`, recomputing the chain and the head after it: the forgery of an attacker with write
/// access who knows the format (the chain checks out; only re-deciding the events finds it).
pub fn forge(dir: &Path, seq: u64, edit: impl Fn(&mut custos_domain::Envelope)) {
    use custos_domain::Envelope;
    use custos_ledger::Head;
    use custos_sled::layout::{encode_head, KEY_HEAD};
    let db = raw_sled(dir);
    let mut prev = [0u8; 32];
    let mut last = None;
    rewrite_records(&db, |s, r| {
        let mut env = Envelope::decode(r).unwrap();
        if s == seq {
            edit(&mut env);
        }
        let (sealed, record) = Envelope::seal(
            env.seq,
            env.stream,
            env.stream_version,
            env.event_id,
            env.recorded_at,
            env.occurred_at,
            env.event,
            &prev,
        );
        prev = sealed.hash;
        last = Some(Head { seq: s, hash: sealed.hash, recorded_at: sealed.recorded_at });
        record
    });
    db.insert(KEY_HEAD, &encode_head(&last.unwrap())[..]).unwrap();
    db.flush().unwrap();
}

/// Turns the deposit at `seq` into a withdrawal of 100 of its asset: an overdraft.
pub fn forge_overdraft(dir: &Path, seq: u64) {
    use custos_domain::Event;
    forge(dir, seq, |env| {
        let Event::Deposited { asset, .. } = env.event.clone() else { panic!("seq {seq} is a deposit") };
        env.event = Event::Withdrawn {
            asset,
            amount: Amount::parse("100", &asset).unwrap(),
            usd_value: None,
            unauthorized: false,
            destination: None,
            auth_factor: None,
        };
    });
}

/// One HTTP request to a test server: its status and JSON body (an error status is an answer,
/// not a failure; a transport error fails the test).
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = ureq::request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("a body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// A `custos serve` running in this process on a free loopback port, with the tokens
/// `read-token` and `write-token`. Dropping it shuts the server down and closes the ledger.
pub struct TestServer {
    pub url: String,
    pub ledger: std::sync::Arc<custos_ledger::Ledger>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

pub const READ_TOKEN: &str = "read-token";
pub const WRITE_TOKEN: &str = "write-token";

impl TestServer {
    pub fn start(dir: &Path, config: Option<custos_server::ServerConfig>) -> TestServer {
        TestServer::start_at(dir.to_str().expect("a UTF-8 path"), config)
    }

    /// A server of the ledger at `location` (a folder or a postgres:// URL).
    pub fn start_at(location: &str, config: Option<custos_server::ServerConfig>) -> TestServer {
        let ledger = std::sync::Arc::new(
            custos_ledger::Ledger::open_at(
                location,
                custos_ledger::LedgerConfig {
                    checkpoint_every: 64,
                    balances_checkpoint_multiple: 1,
                    holder: "test server".into(),
                },
            )
            .expect("opens"),
        );
        let config = config.unwrap_or_else(|| custos_server::ServerConfig::new(READ_TOKEN.into(), WRITE_TOKEN.into()));
        let runtime = runtime();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binds");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let l = std::sync::Arc::clone(&ledger);
        runtime.spawn(async move {
            let served = custos_server::serve(l, config, listener, async {
                let _ = stopped.await;
            })
            .await;
            // A test of faults may stop a server whose ledger cannot sync any more.
            if let Err(e) = served {
                eprintln!("the test server stopped with an error: {e}");
            }
            let _ = done_tx.send(());
        });
        TestServer { url, ledger, stop: Some(stop), runtime: Some(runtime), done: Some(done) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.recv_timeout(std::time::Duration::from_secs(10));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// The deposit the `storm` helper's writer `w` sends `i`-th, for a run named `prefix`: 1 USDC
/// to `acct-s{w}` (with `spread`, to an account of its own), at the ledger's clock. The crash
/// tests re-send exactly these.
pub fn storm_deposit(prefix: &str, w: usize, i: usize, spread: bool) -> Command {
    let account = if spread { format!("acct-{prefix}-s{w}-{i}") } else { format!("acct-s{w}") };
    let mut c = deposit(&format!("{prefix}-s{w}-{i}"), "2022-01-01T00:00:00Z", &account, "USDC", "1");
    c.occurred_at = None;
    c
}

/// Every deposit a storm of `writers` x `per_writer` named `prefix` can send.
pub fn storm_deposits(prefix: &str, writers: usize, per_writer: usize) -> Vec<Command> {
    (0..writers).flat_map(|w| (0..per_writer).map(move |i| storm_deposit(prefix, w, i, false))).collect()
}

/// The `storm` helper binary running (see tests/src/bin/storm.rs), with a thread collecting
/// the acknowledgements it prints.
pub struct Storm {
    pub child: std::process::Child,
    reader: std::thread::JoinHandle<Vec<(String, u64)>>,
}

impl Storm {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_storm")`) with `args`.
    pub fn start(bin: &str, args: &[&str]) -> Storm {
        use std::io::BufRead;
        let mut child = Process::new(bin)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("storm starts");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let parts: Vec<&str> = line.split(' ').collect();
                seen.push((parts[1].to_string(), parts[2].parse::<u64>().expect("a seq")));
            }
            seen
        });
        Storm { child, reader }
    }

    /// Kills the storm (SIGKILL, if it still runs) and answers every `(id, seq)` it had
    /// acknowledged.
    pub fn kill(mut self) -> Vec<(String, u64)> {
        let _ = self.child.kill();
        self.child.wait().expect("storm reaped");
        self.reader.join().expect("reader")
    }
}
