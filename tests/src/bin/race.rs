//! One of several writer processes racing for the same balances (tests/tests/engines.rs):
//! `race URL PREFIX TASKS PER_TASK ACCOUNTS`. Each task withdraws 1 USDC at a time, `PER_TASK`
//! times, from account `acct-race-{i % ACCOUNTS}`; prints `won N refused M` when all are answered.

use std::sync::Arc;

use custos_ledger::{Ledger, LedgerConfig, Rejection};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (location, prefix) = (args[1].clone(), args[2].clone());
    let tasks: usize = args[3].parse().expect("tasks");
    let per_task: usize = args[4].parse().expect("per task");
    let accounts: usize = args[5].parse().expect("accounts");
    let ledger = Arc::new(
        Ledger::open_at(
            &location,
            LedgerConfig { checkpoint_every: 16, holder: format!("race {prefix}"), ..LedgerConfig::default() },
        )
        .expect("opens"),
    );
    let rt = custos_tests::runtime();
    let (won, refused) = rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let ledger = Arc::clone(&ledger);
            let prefix = prefix.clone();
            handles.push(tokio::spawn(async move {
                let (mut won, mut refused) = (0, 0);
                for i in 0..per_task {
                    let mut c = custos_tests::withdraw(
                        &format!("{prefix}-{t}-{i}"),
                        "2022-01-02T00:00:00Z",
                        &format!("acct-race-{}", (t + i) % accounts),
                        "USDC",
                        "1",
                        None,
                        false,
                    );
                    c.occurred_at = None;
                    match ledger.submit(c).await.expect("append") {
                        Ok(_) => won += 1,
                        Err(Rejection::InsufficientBalance { .. }) => refused += 1,
                        Err(other) => panic!("unexpected rejection: {other}"),
                    }
                }
                (won, refused)
            }));
        }
        let mut total = (0, 0);
        for h in handles {
            let (w, r) = h.await.expect("task");
            total = (total.0 + w, total.1 + r);
        }
        total
    });
    ledger.close().expect("closes");
    println!("won {won} refused {refused}");
}
