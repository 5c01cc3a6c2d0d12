//! A real PostgreSQL server for the tests: a throwaway cluster made with `initdb` (as the
//! `postgres` user when the tests run as root: the server refuses to run as root), started on
//! 127.0.0.1 on a free port, one database per test, stopped when the test process exits.
//! Where PostgreSQL's programs are not installed the tests fail with the command that installs
//! them; they are never skipped.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The running cluster of this test process.
pub struct Cluster {
    pub port: u16,
    pub data: PathBuf,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// PostgreSQL's program folder: `pg_config --bindir`, else the newest of
/// /usr/lib/postgresql/*/bin.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Process::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed; the PostgreSQL tests need them: \
             apt-get update && apt-get install -y postgresql"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
pub fn pg_program(bin: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let path = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Process::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Process::new(&path)
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        c.stop();
        let _ = std::fs::remove_dir_all(&c.data);
    }
}

impl Cluster {
    /// Makes and starts a cluster in a fresh folder.
    pub fn start_new() -> Cluster {
        let bin = bin_dir();
        let data = std::env::temp_dir().join(format!("custos-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            let ok = Process::new("chown").args(["-R", "postgres:postgres"]).arg(&data).status().unwrap();
            assert!(ok.success(), "chown {} to postgres", data.display());
        }
        let pgdata = data.join("pgdata");
        let out = pg_program(
            &bin,
            "initdb",
            &["-D", pgdata.to_str().unwrap(), "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Cluster { port: free_port(), data, bin };
        cluster.start();
        cluster
    }

    /// Starts (or restarts) the server on its port.
    pub fn start(&self) {
        let pgdata = self.data.join("pgdata");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=200 -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        let out = pg_program(
            &self.bin,
            "pg_ctl",
            &["-D", pgdata.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "-t", "60", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash would (no checkpoint; WAL replay on the next start).
    pub fn stop_immediate(&self) {
        let pgdata = self.data.join("pgdata");
        let _ = pg_program(&self.bin, "pg_ctl", &["-D", pgdata.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    fn stop(&self) {
        self.stop_immediate();
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`), started on a port of its own
    /// as a hot standby. Stopped when dropped.
    pub fn start_replica(&self) -> Replica {
        let data = std::env::temp_dir().join(format!("custos-pg-replica-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            assert!(Process::new("chown").args(["postgres:postgres"]).arg(&data).status().unwrap().success());
        }
        let pgdata = data.join("pgdata");
        let out = pg_program(
            &self.bin,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                pgdata.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        let replica = Cluster { port: free_port(), data, bin: self.bin.clone() };
        replica.start();
        Replica(replica)
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL through `psql` in database `db`; returns its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Process::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let c = Cluster::start_new();
        // SAFETY: registering a plain extern "C" function to run at exit.
        unsafe { libc::atexit(stop_cluster) };
        c
    })
}

/// A fresh, empty database in the test process's cluster; returns its URL.
pub fn fresh_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let c = cluster();
    let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    c.psql("postgres", &format!("CREATE DATABASE {name}"));
    c.url(&name)
}

/// The database name of a URL made by [`fresh_db`].
pub fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// A running hot standby (see [`Cluster::start_replica`]).
pub struct Replica(pub Cluster);

impl Drop for Replica {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.0.data);
    }
}
