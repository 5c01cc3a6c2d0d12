//! `custos`: the command-line tool for auditors and operators.
//!
//! Exit codes: 0 done (an idempotent replay of a command included); 1 the ledger said no (a
//! rejected command or import line, a check that found discrepancies); 2 could not run (IO,
//! usage, a ledger held by another process).

mod cli;
mod demo;
mod export;
mod import;
mod plot;
mod remote;
mod reports;

use std::process::ExitCode;

use clap::Parser;

/// The three outcomes of a command, as exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Refused,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(Exit::Ok) => ExitCode::SUCCESS,
        Ok(Exit::Refused) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
