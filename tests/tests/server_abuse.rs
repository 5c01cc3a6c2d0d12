//! The server under a client that stalls (issue 10, finding 17): a connection that sends no
//! headers, or only some, or sits idle after a request, is closed once the header timeout
//! passes, before any token is checked; a request body that stalls is cut off. All of them
//! were still open after 75 s with axum::serve's defaults.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use custos_tests::{TestServer, READ_TOKEN, WRITE_TOKEN};

/// How long until the server closes `stream` (reading and discarding what it sends), up to
/// `limit`; `None` if it is still open then.
fn closed_after(mut stream: TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some((started.elapsed(), String::from_utf8_lossy(&got).into_owned())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some((started.elapsed(), String::from_utf8_lossy(&got).into_owned())),
        }
    }
    None
}

/// Posts to `path` with a body of `length` bytes sent one byte per `every`, until the server
/// answers (or 10 s pass); returns what it answered.
fn trickle(addr: &str, path: &str, length: usize, every: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    while started.elapsed() < Duration::from_secs(10) && answer.is_empty() {
        if stream.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(n) = stream.read(&mut buf) {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    answer
}

#[test]
fn stalled_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = custos_server::ServerConfig::new(READ_TOKEN.into(), WRITE_TOKEN.into());
    config.header_timeout = Duration::from_secs(1);
    config.body_idle_timeout = Duration::from_secs(1);
    let s = TestServer::start(dir.path(), Some(config));
    let addr = s.url.trim_start_matches("http://").to_string();
    let limit = Duration::from_secs(8);

    // Nothing at all.
    let silent = TcpStream::connect(&addr).unwrap();
    assert!(closed_after(silent, limit).is_some(), "a connection that sends nothing stays open");

    // Half a header.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /v1/balances HTTP/1.1\r\nHost: x\r\nAuthor").unwrap();
    assert!(closed_after(slow, limit).is_some(), "a connection that stops mid-header stays open");

    // A whole request, answered, then nothing (keep-alive).
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, answer) = closed_after(idle, limit).expect("an idle keep-alive connection stays open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body that stalls after its first bytes.
    let mut body = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_TOKEN}\r\nContent-Length: 100000\r\n\r\n"
    );
    body.write_all(head.as_bytes()).unwrap();
    body.write_all(b"{\"id\":\"d1\",").unwrap();
    let (_, answer) = closed_after(body, limit).expect("a stalled body keeps its connection open");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");

    // The server still answers.
    let (status, _) = custos_tests::http("GET", &format!("{}/health", s.url), None, None);
    assert_eq!(status, 200);
}

/// Heavy queries are bounded in number (finding 16): past `queries_in_flight_max` answering at
/// once, a query waits up to `query_wait_max` for a turn and is then 503 `busy`; every answer
/// given is whole and the same. And a replay window spanning the whole time range is refused
/// (its width overflowed an i64 and passed the check).
#[test]
fn heavy_queries_take_turns_and_the_replay_window_check_cannot_overflow() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = custos_ledger::Ledger::open(dir.path(), custos_ledger::LedgerConfig::default()).unwrap();
        let commands: Vec<_> = (0..30_000)
            .map(|i| {
                custos_tests::deposit(&format!("d{i}"), "2022-01-10T10:00:00Z", &format!("acct-{i}"), "ETH", "1.5")
            })
            .collect();
        assert!(custos_tests::runtime().block_on(l.submit_batch(commands)).unwrap().iter().all(|o| o.is_ok()));
        l.close().unwrap();
    }
    let mut config = custos_server::ServerConfig::new(READ_TOKEN.into(), WRITE_TOKEN.into());
    config.queries_in_flight_max = 1;
    config.query_wait_max = Duration::from_millis(20);
    let s = TestServer::start(dir.path(), Some(config));
    let url = format!("{}/v1/balances?as_of=2022-01-10T11:00:00Z&format=csv", s.url);
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| match ureq::get(&url).set("Authorization", &format!("Bearer {READ_TOKEN}")).call() {
                    Ok(r) => (r.status(), r.into_string().unwrap()),
                    Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                    Err(e) => panic!("{e}"),
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&String> = answers.iter().filter(|(c, _)| *c == 200).map(|(_, b)| b).collect();
    let busy = answers.iter().filter(|(c, b)| *c == 503 && b.contains("\"busy\"")).count();
    assert!(!ok.is_empty() && busy > 0, "{:?}", answers.iter().map(|(c, _)| c).collect::<Vec<_>>());
    assert_eq!(ok.len() + busy, answers.len());
    assert!(ok.iter().all(|b| *b == ok[0] && b.lines().count() > 30_000), "every answer whole and the same");
    let (_, metrics) = (
        0,
        ureq::get(&format!("{}/metrics", s.url))
            .set("Authorization", &format!("Bearer {READ_TOKEN}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    );
    assert!(metrics.contains(&format!("custos_queries_busy_total {busy}")), "{metrics}");

    let wide = format!("{}/v1/replay?from=1678-01-01T00:00:00Z&to=2262-04-10T00:00:00Z", s.url);
    let (status, v) = custos_tests::http("GET", &wide, Some(READ_TOKEN), None);
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("range_too_large")), "{v}");
}

/// Found by a helper attacking the server: an import's answer listed every refusal, each
/// quoting the refused value (8 concurrent imports of lines with a 3,800-byte `ref` took the
/// server past 1 GB); a body trickling in at a byte a second stayed open for hours; the scheme
/// `bearer` in lower case was refused; `at_seq=0` showed the smallest timestamp as known_at.
#[test]
fn answers_stay_small_trickles_are_cut_off_and_bearer_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = custos_server::ServerConfig::new(READ_TOKEN.into(), WRITE_TOKEN.into());
    config.body_idle_timeout = Duration::from_secs(1);
    config.small_request_deadline = Duration::from_secs(2);
    let s = TestServer::start(dir.path(), Some(config));
    let addr = s.url.trim_start_matches("http://").to_string();

    // 2,000 refused lines, each with a 3,000-byte value: all counted, 100 shown, each short.
    let long = "r".repeat(3000);
    let line = |i: usize| {
        format!(
            r#"{{"kind":"deposit","id":"q{i}","account":"acct-1","asset":"ETH","amount":"1","occurred_at":"2022-02-01T00:00:00Z","ref":"{long}"}}"#
        )
    };
    let body: String = (0..2000).map(|i| line(i) + "\n").collect();
    let r = ureq::post(&format!("{}/v1/import", s.url))
        .set("Authorization", &format!("Bearer {WRITE_TOKEN}"))
        .send_string(&body);
    let Err(ureq::Error::Status(409, r)) = r else { panic!("expected 409, got {r:?}") };
    let text = r.into_string().unwrap();
    assert!(text.len() < 64 << 10, "the answer is {} bytes", text.len());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["rejected"].as_u64(), v["rejections_shown"].as_u64()), (Some(2000), Some(100)), "{v}");
    assert!(v["rejections"][0]["message"].as_str().unwrap().contains("(3000 bytes)"), "{v}");

    // An import body at a byte per 300 ms: 408 once past the idle timeout, saying what it
    // appended (nothing).
    let answer = trickle(&addr, "/v1/import", 100_000, Duration::from_millis(300));
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body_too_slow"), "{answer}");
    // A command body at a byte every half second (under the idle timeout): cut off at the
    // deadline.
    let answer = trickle(&addr, "/v1/commands", 1000, Duration::from_millis(500));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // bearer, BEARER: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER"] {
        let r =
            ureq::get(&format!("{}/v1/digest", s.url)).set("Authorization", &format!("{scheme} {READ_TOKEN}")).call();
        assert_eq!(r.map(|r| r.status()).unwrap_or(0), 200, "{scheme}");
    }
    let (status, v) = custos_tests::http("GET", &format!("{}/v1/balances?at_seq=0", s.url), Some(READ_TOKEN), None);
    assert_eq!((status, v["known_at"].is_null()), (200, true), "{v}");
}
