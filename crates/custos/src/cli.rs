//! Arguments and dispatch.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use custos_domain::{AccountId, Amount, Asset, AuthFactor, Command, CommandBody, EventId, Seq, Timestamp, Usd};
use custos_ledger::{Ledger, LedgerConfig, Outcome, ReplayOrder};
use rust_decimal::Decimal;

use crate::{demo, export, html, import, reports, Exit};
use custos_report as report;
use custos_report::{Format, Report};

const TIME_HELP: &str = "RFC3339 (2022-01-18T03:46:00Z), or a date YYYY-MM-DD meaning the end of that day in UTC";
const FROM_HELP: &str = "RFC3339 (2022-01-18T03:46:00Z), or a date YYYY-MM-DD meaning the start of that day in UTC";

#[derive(Parser, Debug)]
#[command(
    name = "custos",
    version,
    about = "An event-sourced custody ledger: exact, reproducible, provable balances and losses"
)]
#[command(
    after_help = "Exit codes: 0 done (an idempotent replay included); 1 the ledger said no (a rejected command or line, a check that found discrepancies, a query naming an account or asset it has never seen); 2 could not run (IO, usage, a ledger held by another process)."
)]
pub struct Args {
    /// The ledger: a folder (the embedded store), or a PostgreSQL database as
    /// postgres://USER@HOST:PORT/DB (password from $PGPASSWORD or ~/.pgpass, never here)
    /// [default: $CUSTOS_DB, else ./custos-data]
    #[arg(long, global = true, env = "CUSTOS_DB", value_name = "DIR|URL")]
    pub db: Option<String>,
    /// Send every command and query to a running `custos serve` at this URL (the token comes
    /// from $CUSTOS_TOKEN or --token-file, never the command line)
    #[arg(long, env = "CUSTOS_SERVER")]
    pub server: Option<String>,
    /// A file holding the bearer token for --server
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The command's id, its idempotency key [default: a fresh UUID]
    #[arg(long)]
    pub id: Option<String>,
    /// When it happened (valid time), RFC3339 [default: now]
    #[arg(long, value_parser = parse_rfc3339)]
    pub at: Option<Timestamp>,
    /// Refuse unless the account's stream is at this version (optimistic concurrency)
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// Output: table, csv or json
    #[arg(long, value_parser = parse_format, default_value = "table")]
    pub format: Format,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Moment {
    /// Valid time: count events that happened at or before this moment [default: now]. Accepts
    #[arg(long, value_parser = parse_query_time, help = format!("Valid time: count events that happened at or before it [default: now]; {TIME_HELP}"))]
    pub as_of: Option<Timestamp>,
    #[arg(long, value_parser = parse_query_time, help = format!("Transaction time: count only what the ledger had recorded by then [default: now]; {TIME_HELP}"))]
    pub known_at: Option<Timestamp>,
    /// Answer as the log stood right after this seq (exact reproduction)
    #[arg(long, conflicts_with = "known_at")]
    pub at_seq: Option<Seq>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Record a deposit
    Deposit {
        #[command(flatten)]
        common: Common,
        /// The account (customer) id, e.g. acct-000042
        #[arg(long, value_parser = account_arg)]
        account: String,
        /// The asset symbol, e.g. ETH, BTC, USDC (a new symbol is said when first used)
        #[arg(long, value_parser = asset_arg)]
        asset: String,
        /// The quantity, an exact decimal within the asset's places (ETH 18, BTC 8, others 6)
        #[arg(long)]
        amount: String,
        /// USD value at the time (cents at most)
        #[arg(long)]
        usd: Option<String>,
    },
    /// Record a withdrawal
    Withdraw {
        #[command(flatten)]
        common: Common,
        /// The account (customer) id, e.g. acct-000042
        #[arg(long, value_parser = account_arg)]
        account: String,
        /// The asset symbol, e.g. ETH, BTC, USDC (a new symbol is said when first used)
        #[arg(long, value_parser = asset_arg)]
        asset: String,
        /// The quantity, an exact decimal within the asset's places (ETH 18, BTC 8, others 6)
        #[arg(long)]
        amount: String,
        /// USD value at the time, at most two decimal places
        #[arg(long)]
        usd: Option<String>,
        /// Known to be unauthorized when it happened
        #[arg(long)]
        unauthorized: bool,
        /// Where the funds went (an address)
        #[arg(long)]
        destination: Option<String>,
        /// The second factor that authorized it: totp, sms, email, hardware-key, api-key, not-required
        #[arg(long, value_parser = parse_auth_factor)]
        auth_factor: Option<AuthFactor>,
    },
    /// Reverse a withdrawal (credits back its full amount)
    Reverse {
        #[command(flatten)]
        common: Common,
        /// The id of the withdrawal this is about
        #[arg(long)]
        withdrawal: String,
    },
    /// Reimburse an unauthorized withdrawal [default amount: what is left to reimburse]
    Reimburse {
        #[command(flatten)]
        common: Common,
        /// The id of the withdrawal this is about
        #[arg(long)]
        withdrawal: String,
        /// How much to reimburse, in the withdrawal's asset [default: what is left to reimburse]
        #[arg(long)]
        amount: Option<String>,
    },
    /// Flag a past withdrawal as unauthorized
    Flag {
        #[command(flatten)]
        common: Common,
        /// The id of the withdrawal this is about
        #[arg(long)]
        withdrawal: String,
    },
    /// Suspend all withdrawals
    SuspendWithdrawals {
        #[command(flatten)]
        common: Common,
        /// Why (kept in the log)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume withdrawals
    ResumeWithdrawals {
        #[command(flatten)]
        common: Common,
    },
    /// Import a command file (.csv or .jsonl) with the columns id, occurred_at, kind and, as the kind needs, account, asset, amount, usd_value, ref, unauthorized, recorded_at, auth_factor, destination, reason, expected_version
    Import {
        /// The file: .csv or .jsonl (any case), columns as README.md lists
        file: PathBuf,
        /// Append nothing unless every line is valid
        #[arg(long)]
        strict: bool,
        /// Commands per batch handed to the writer (two batches are in flight at a time)
        #[arg(long, default_value_t = crate::import::IMPORT_BATCH_COMMANDS, value_parser = clap::value_parser!(u64).range(1..=8192))]
        batch: u64,
    },
    /// List the log
    Log {
        /// The first seq to list
        #[arg(long, default_value_t = 1)]
        from_seq: Seq,
        /// The most events to list (at least 1)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Only events of this kind: deposit, withdrawal, reversal, reimbursement, flag, suspend, resume (or the event name the tables show, e.g. Deposited)
        #[arg(long, value_parser = parse_kind)]
        kind: Option<custos_domain::EventKind>,
        /// Only events of this account (customer) id
        #[arg(long, value_parser = account_arg)]
        account: Option<String>,
        #[arg(long, value_parser = parse_query_start, help = format!("Only events that happened at or after it; {FROM_HELP}"))]
        from: Option<Timestamp>,
        #[arg(long, value_parser = parse_query_time, help = format!("Only events that happened at or before it; {TIME_HELP}"))]
        to: Option<Timestamp>,
        #[arg(long, value_parser = parse_query_start, help = format!("Only events recorded at or after it; {FROM_HELP}"))]
        recorded_from: Option<Timestamp>,
        #[arg(long, value_parser = parse_query_time, help = format!("Only events recorded at or before it; {TIME_HELP}"))]
        recorded_to: Option<Timestamp>,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// Recompute the hash chain, every invariant and every index (exit 1 on discrepancies)
    Verify {
        /// A digest taken earlier with `custos digest` (SEQ:HEX or HEX) that must still be in the chain
        #[arg(long)]
        digest: Option<String>,
        /// Output: table (text) or json
        #[arg(long, value_parser = parse_text_or_json, default_value = "table")]
        format: Format,
    },
    /// Print the log's digest: the head seq and its chain hash, as SEQ:HEX (json adds the Merkle tree's size and root)
    Digest {
        /// The digest of the log as it was at this seq (default: the head)
        #[arg(long)]
        at_seq: Option<Seq>,
        /// Output: table (text) or json
        #[arg(long, value_parser = parse_text_or_json, default_value = "table", conflicts_with = "sign")]
        format: Format,
        /// Print a signed tree head instead: a C2SP checkpoint signed with this key file (from `custos keygen`)
        #[arg(long)]
        sign: Option<PathBuf>,
        /// The log's name in a signed checkpoint (default: the key's name)
        #[arg(long, requires = "sign")]
        origin: Option<String>,
    },
    /// Proof of liabilities at a moment: a Merkle sum tree over every account's balances; writes root.json and one proof per account (proofs.jsonl) to --out
    Liabilities {
        #[command(flatten)]
        moment: Moment,
        /// The folder to write the snapshot to (created; an existing snapshot is never overwritten)
        #[arg(long)]
        out: PathBuf,
        /// Also print this account's proof
        #[arg(long, value_parser = account_arg)]
        account: Option<String>,
    },
    /// Make an Ed25519 key for signing tree heads: writes the secret key to --out and its public key to --out.pub
    Keygen {
        /// The key's name, shown in every signature (e.g. the ledger's host name)
        #[arg(long)]
        name: String,
        /// The secret key file to create (never overwritten; readable by its owner only)
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a Merkle proof as JSON (RFC 9162): that event --seq is in the log, or that the log at --to extends the log at --from
    Prove {
        /// The seq of the event to prove included
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        seq: Option<Seq>,
        /// The tree size (a seq) the inclusion proof is for (default: the head)
        #[arg(long, requires = "seq")]
        size: Option<Seq>,
        /// The earlier tree size of a consistency proof (a seq, at least 1)
        #[arg(long, requires = "to")]
        from: Option<Seq>,
        /// The later tree size of a consistency proof (a seq, at most the head)
        #[arg(long, requires = "from")]
        to: Option<Seq>,
        /// Write the proof to this file instead of standard output
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a proof written by `custos prove`, or a signed checkpoint, offline, with no ledger, and print what it proves
    VerifyProof {
        /// The proof file (JSON) or signed checkpoint, or - for standard input
        file: PathBuf,
        /// The public key (a NAME+ID+KEY string or a file holding one) a signed checkpoint must be signed by
        #[arg(long)]
        key: Option<String>,
        /// A signed checkpoint (by --key) the proof's tree must be (repeat it for both ends of a consistency proof)
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// The published root.json of a liabilities snapshot the proof must reach
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Balances per account and asset at a moment
    Balances {
        /// An account (customer) id, e.g. acct-000042; repeat it for several
        #[arg(long, value_parser = account_arg)]
        account: Vec<String>,
        /// A file of account ids, one per line (blank lines and lines starting with # are skipped)
        #[arg(long)]
        accounts_file: Option<PathBuf>,
        /// The asset symbol, e.g. ETH, BTC, USDC
        #[arg(long, value_parser = asset_arg)]
        asset: Option<String>,
        #[command(flatten)]
        moment: Moment,
        /// Include zero balances
        #[arg(long)]
        all: bool,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// Loss totals (attempted, prevented, completed, reimbursed, outstanding) at a moment
    Losses {
        #[command(flatten)]
        moment: Moment,
        /// Add per-symbol rows for misc and per-account rows
        #[arg(long)]
        detail: bool,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// Every event of an account with the balance after it
    History {
        /// The account (customer) id, e.g. acct-000042
        #[arg(long, value_parser = account_arg)]
        account: String,
        /// The asset symbol, e.g. ETH, BTC, USDC
        #[arg(long, value_parser = asset_arg)]
        asset: Option<String>,
        #[arg(long, value_parser = parse_query_start, help = format!("Only events that happened at or after it; {FROM_HELP}"))]
        from: Option<Timestamp>,
        #[arg(long, value_parser = parse_query_time, help = format!("Only events that happened at or before it; {TIME_HELP}"))]
        to: Option<Timestamp>,
        #[command(flatten)]
        moment: Moment,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// The withdrawal register: every withdrawal with when and how it became known
    /// unauthorized, its reversal, its reimbursements and what is still owed, at a moment
    Withdrawals {
        /// Only withdrawals unauthorized as known at the moment: marked when recorded, or flagged by a flag recorded by --known-at (a flag counts from when it was recorded, whatever --as-of)
        #[arg(long)]
        unauthorized: bool,
        /// The account (customer) id, e.g. acct-000042
        #[arg(long, value_parser = account_arg)]
        account: Option<String>,
        #[command(flatten)]
        moment: Moment,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// Every asset symbol the ledger has seen, with its decimal places, first event and event count
    Assets {
        /// Transaction time: what the ledger had recorded by then [default: now]; RFC3339, or a date YYYY-MM-DD meaning the end of that day in UTC
        #[arg(long, value_parser = parse_query_time)]
        known_at: Option<Timestamp>,
        /// Answer as the log stood right after this seq (exact reproduction)
        #[arg(long, conflicts_with = "known_at")]
        at_seq: Option<Seq>,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// A valid-time window event by event, with running loss totals and when each withdrawal
    /// became known unauthorized
    Replay {
        #[arg(long, value_parser = parse_query_start, help = format!("The window's first moment (valid time); {FROM_HELP}"))]
        from: Timestamp,
        #[arg(long, value_parser = parse_query_time, help = format!("The window's last moment (valid time); {TIME_HELP}"))]
        to: Timestamp,
        /// Transaction time: what the ledger had recorded by then [default: now]; RFC3339, or a date YYYY-MM-DD meaning the end of that day in UTC
        #[arg(long, value_parser = parse_query_time)]
        known_at: Option<Timestamp>,
        /// Answer as the log stood right after this seq (exact reproduction)
        #[arg(long, conflicts_with = "known_at")]
        at_seq: Option<Seq>,
        /// Row order: valid (as things happened; totals as of each row) or recorded (as the ledger learned them, flags of the window's withdrawals included; totals as of the window's end, as known right after each row)
        #[arg(long, value_parser = report::parse_replay_order, default_value = "valid")]
        order: ReplayOrder,
        /// Output: table, csv or json
        #[arg(long, value_parser = parse_format, default_value = "table")]
        format: Format,
    },
    /// Copy a ledger to another engine (a folder <-> a postgres:// database), keeping its
    /// digest; an interrupted copy resumes when run again
    Migrate {
        /// The ledger to copy (a folder or a postgres:// URL)
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// Where to copy it: empty, or holding an interrupted copy of it
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
    /// Refold projections from the log into fresh storage and swap them in atomically
    Rebuild {
        /// balances or losses [default: both]
        #[arg(long)]
        projection: Option<String>,
        /// Fold into a scratch projection and print its differences from the stored one
        #[arg(long)]
        dry_run: bool,
        /// Also rewrite the Merkle tree nodes that differ from the records (check an earlier digest first: see verify)
        #[arg(long, conflicts_with = "dry_run")]
        rewrite_tree: bool,
    },
    /// One self-contained HTML page to hand over: losses, chart, knowledge timeline, register, digest
    Report {
        #[command(flatten)]
        moment: Moment,
        /// The page to write (a .html file)
        #[arg(long)]
        html: PathBuf,
        #[arg(long, value_parser = parse_query_start, help = format!("The window's first moment [default: the hour before the first unauthorized withdrawal]; {FROM_HELP}"))]
        from: Option<Timestamp>,
        #[arg(long, value_parser = parse_query_time, help = format!("The window's last moment [default: the hour after the last reversal, reimbursement or resumption, at most --as-of]; {TIME_HELP}"))]
        to: Option<Timestamp>,
    },
    /// Export the log (csv, jsonl: re-importable) or a journal for hledger / ledger-cli
    Export {
        /// Output: csv or jsonl (the import format, to re-import) or ledger (a journal)
        #[arg(long, value_enum)]
        format: export::ExportFormat,
        /// Journal only: events that happened at or before this moment
        #[arg(long, value_parser = parse_query_time)]
        as_of: Option<Timestamp>,
        /// Write here instead of standard output
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Serve the ledger over HTTP to auditors (read token) and operators (write token)
    Serve {
        /// Address to listen on (loopback by default)
        #[arg(long, default_value = "127.0.0.1:7350")]
        addr: std::net::SocketAddr,
        /// File holding the read token [default: $CUSTOS_READ_TOKEN]
        #[arg(long)]
        read_token_file: Option<PathBuf>,
        /// File holding the write token [default: $CUSTOS_WRITE_TOKEN]
        #[arg(long)]
        write_token_file: Option<PathBuf>,
    },
    /// Import the January 2022 incident into a ledger, verify it, and print the incident report
    ///
    /// The demo's ledger lives in a temporary folder, removed afterwards, unless --db DIR is
    /// given on its command line (then it is kept there; $CUSTOS_DB is never used by the demo).
    Demo {
        /// Output: table or json (the report is several tables, so not csv)
        #[arg(long, value_parser = parse_demo_format, default_value = "table")]
        format: Format,
        /// Also draw the incident window as an SVG chart into this .svg file
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format {s:?} (expected table, csv or json)"))
}

/// A format for a command whose answer is not a table (verify, digest): table (its text) or
/// json; csv is refused rather than ignored.
fn parse_text_or_json(s: &str) -> Result<Format, String> {
    match Format::parse(s) {
        Some(Format::Csv) => Err("this command prints text or json, not a table: csv does not apply".into()),
        Some(f) => Ok(f),
        None => Err(format!("{s:?} is not a format: table or json")),
    }
}

fn parse_demo_format(s: &str) -> Result<Format, String> {
    match Format::parse(s) {
        Some(f) if f != Format::Csv => Ok(f),
        _ => Err(format!(
            "format {s:?}: the demo prints table or json (its report is several tables; for CSV keep the ledger with --db DIR and query it)"
        )),
    }
}

fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

fn parse_auth_factor(s: &str) -> Result<AuthFactor, String> {
    AuthFactor::parse(s).ok_or_else(|| {
        let names: Vec<&str> = AuthFactor::ALL.iter().map(|f| f.name()).collect();
        format!("unknown authorization factor {s:?} (expected one of {})", names.join(", "))
    })
}

fn parse_query_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_query(s).map_err(|e| e.to_string())
}

fn parse_kind(s: &str) -> Result<custos_domain::EventKind, String> {
    custos_domain::EventKind::parse_filter(s)
}

fn parse_query_start(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_query_start(s).map_err(|e| e.to_string())
}

pub fn db_location(args_db: &Option<String>) -> String {
    args_db.clone().unwrap_or_else(|| "custos-data".to_string())
}

/// How a location is named in messages: a folder as given, a database by its URL.
fn shown_location(location: &str) -> String {
    if custos_postgres::Target::is_url(location) {
        custos_postgres::Target::parse(location)
            .map(|t| format!("in {}", t.shown()))
            .unwrap_or_else(|_| "in the database given".into())
    } else {
        format!("at {location}")
    }
}

pub fn open_ledger(location: &str, holder: &str) -> Result<Arc<Ledger>> {
    let config = LedgerConfig { holder: holder.to_string(), ..LedgerConfig::default() };
    let ledger = Ledger::open_at(location, config).map_err(|e| {
        // The interface's advice for a held ledger: the store only says who holds it.
        let hint = matches!(e, custos_ledger::LedgerError::Log(custos_ledger::LogError::Locked { .. }))
            .then_some("; stop it, or send commands to it with --server if it is `custos serve`")
            .unwrap_or_default();
        anyhow::anyhow!("cannot open the ledger {}: {e}{hint}", shown_location(location))
    })?;
    for notice in ledger.take_notices() {
        eprintln!("note: {notice}");
    }
    Ok(Arc::new(ledger))
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).take(2).collect();
    format!("custos {}", args.join(" "))
}

pub async fn run(args: Args) -> Result<Exit> {
    let dir = db_location(&args.db);
    // Options are checked before any work, locally or through a server.
    if let Cmd::Export { format, as_of, .. } = &args.command {
        export::check_options(*format, *as_of)?;
    }
    if let Cmd::Report { html, from, to, .. } = &args.command {
        html::check_options(html, *from, *to)?;
    }
    if let Cmd::VerifyProof { file, key, checkpoint, root } = &args.command {
        // Offline: no ledger, no server.
        let given = crate::verify_proof::Given { key: key.as_deref(), checkpoints: checkpoint, root: root.as_deref() };
        return crate::verify_proof::verify_file(file, given, &mut std::io::stdout().lock());
    }
    if let Cmd::Keygen { name, out } = &args.command {
        return crate::proofs::keygen(name, out, &mut std::io::stdout().lock());
    }
    if let Some(url) = args.server.clone() {
        return crate::remote::run(&url, args.token_file.as_deref(), args.command);
    }
    if let Cmd::Demo { format, plot } = &args.command {
        // The demo keeps its ledger only in a folder named on its command line (never in
        // $CUSTOS_DB, which may be a real ledger).
        let explicit = std::env::args().any(|a| a == "--db" || a.starts_with("--db="));
        return demo::run(*format, plot.as_deref(), args.db.as_deref().filter(|_| explicit)).await;
    }
    if let Cmd::Migrate { from, to } = &args.command {
        return migrate(from, to);
    }
    if let Cmd::Serve { addr, read_token_file, write_token_file } = &args.command {
        return serve(&dir, *addr, read_token_file.as_deref(), write_token_file.as_deref()).await;
    }
    // Only commands that record something may create a ledger: a query on a mistyped folder
    // must say there is no ledger there, not answer from a new, empty one.
    let creates = matches!(
        args.command,
        Cmd::Deposit { .. }
            | Cmd::Withdraw { .. }
            | Cmd::Reverse { .. }
            | Cmd::Reimburse { .. }
            | Cmd::Flag { .. }
            | Cmd::SuspendWithdrawals { .. }
            | Cmd::ResumeWithdrawals { .. }
            | Cmd::Import { .. }
    );
    if !creates
        && !Ledger::exists_at(&dir)
            .map_err(|e| anyhow::anyhow!("cannot open the ledger {}: {e}", shown_location(&dir)))?
    {
        bail!("there is no ledger {} (record a command or import a file to create one)", shown_location(&dir));
    }
    let ledger = open_ledger(&dir, &command_line())?;
    let out = &mut std::io::stdout().lock();
    let exit = match args.command {
        Cmd::Demo { .. } | Cmd::Serve { .. } | Cmd::Migrate { .. } | Cmd::VerifyProof { .. } | Cmd::Keygen { .. } => {
            unreachable!("handled above")
        }
        Cmd::Import { file, strict, batch } => import::run(&ledger, &file, strict, batch as usize).await?,
        Cmd::Log { from_seq, limit, format, kind, account, from, to, recorded_from, recorded_to } => {
            let filter = report::LogFilter {
                kind,
                account: account.as_deref().map(AccountId::new).transpose()?,
                occurred: (from, to),
                recorded: (recorded_from, recorded_to),
            };
            let head = ledger.head().seq;
            if from_seq > head.saturating_add(1) {
                bail!("--from-seq {from_seq} is past the head of the log (seq {head}): nothing is there yet");
            }
            for (name, (lo, hi)) in [("--from", filter.occurred), ("--recorded-from", filter.recorded)] {
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        bail!("{name} {lo} is after its upper bound {hi}");
                    }
                }
            }
            let report = report::log(&ledger, from_seq, limit, &filter)?;
            report.write(format, out)?;
            unknown_names(&ledger, ledger.head().seq, &report, filter.account.as_slice(), None)?
        }
        Cmd::Verify { digest, format } => reports::verify(&ledger, digest.as_deref(), format, out)?,
        Cmd::Digest { at_seq, format, sign, origin } => {
            let head = ledger.tree_head(at_seq)?;
            if let Some(key_file) = sign {
                write!(out, "{}", crate::proofs::signed_checkpoint(&head, &key_file, origin.as_deref())?)?;
                return Ok(Exit::Ok);
            }
            match format {
                Format::Json => writeln!(out, "{}", custos_report::proofs::tree_head_json(&head))?,
                _ => writeln!(out, "{}:{}", head.tree_size, hex::encode(head.chain_hash))?,
            }
            Exit::Ok
        }
        Cmd::Liabilities { moment, out: folder, account } => {
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            crate::proofs::liabilities(&ledger, &bound, &folder, account.as_deref(), out)?
        }
        Cmd::Prove { seq, size, from, to, output } => {
            let json = match (seq, from, to) {
                (Some(seq), _, _) => custos_report::proofs::inclusion_json(&ledger.inclusion_proof(seq, size)?),
                (None, Some(m), Some(n)) => custos_report::proofs::consistency_json(&ledger.consistency_proof(m, n)?),
                _ => bail!("give --seq K (inclusion) or --from M --to N (consistency)"),
            };
            let text = format!("{}\n", serde_json::to_string_pretty(&json)?);
            match output {
                Some(file) => {
                    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
                    writeln!(out, "wrote the proof to {}", file.display())?;
                }
                None => write!(out, "{text}")?,
            }
            Exit::Ok
        }
        Cmd::Balances { account, accounts_file, asset, moment, all, format } => {
            let accounts = accounts_named(&account, accounts_file.as_deref())?;
            let asset = asset.as_deref().map(Asset::new).transpose()?;
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            let report = report::balances(&ledger, &bound, &accounts, asset.as_ref(), all)?;
            report.write(format, out)?;
            unknown_names(&ledger, bound.known_seq, &report, &accounts, asset.as_ref())?
        }
        Cmd::Losses { moment, detail, format } => {
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            report::losses(&ledger.losses_at(&bound)?, &bound, detail).write(format, out)?;
            Exit::Ok
        }
        Cmd::History { account, asset, from, to, moment, format } => {
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    bail!("--from {f} is after --to {t}");
                }
            }
            let account = AccountId::new(&account)?;
            let asset = asset.as_deref().map(Asset::new).transpose()?;
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            let report = report::history(&ledger, &account, asset.as_ref(), from, to, &bound)?;
            report.write(format, out)?;
            unknown_names(&ledger, bound.known_seq, &report, std::slice::from_ref(&account), asset.as_ref())?
        }
        Cmd::Withdrawals { unauthorized, account, moment, format } => {
            let account = account.as_deref().map(AccountId::new).transpose()?;
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            let report = report::withdrawals(&ledger, &bound, account.as_ref(), unauthorized)?;
            report.write(format, out)?;
            unknown_names(&ledger, bound.known_seq, &report, account.as_slice(), None)?
        }
        Cmd::Assets { known_at, at_seq, format } => {
            let bound = ledger.bound(None, known_at, at_seq)?;
            report::assets(&ledger, &bound)?.write(format, out)?;
            Exit::Ok
        }
        Cmd::Replay { from, to, known_at, at_seq, order, format } => {
            if from > to {
                bail!("--from {from} is after --to {to}");
            }
            let bound = ledger.bound(None, known_at, at_seq)?;
            report::replay(&ledger, from, to, &bound, order, format)?.write(format, out)?;
            Exit::Ok
        }
        Cmd::Rebuild { projection, dry_run, rewrite_tree } => {
            let exit = reports::rebuild(&ledger, projection.as_deref(), dry_run, out)?;
            if !dry_run {
                reports::tree_after_rebuild(&ledger, rewrite_tree, out)?;
            }
            exit
        }
        Cmd::Report { moment, html, from, to } => {
            let bound = ledger.bound(moment.as_of, moment.known_at, moment.at_seq)?;
            let page = html::incident_html(&ledger, &bound, (from, to))?;
            std::fs::write(&html, page).with_context(|| format!("cannot write the report to {}", html.display()))?;
            writeln!(out, "wrote the incident report to {} (computed at seq {})", html.display(), bound.known_seq)?;
            Exit::Ok
        }
        Cmd::Export { format, as_of, output } => {
            export::run(&ledger, format, as_of, output.as_deref())?;
            Exit::Ok
        }
        write => submit_one(&ledger, write, out).await?,
    };
    // Close (writer stopped, sled flushed and fsynced), then skip freeing the in-memory state:
    // the process is about to exit, and dropping hundreds of thousands of rows one by one is
    // a fifth of a short query's time.
    ledger.close()?;
    std::mem::forget(ledger);
    Ok(exit)
}

/// A token from a file (trimmed) or an environment variable; never from the command line.
pub fn token_from(file: Option<&std::path::Path>, env: &str) -> Result<Option<String>> {
    let token = match file {
        Some(f) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?)
        }
        None => std::env::var(env).ok(),
    };
    Ok(token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

/// `custos migrate`: copies the ledger at `from` to `to`, then checks that both digests agree
/// and that the copy verifies clean.
fn migrate(from: &str, to: &str) -> Result<Exit> {
    if !Ledger::exists_at(from).map_err(|e| anyhow::anyhow!("cannot open the ledger {}: {e}", shown_location(from)))? {
        bail!("there is no ledger {} to copy", shown_location(from));
    }
    let source = open_ledger(from, "custos migrate (source)")?;
    let bar = crate::import::bar(source.head().seq, "copying");
    let config = LedgerConfig { holder: "custos migrate (target)".into(), ..LedgerConfig::default() };
    let report = source.migrate_to(to, config, &mut |done, _| bar.set_position(done)).map_err(|e| {
        anyhow::anyhow!("cannot copy the ledger {} to the ledger {}: {e}", shown_location(from), shown_location(to))
    })?;
    bar.finish_and_clear();
    let copy = open_ledger(to, "custos migrate (check)")?;
    let bar = crate::import::bar(copy.head().seq, "verifying");
    let verified = copy.verify(None, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let digest = format!("{}:{}", report.head.seq, hex::encode(report.head.hash));
    let out = &mut std::io::stdout().lock();
    if report.copied == 0 && report.resumed_after > 0 {
        writeln!(out, "the copy was already complete: both end at seq {}", report.resumed_after)?;
    } else if report.resumed_after > 0 {
        writeln!(out, "resumed an interrupted copy after seq {}", report.resumed_after)?;
    }
    writeln!(
        out,
        "copied {} events from the ledger {} to the ledger {}",
        report.copied,
        shown_location(from),
        shown_location(to)
    )?;
    writeln!(out, "digest {digest} on both")?;
    if !verified.clean() {
        writeln!(
            out,
            "verify of the copy found {} discrepancies; the first: {}",
            verified.discrepancies.len(),
            verified.discrepancies[0].what
        )?;
        return Ok(Exit::Refused);
    }
    writeln!(out, "verify of the copy: clean")?;
    Ok(Exit::Ok)
}

async fn serve(
    dir: &str,
    addr: std::net::SocketAddr,
    read_file: Option<&std::path::Path>,
    write_file: Option<&std::path::Path>,
) -> Result<Exit> {
    let (Some(read), Some(write)) =
        (token_from(read_file, "CUSTOS_READ_TOKEN")?, token_from(write_file, "CUSTOS_WRITE_TOKEN")?)
    else {
        bail!("custos serve needs a read and a write token: --read-token-file/--write-token-file or $CUSTOS_READ_TOKEN/$CUSTOS_WRITE_TOKEN");
    };
    if read == write {
        bail!("the read and write tokens must differ (an auditor's read token must not write)");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let ledger = open_ledger(dir, &format!("custos serve {url}"))?;
    eprintln!("serving the ledger {} on {url} (stop with SIGTERM or Ctrl-C)", shown_location(dir));
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("shutting down: finishing requests in flight");
    };
    custos_server::serve(ledger, custos_server::ServerConfig::new(read, write), listener, shutdown).await?;
    eprintln!("stopped; the ledger is closed");
    Ok(Exit::Ok)
}

fn id_of(common: &Common) -> Result<EventId> {
    let id = common.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(EventId::new(&id)?)
}

fn decimal(field: &str, s: &str) -> Result<Decimal> {
    custos_domain::parse_decimal(s).with_context(|| format!("--{field}"))
}

/// Builds the command of a write subcommand.
pub fn command_of(cmd: Cmd) -> Result<(Command, Format)> {
    let (common, body) = match cmd {
        Cmd::Deposit { common, account, asset, amount, usd } => {
            let asset = Asset::new(&asset)?;
            let body = CommandBody::Deposit {
                account: AccountId::new(&account)?,
                amount: Amount::parse(&amount, &asset).context("--amount")?,
                asset,
                usd_value: usd.as_deref().map(Usd::parse).transpose().context("--usd")?,
            };
            (common, body)
        }
        Cmd::Withdraw { common, account, asset, amount, usd, unauthorized, destination, auth_factor } => {
            let asset = Asset::new(&asset)?;
            let body = CommandBody::Withdraw {
                account: AccountId::new(&account)?,
                amount: Amount::parse(&amount, &asset).context("--amount")?,
                asset,
                usd_value: usd.as_deref().map(Usd::parse).transpose().context("--usd")?,
                unauthorized,
                destination,
                auth_factor,
            };
            (common, body)
        }
        Cmd::Reverse { common, withdrawal } => (
            common,
            CommandBody::Reverse { withdrawal: EventId::new(&withdrawal)?, account: None, asset: None, amount: None },
        ),
        Cmd::Reimburse { common, withdrawal, amount } => {
            let amount = amount.as_deref().map(|a| decimal("amount", a)).transpose()?;
            (
                common,
                CommandBody::Reimburse { withdrawal: EventId::new(&withdrawal)?, account: None, asset: None, amount },
            )
        }
        Cmd::Flag { common, withdrawal } => {
            (common, CommandBody::Flag { withdrawal: EventId::new(&withdrawal)?, account: None, asset: None })
        }
        Cmd::SuspendWithdrawals { common, reason } => (common, CommandBody::SuspendWithdrawals { reason }),
        Cmd::ResumeWithdrawals { common } => (common, CommandBody::ResumeWithdrawals),
        other => bail!("not a write command: {other:?}"),
    };
    let command = Command {
        id: id_of(&common)?,
        occurred_at: common.at,
        recorded_at: None,
        expected_version: common.expected_version,
        body,
    };
    Ok((command, common.format))
}

/// After a query that found no rows: says (on stderr) when it named an account or asset the
/// ledger has never seen up to the bound, and answers exit 1 then (so a mistyped name is not
/// an empty answer). A known name with no rows at that moment is an answer: exit 0.
/// An `--account` value: a valid account id (clap names the option when it is not).
fn account_arg(s: &str) -> Result<String, String> {
    AccountId::new(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

/// An `--asset` value: a valid symbol, e.g. ETH (clap names the option when it is not).
fn asset_arg(s: &str) -> Result<String, String> {
    Asset::new(s).map(|_| s.to_string()).map_err(|e| {
        let upper = s.to_ascii_uppercase();
        if upper != s && Asset::new(&upper).is_ok() {
            format!("{e} (did you mean {upper}?)")
        } else {
            e.to_string()
        }
    })
}

/// Says which of the names a query gave the ledger has never seen (exit 1), after the answer.
fn unknown_names(
    ledger: &Ledger,
    known_seq: Seq,
    report: &Report,
    accounts: &[AccountId],
    asset: Option<&Asset>,
) -> Result<Exit> {
    let unknown = report::never_seen(ledger, known_seq, report, accounts, asset)?;
    if unknown.is_empty() {
        return Ok(Exit::Ok);
    }
    eprintln!("{}", report::never_seen_message(&unknown, known_seq));
    Ok(Exit::Refused)
}

/// The accounts of `--account` (repeated) and `--accounts-file`, in order, each once. A bad id
/// is named with its line.
pub fn accounts_named(given: &[String], file: Option<&std::path::Path>) -> Result<Vec<AccountId>> {
    let mut out: Vec<AccountId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |a: AccountId| {
        if seen.insert(a.clone()) {
            out.push(a);
        }
    };
    for a in given {
        add(AccountId::new(a).with_context(|| format!("--account {a:?}"))?);
    }
    if let Some(path) = file {
        let mut named = 0u64;
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            // A `#` starts a comment, on a line of its own or after the id.
            let line = line.trim_start_matches('\u{feff}').split('#').next().unwrap_or_default().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i.saturating_add(1);
            add(AccountId::new(line).with_context(|| format!("{} line {n}", path.display()))?);
            named += 1;
        }
        if named == 0 {
            // Not "every account": a list that names none is a mistake.
            bail!("{} names no account (one id per line)", path.display());
        }
    }
    Ok(out)
}

async fn submit_one(ledger: &Arc<Ledger>, cmd: Cmd, out: &mut impl Write) -> Result<Exit> {
    let (command, format) = command_of(cmd)?;
    let outcome: Outcome = ledger.submit(command).await?;
    print_outcome(&outcome, format, out)?;
    Ok(if outcome.is_ok() { Exit::Ok } else { Exit::Refused })
}

pub fn print_outcome(outcome: &Outcome, format: Format, out: &mut impl Write) -> Result<()> {
    match (outcome, format) {
        (Ok(a), Format::Json) => writeln!(
            out,
            "{}",
            serde_json::json!({"id": a.id.as_str(), "seq": a.seq, "duplicate": a.duplicate, "new_asset": a.new_asset.map(|x| x.to_string())})
        )?,
        (Err(r), Format::Json) => {
            writeln!(out, "{}", serde_json::json!({"error": {"code": r.code(), "message": r.to_string()}}))?
        }
        (Ok(a), _) if a.duplicate => {
            writeln!(out, "{} was already recorded at seq {} (idempotent replay, nothing appended)", a.id, a.seq)?
        }
        (Ok(a), _) => {
            writeln!(out, "appended {} at seq {}", a.id, a.seq)?;
            if let Some(asset) = a.new_asset {
                eprintln!("note: {asset} is a new asset in this ledger ({} decimal places)", asset.scale());
            }
        }
        (Err(r), _) => eprintln!("rejected: {r}"),
    }
    Ok(())
}

/// Renders a report to a string (used by the demo and the snapshot tests).
pub fn render(report: &Report, format: Format) -> String {
    report.render(format)
}
