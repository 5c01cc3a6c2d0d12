//! An append storm for the crash test: `storm DIR|URL WRITERS PER_WRITER PREFIX [spread]`. Each
//! writer task sends deposits `PREFIX-s{w}-{i}` (1 USDC to `acct-s{w}`, or with `spread` to an
//! account of its own, `acct-PREFIX-s{w}-{i}`, so checkpoints grow with every event) one at a
//! time and prints `ack ID SEQ` on standard output, flushed, only after the ledger has
//! answered, which it does only once the deposit is durable. The test kills this process with
//! SIGKILL at a random moment.

use std::io::Write;
use std::sync::Arc;

use custos_ledger::{Ledger, LedgerConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let location = args[1].clone();
    let writers: usize = args[2].parse().expect("writers");
    let per_writer: usize = args[3].parse().expect("per writer");
    let prefix = args[4].clone();
    let spread = args.get(5).is_some_and(|a| a == "spread");
    let ledger = Arc::new(
        Ledger::open_at(
            &location,
            LedgerConfig { checkpoint_every: 500, balances_checkpoint_multiple: 1, holder: "storm".into() },
        )
        .expect("opens"),
    );
    let rt = custos_tests::runtime();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let ledger = Arc::clone(&ledger);
            let prefix = prefix.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    let c = custos_tests::storm_deposit(&prefix, w, i, spread);
                    let outcome = ledger.submit(c).await.expect("append");
                    let a = outcome.expect("deposits are accepted");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {}", a.id, a.seq).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}
