//! The same log on both engines: the same digest, the same answers, byte for byte, and the
//! PostgreSQL engine's own guarantees (typed columns checked by verify, a refused unsafe
//! server, a read replica that refuses writes).

use custos_ledger::LedgerConfig;
use custos_tests::{custos_bin, pg, stdout, Backend};

fn custos_at(location: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(custos_bin())
        .arg("--db")
        .arg(location)
        .args(args)
        .env_remove("CUSTOS_DB")
        .output()
        .expect("custos runs")
}

#[test]
fn the_incident_has_the_same_digest_and_answers_on_both_engines() {
    let fixture = custos_tests::workspace().join("fixtures/incident-2022-01/commands.csv");
    let places: Vec<_> = Backend::ALL.iter().map(|b| b.fresh()).collect();
    let mut outputs: Vec<Vec<String>> = Vec::new();
    for place in &places {
        let import = custos_at(&place.location, &["import", fixture.to_str().unwrap()]);
        assert!(import.status.success(), "import into {}: {}", place.location, String::from_utf8_lossy(&import.stderr));
        let mut answers: Vec<String> = Vec::new();
        for args in [
            &["digest"][..],
            // The Merkle tree: the same roots, proofs and leaves on both engines.
            &["digest", "--format", "json"],
            &["digest", "--at-seq", "30001", "--format", "json"],
            &["prove", "--seq", "777", "--size", "30001"],
            &["prove", "--from", "30001", "--to", "53193"],
            &["balances", "--as-of", "2022-01-18T00:00:00Z", "--known-at", "2022-01-18T06:00:00Z"],
            &["losses", "--as-of", "2022-01-19T00:00:00Z", "--known-at", "2025-01-01T00:00:00Z"],
            &["losses", "--as-of", "2022-01-19T00:00:00Z", "--known-at", "2022-01-18T05:00:00Z"],
            &[
                "replay",
                "--from",
                "2022-01-17T20:00:00Z",
                "--to",
                "2022-01-18T17:46:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &[
                "history",
                "--account",
                "acct-000015",
                "--as-of",
                "2025-01-01T00:00:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &[
                "balances",
                "--account",
                "acct-000015",
                "--as-of",
                "2022-01-18T12:00:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &["log", "--from-seq", "1", "--limit", "50", "--format", "json"],
            &["verify"],
        ] {
            let out = custos_at(&place.location, args);
            assert!(out.status.success(), "{args:?} on {}: {}", place.location, String::from_utf8_lossy(&out.stderr));
            answers.push(format!("{args:?}\n{}", stdout(&out)));
        }
        outputs.push(answers);
    }
    for (sled, postgres) in outputs[0].iter().zip(&outputs[1]) {
        if sled != postgres {
            let line = sled.lines().zip(postgres.lines()).find(|(a, b)| a != b);
            panic!(
                "sled and PostgreSQL answer differently: first differing line {line:?}\nsled:\n{}",
                &sled[..sled.len().min(2000)]
            );
        }
    }
}

#[test]
fn an_update_of_one_amount_in_sql_is_found_by_verify_which_names_the_seq() {
    let place = Backend::Postgres.fresh();
    let l = place.open(LedgerConfig::default());
    let rt = custos_tests::runtime();
    for i in 0..20 {
        let c = custos_tests::deposit(&format!("d{i}"), "2022-01-17T10:00:00Z", &format!("acct-{i}"), "ETH", "1.5");
        rt.block_on(l.submit(c)).unwrap().unwrap();
    }
    assert!(l.verify(None, &mut |_, _| {}).unwrap().clean());
    drop(l);
    let c = pg::cluster();
    let db = pg::db_name(&place.location);
    assert_eq!(c.psql(db, "SELECT amount FROM custos_events WHERE seq = 7"), "1.5");
    c.psql(db, "UPDATE custos_events SET amount = 15 WHERE seq = 7");
    let report = place.open(LedgerConfig::default()).verify(None, &mut |_, _| {}).unwrap();
    assert_eq!(report.first_bad_seq(), Some(7), "{:?}", report.discrepancies);
    assert!(report.discrepancies.iter().any(|d| d.what.contains("amount")), "{:?}", report.discrepancies);
    let out = custos_at(&place.location, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("seq 7"), "{}", stdout(&out));
    // Past the first 50 findings the rest are counted and said, never silently dropped.
    c.psql(db, "UPDATE custos_events SET ref = 'x', kind = 'k', stream_version = stream_version + 100");
    let report = place.open(LedgerConfig::default()).verify(None, &mut |_, _| {}).unwrap();
    assert_eq!((report.discrepancies.len(), report.omitted), (50, 11), "{:?}", report.discrepancies.last());
    let out = custos_at(&place.location, &["verify"]);
    assert!(
        stdout(&out).contains("verify found 61 discrepancies") && stdout(&out).contains("11 more are not"),
        "{}",
        stdout(&out)
    );
}

/// Two writer processes, 16 tasks each, race 1-USDC withdrawals against four accounts of 50
/// USDC: exactly the 200 affordable withdrawals win, in one gap-free chain, and verify is clean.
#[test]
fn two_writer_processes_racing_overdrafts_on_shared_accounts_win_exactly_what_is_affordable() {
    let place = Backend::Postgres.fresh();
    {
        let l = place.open(LedgerConfig::default());
        let rt = custos_tests::runtime();
        for a in 0..4 {
            let c = custos_tests::deposit(
                &format!("fund-{a}"),
                "2022-01-01T00:00:00Z",
                &format!("acct-race-{a}"),
                "USDC",
                "50",
            );
            rt.block_on(l.submit(c)).unwrap().unwrap();
        }
    }
    let racers: Vec<_> = ["a", "b"]
        .iter()
        .map(|p| {
            std::process::Command::new(env!("CARGO_BIN_EXE_race"))
                .args([&place.location, *p, "16", "10", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut won, mut refused) = (0u64, 0u64);
    for r in racers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "racer: {}", String::from_utf8_lossy(&out.stderr));
        let text = stdout(&out);
        let words: Vec<&str> = text.split_whitespace().collect();
        won += words[1].parse::<u64>().unwrap();
        refused += words[3].parse::<u64>().unwrap();
        eprintln!("racer: {text}");
    }
    assert_eq!((won, refused), (200, 120));
    let l = place.open(LedgerConfig::default());
    assert_eq!(l.head().seq, 4 + 200, "one gap-free seq for both processes");
    let report = l.verify(None, &mut |_, _| {}).unwrap();
    assert!(report.clean(), "{:?}", report.discrepancies);
    let bound = l.bound(None, None, None).unwrap();
    assert!(l.balances_at(&bound).unwrap().rows(None, None, false).iter().all(|r| r.balance.is_zero()));
}

/// `migrate` copies the incident from sled to PostgreSQL and back: the digest is the same on
/// all three, the answers too, and a second run finds nothing left to copy.
#[test]
fn migrate_both_ways_keeps_the_digest() {
    let fixture = custos_tests::workspace().join("fixtures/incident-2022-01/commands.csv");
    let sled = Backend::Sled.fresh();
    let import = custos_at(&sled.location, &["import", fixture.to_str().unwrap()]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let postgres = Backend::Postgres.fresh();
    let back = Backend::Sled.fresh();
    let back_dir = format!("{}/copy", back.location);
    let digest = stdout(&custos_at(&sled.location, &["digest"]));
    for (from, to) in [(&sled.location, &postgres.location), (&postgres.location, &back_dir)] {
        let out = std::process::Command::new(custos_bin())
            .args(["migrate", "--from", from, "--to", to])
            .env_remove("CUSTOS_DB")
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(out.status.success(), "migrate {from} -> {to}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            text.contains("copied 53193 events") && text.contains(&format!("digest {} on both", digest.trim())),
            "{text}"
        );
        assert!(text.contains("verify of the copy: clean"), "{text}");
    }
    let losses = ["losses", "--as-of", "2022-01-19T00:00:00Z", "--known-at", "2025-01-01T00:00:00Z"];
    let want = stdout(&custos_at(&sled.location, &losses));
    for place in [&postgres.location, &back_dir] {
        assert_eq!(stdout(&custos_at(place, &["digest"])), digest);
        assert_eq!(stdout(&custos_at(place, &losses)), want);
    }
    let again = std::process::Command::new(custos_bin())
        .args(["migrate", "--from", &sled.location, "--to", &postgres.location])
        .output()
        .unwrap();
    assert!(stdout(&again).contains("the copy was already complete: both end at seq 53193"), "{}", stdout(&again));
    assert!(stdout(&again).contains("copied 0 events"), "{}", stdout(&again));
}

/// A streaming replica (pg_basebackup, a second port) answers queries for what it has
/// replayed, follows the primary, and refuses writes with a clear error.
#[test]
fn a_streaming_replica_answers_queries_and_refuses_writes() {
    let place = Backend::Postgres.fresh();
    let rt = custos_tests::runtime();
    let primary = place.open(LedgerConfig::default());
    for i in 0..10 {
        let c = custos_tests::deposit(&format!("d{i}"), "2022-01-10T00:00:00Z", "acct-1", "BTC", "0.5");
        rt.block_on(primary.submit(c)).unwrap().unwrap();
    }
    let replica = pg::cluster().start_replica();
    let replica_url = replica.0.url(pg::db_name(&place.location));
    let wait_for = |seq: u64| {
        let l = custos_ledger::Ledger::open_at(&replica_url, LedgerConfig::default()).unwrap();
        for _ in 0..200 {
            if l.refresh().unwrap().seq >= seq {
                return l;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the replica never reached seq {seq}");
    };
    let on_replica = wait_for(10);
    let balance = |l: &custos_ledger::Ledger| {
        let b = l.bound(None, None, None).unwrap();
        l.account_balances_at(&custos_tests::account("acct-1"), &b).unwrap().rows(None, None, false)[0].balance
    };
    assert_eq!(balance(&on_replica), rust_decimal::Decimal::from(5));
    assert_eq!(on_replica.head(), primary.head());
    // More on the primary: the open replica ledger follows.
    let c = custos_tests::deposit("d10", "2022-01-10T00:00:00Z", "acct-1", "BTC", "1");
    rt.block_on(primary.submit(c)).unwrap().unwrap();
    for _ in 0..200 {
        if on_replica.refresh().unwrap().seq == 11 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(balance(&on_replica), rust_decimal::Decimal::from(6));
    assert!(on_replica.verify(None, &mut |_, _| {}).unwrap().clean());
    // The replica stores nothing: its Merkle tree is the one its primary stored, as far as
    // that reached, and the same as the primary's at that size.
    let on_replica_tree = on_replica.tree_head(None).unwrap();
    assert_eq!(primary.tree_head(Some(on_replica_tree.tree_size)).unwrap(), on_replica_tree);
    // A write on the replica is refused, saying why and where to send it.
    let out =
        custos_at(&replica_url, &["deposit", "--id", "r1", "--account", "acct-1", "--asset", "BTC", "--amount", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("read replica") && err.contains("primary"), "{err}");
    assert_eq!(primary.head().seq, 11);
}

/// A database whose commits are not durable is refused on open, saying why (here
/// `synchronous_commit` off for the database; `fsync` off is server-wide and refused the same way).
#[test]
fn a_database_without_durable_commits_is_refused() {
    let place = Backend::Postgres.fresh();
    let db = pg::db_name(&place.location);
    pg::cluster().psql("postgres", &format!("ALTER DATABASE {db} SET synchronous_commit = off"));
    let err =
        custos_ledger::Ledger::open_at(&place.location, LedgerConfig::default()).err().expect("refused").to_string();
    assert!(err.contains("synchronous_commit = off") && err.contains("could be lost"), "{err}");
    let out =
        custos_at(&place.location, &["deposit", "--id", "d1", "--account", "a", "--asset", "BTC", "--amount", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("synchronous_commit = off"));
}

/// A server on PostgreSQL sees what other processes write: its head, its queries and its live
/// tail follow a CLI process's appends, without gaps or repeats.
#[test]
fn a_server_on_postgres_follows_other_processes_writes_in_its_tail_and_queries() {
    use std::io::BufRead;
    let place = Backend::Postgres.fresh();
    let s = custos_tests::TestServer::start_at(&place.location, None);
    let response = ureq::get(&format!("{}/v1/tail?from_seq=1", s.url))
        .set("Authorization", &format!("Bearer {}", custos_tests::READ_TOKEN))
        .call()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(response.into_reader()).lines() {
            if let Some(id) = line.unwrap().strip_prefix("id: ") {
                seen.push(id.parse::<u64>().unwrap());
                if seen.len() == 6 {
                    break;
                }
            }
        }
        seen
    });
    for i in 0..6 {
        let out = custos_at(
            &place.location,
            &["deposit", "--id", &format!("cli-{i}"), "--account", "acct-o", "--asset", "BTC", "--amount", "0.5"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(reader.is_finished(), "the tail did not see the other process's six events");
    assert_eq!(reader.join().unwrap(), (1..=6).collect::<Vec<u64>>());
    let (status, digest) =
        custos_tests::http("GET", &format!("{}/v1/digest", s.url), Some(custos_tests::READ_TOKEN), None);
    assert_eq!((status, digest["seq"].as_u64()), (200, Some(6)));
    let (status, body) = custos_tests::http(
        "GET",
        &format!("{}/v1/balances?account=acct-o&format=json", s.url),
        Some(custos_tests::READ_TOKEN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("\"3\""), "{body}");
}

/// The main job on PostgreSQL: `demo --db URL` builds the incident there and reports the same
/// bytes as on a folder (but for the moments both answer as of "now").
#[test]
fn the_demo_runs_on_postgres_with_the_same_report() {
    let place = Backend::Postgres.fresh();
    let folder = Backend::Sled.fresh();
    let run = |location: &str| {
        let out = std::process::Command::new(custos_bin())
            .args(["demo", "--format", "json", "--db", location])
            .env_remove("CUSTOS_DB")
            .output()
            .unwrap();
        assert!(out.status.success(), "demo --db {location}: {}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    let now_free = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !((l.contains("\"as_of\"") || l.contains("\"known_at\"")) && !l.contains("2022-")))
            .map(str::to_string)
            .collect()
    };
    let on_postgres = now_free(&run(&place.location));
    let on_sled = now_free(&run(&format!("{}/demo", folder.location)));
    let first = on_postgres.iter().zip(&on_sled).position(|(a, b)| a != b);
    assert!(
        first.is_none() && on_postgres.len() == on_sled.len(),
        "first difference: {:?}",
        first.map(|i| (&on_postgres[i], &on_sled[i]))
    );
    assert!(on_postgres.iter().any(|l| l.contains("\"completed\": \"4836.26\"")), "the incident's ETH figure");
}

/// A database whose Custos schema is newer than this build's is refused, saying both versions.
#[test]
fn a_newer_schema_is_refused_with_both_versions() {
    let place = Backend::Postgres.fresh();
    drop(place.open(LedgerConfig::default()));
    pg::cluster().psql(pg::db_name(&place.location), "UPDATE custos_schema SET version = 99");
    let err =
        custos_ledger::Ledger::open_at(&place.location, LedgerConfig::default()).err().expect("refused").to_string();
    assert!(
        err.contains("schema version 99")
            && err.contains(&format!("reads version {}", custos_postgres::SCHEMA_VERSION)),
        "{err}"
    );
}

/// A database of an older Custos schema (version 1: checkpoints compressed) is migrated on
/// open: the step is said, the version recorded, and the ledger's answers unchanged.
#[test]
fn an_older_schema_is_migrated_on_open_and_says_so() {
    let place = Backend::Postgres.fresh();
    let out =
        custos_at(&place.location, &["deposit", "--id", "m1", "--account", "a", "--asset", "BTC", "--amount", "1.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = pg::db_name(&place.location);
    let storage = "SELECT attstorage FROM pg_attribute WHERE attrelid = 'custos_meta'::regclass AND attname = 'value'";
    assert_eq!(pg::cluster().psql(db, storage), "e", "a new ledger is created at the latest version");
    // Back to what version 1 created.
    pg::cluster().psql(db, "ALTER TABLE custos_meta ALTER COLUMN value SET STORAGE EXTENDED");
    pg::cluster().psql(db, "UPDATE custos_schema SET version = 1");
    let out = custos_at(&place.location, &["balances", "--account", "a"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("schema version 1 to 2"), "the migration is said: {stderr}");
    assert!(stdout.contains("1.5"), "{stdout}");
    assert_eq!(
        pg::cluster().psql(db, "SELECT version FROM custos_schema"),
        custos_postgres::SCHEMA_VERSION.to_string()
    );
    assert_eq!(pg::cluster().psql(db, storage), "e");
    let again = custos_at(&place.location, &["balances", "--account", "a"]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("migrated"), "once only");
}

/// A URL's scheme is case-insensitive, and nothing that looks like a URL is ever taken for a
/// folder's name (an uppercase POSTGRES:// once created a sled ledger in `./POSTGRES:`).
#[test]
fn an_uppercase_scheme_opens_postgres_and_other_urls_are_refused_not_made_folders() {
    let place = Backend::Postgres.fresh();
    let cwd = tempfile::tempdir().unwrap();
    let run = |db: &str, args: &[&str]| {
        std::process::Command::new(custos_bin())
            .arg("--db")
            .arg(db)
            .args(args)
            .current_dir(cwd.path())
            .env_remove("CUSTOS_DB")
            .output()
            .unwrap()
    };
    let upper = place.location.replacen("postgres://", "POSTGRES://", 1);
    let out = run(&upper, &["deposit", "--id", "u1", "--account", "a", "--asset", "BTC", "--amount", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pg::cluster().psql(pg::db_name(&place.location), "SELECT event_id FROM custos_events"), "u1");
    for bad in ["postgres:/postgres@127.0.0.1/x", "mysql://root@127.0.0.1/x"] {
        let out = run(bad, &["deposit", "--id", "u2", "--account", "a", "--asset", "BTC", "--amount", "1"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("postgres://"), "{bad}: {err}");
    }
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "no folder was made");
}

/// Boundary records removed behind the ledger's back (a helper deleted them in SQL: the
/// balances at a moment came back empty, exit 0) cost speed, never an answer: the ledger finds
/// them missing against the count written with them, says so, reads the whole log, and verify
/// names the damage; a rebuild restores them.
#[test]
fn missing_boundary_records_never_change_an_answer() {
    let fixture = custos_tests::workspace().join("fixtures/incident-2022-01/commands.csv");
    for backend in Backend::ALL {
        let place = backend.fresh();
        let import = custos_at(&place.location, &["import", fixture.to_str().unwrap()]);
        assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
        let questions: [&[&str]; 3] = [
            &["balances", "--as-of", "2022-01-17T00:00:00Z", "--known-at", "2022-01-17T12:00:00Z", "--format", "csv"],
            &[
                "replay",
                "--from",
                "2022-01-17T20:00:00Z",
                "--to",
                "2022-01-18T17:46:00Z",
                "--known-at",
                "2025-01-01T00:00:00Z",
            ],
            &["losses", "--as-of", "2022-01-18T00:00:00Z", "--known-at", "2022-01-18T06:00:00Z"],
        ];
        let answers = |expect_note: bool| -> Vec<String> {
            questions
                .iter()
                .map(|q| {
                    let out = custos_at(&place.location, q);
                    let err = String::from_utf8_lossy(&out.stderr).to_string();
                    assert!(out.status.success(), "{backend:?} {q:?}: {err}");
                    assert_eq!(
                        err.contains("boundary records of this ledger are incomplete"),
                        expect_note,
                        "{backend:?}: {err}"
                    );
                    stdout(&out)
                })
                .collect()
        };
        let before = answers(false);
        assert!(before[0].lines().count() > 1000, "{backend:?}: a real answer to compare");
        // Remove the boundary records, as an intruder or a bad restore would.
        match backend {
            Backend::Postgres => {
                pg::cluster()
                    .psql(pg::db_name(&place.location), "DELETE FROM custos_meta WHERE name LIKE 'boundary/%'");
            }
            Backend::Sled => {
                let store = custos_sled::Store::open(std::path::Path::new(&place.location), "test").unwrap();
                let names = store.list_meta("boundary/").unwrap();
                assert!(names.len() >= 12, "{names:?}");
                store.write_meta(vec![], names).unwrap();
                store.sync().unwrap();
            }
        }
        assert_eq!(answers(true), before, "{backend:?}: the same answers without the boundary records");
        let verify = custos_at(&place.location, &["verify"]);
        assert_eq!(verify.status.code(), Some(1), "{backend:?}");
        assert!(stdout(&verify).contains("boundary records are missing"), "{backend:?}: {}", stdout(&verify));
        let rebuild = custos_at(&place.location, &["rebuild"]);
        assert!(rebuild.status.success(), "{}", String::from_utf8_lossy(&rebuild.stderr));
        assert_eq!(
            custos_at(&place.location, &["verify"]).status.code(),
            Some(0),
            "{backend:?}: clean after the rebuild"
        );
        assert_eq!(answers(false), before, "{backend:?}");
    }
}

/// An edited head row (or events deleted at the end) would make every answer stop short
/// silently: the ledger is refused on open, naming both seqs, as a damaged folder is.
#[test]
fn a_head_row_edited_in_sql_is_refused_on_open() {
    let place = Backend::Postgres.fresh();
    let l = place.open(LedgerConfig::default());
    let rt = custos_tests::runtime();
    for i in 0..5 {
        let c = custos_tests::deposit(&format!("d{i}"), "2022-01-10T00:00:00Z", "acct-1", "BTC", "1");
        rt.block_on(l.submit(c)).unwrap().unwrap();
    }
    drop(l);
    let db = pg::db_name(&place.location);
    pg::cluster().psql(db, "UPDATE custos_head SET seq = 3");
    let out = custos_at(&place.location, &["balances"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("custos_head says seq 3") && err.contains("last stored event is seq 5"), "{err}");
    // Put back, it opens again.
    pg::cluster().psql(db, "UPDATE custos_head SET seq = 5");
    assert!(custos_at(&place.location, &["verify"]).status.success());
    pg::cluster().psql(db, "DELETE FROM custos_events WHERE seq = 5");
    let err = String::from_utf8_lossy(&custos_at(&place.location, &["digest"]).stderr).to_string();
    assert!(err.contains("custos_head says seq 5") && err.contains("last stored event is seq 4"), "{err}");
}

/// Two writers on one database, appending in turns with events that arrive late (valid time
/// going back and forth), checkpoints every 3 events: each writer catches up on the other's
/// events before deciding, and the bounds it then holds (derived from the events when no
/// boundary was crossed, read back when one was) never hide an event from a point-in-time
/// answer. Every moment's balance from both ledgers equals a fold of the deposits.
#[test]
fn two_writers_in_turns_with_late_events_keep_every_point_in_time_answer_exact() {
    let place = Backend::Postgres.fresh();
    let config = || LedgerConfig { checkpoint_every: 3, balances_checkpoint_multiple: 1, ..LedgerConfig::default() };
    let writers = [place.open(config()), place.open(config())];
    let rt = custos_tests::runtime();
    // (minute of 2022-01-01, amount): out of valid-time order on purpose.
    let minutes: Vec<(u32, u32)> = (0..40u32).map(|i| ((i * 37) % 53, i + 1)).collect();
    for (i, (minute, amount)) in minutes.iter().enumerate() {
        let at = format!("2022-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
        // One account each: valid time may go back across streams, never within one.
        let c = custos_tests::deposit(&format!("late-{i}"), &at, &format!("acct-late-{i}"), "BTC", &amount.to_string());
        rt.block_on(writers[i % 2].submit(c)).unwrap().unwrap();
    }
    for minute in 0..54u32 {
        let at = format!("2022-01-01T{:02}:{:02}:30Z", minute / 60, minute % 60);
        let want: u32 = minutes.iter().filter(|(m, _)| *m <= minute).map(|(_, a)| a).sum();
        for (w, l) in writers.iter().enumerate() {
            l.refresh().unwrap();
            let bound = l.bound(Some(custos_tests::t(&at)), None, None).unwrap();
            let rows = l.balances_at(&bound).unwrap().rows(None, None, false);
            let got: rust_decimal::Decimal = rows.iter().map(|r| r.balance).sum();
            assert_eq!(got, rust_decimal::Decimal::from(want), "writer {w} at {at}");
        }
    }
}
