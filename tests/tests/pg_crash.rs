//! PostgreSQL itself stopped mid-append (`pg_ctl stop -m immediate`: no shutdown checkpoint,
//! WAL replay on restart, as after a power cut), in rounds: after the restart every
//! acknowledged event is at its seq, verify is clean, the balances are those of a fold of the
//! log from scratch, and re-sending everything appends each id exactly once. Its own test
//! process (so its own cluster): stopping the server must not disturb other tests.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::time::Duration;

use custos_domain::{Event, EventId};
use custos_ledger::LedgerConfig;
use custos_tests::{pg, Backend};
use rust_decimal::Decimal;

const WRITERS: usize = 8;
const PER_WRITER: usize = 300;

#[test]
fn an_immediate_stop_of_postgresql_mid_append_loses_nothing_acknowledged() {
    let place = Backend::Postgres.fresh();
    let cluster = pg::cluster();
    let mut acked: HashMap<String, u64> = HashMap::new();
    for round in 0..3u64 {
        let storm = custos_tests::Storm::start(
            env!("CARGO_BIN_EXE_storm"),
            &[&place.location, &WRITERS.to_string(), &PER_WRITER.to_string(), &format!("r{round}")],
        );
        std::thread::sleep(Duration::from_millis(300 + round * 150));
        cluster.stop_immediate();
        // The storm's appends now fail and it stops; it is killed should it linger.
        std::thread::sleep(Duration::from_millis(500));
        let seen = storm.kill();
        eprintln!("round {round}: server stopped after {} acknowledged appends", seen.len());
        cluster.start();

        let ledger = place.open(LedgerConfig {
            checkpoint_every: 500,
            holder: "pg crash test".into(),
            ..LedgerConfig::default()
        });
        for (id, seq) in seen {
            assert_eq!(acked.insert(id.clone(), seq).unwrap_or(seq), seq, "{id} acknowledged at two seqs");
        }
        for (id, seq) in &acked {
            let env = ledger.find_event(&EventId::new(id).unwrap()).unwrap();
            assert_eq!(env.map(|e| e.seq), Some(*seq), "round {round}: acknowledged {id} at seq {seq} is missing");
        }
        let report = ledger.verify(None, &mut |_, _| {}).unwrap();
        assert!(report.clean(), "round {round}: {:?}", report.discrepancies);
        // The balances are a fold of the log from scratch.
        let mut folded: BTreeMap<String, Decimal> = BTreeMap::new();
        ledger
            .for_each_envelope(1, |env| {
                if let Event::Deposited { amount, .. } = env.event {
                    *folded.entry(env.stream.to_string()).or_default() += amount.value();
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        let bound = ledger.bound(None, None, None).unwrap();
        let answered: BTreeMap<String, Decimal> = ledger
            .balances_at(&bound)
            .unwrap()
            .rows(None, None, false)
            .into_iter()
            .map(|r| (r.account.to_string(), r.balance))
            .collect();
        assert_eq!(answered, folded, "round {round}");
        // Re-send the whole round: each id exactly once.
        let commands = custos_tests::storm_deposits(&format!("r{round}"), WRITERS, PER_WRITER);
        ledger.submit_batch_blocking(commands).unwrap();
        assert_eq!(ledger.head().seq, (WRITERS * PER_WRITER) as u64 * (round + 1), "round {round}: every id once");
        ledger.close().unwrap();
    }
}
