//! `custos report --html`: the incident report an auditor hands over, rendered by a real
//! headless browser (Chromium from the Debian packages; `.ci/run` installs it). The figures the
//! browser lays out on the page equal `losses --format json`; the page needs nothing outside
//! itself; the same bound writes the same bytes; a screenshot is kept for a person to look at.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custos_tests::{code, custos, stderr, stdout, workspace};
use serde_json::Value;

const FIXTURE: &str = "fixtures/incident-2022-01/commands.csv";
const BOUND: [&str; 4] = ["--as-of", "2022-01-31", "--known-at", "2026-01-01"];

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// Runs headless Chromium with `args` on `page`, killed after two minutes; its stdout.
fn chromium(page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (the CI script installs it: apt-get install chromium)");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The text of `&lt;` `&gt;` `&amp;` `&quot;` as a browser's serializer writes it, read back.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

#[test]
fn the_html_report_shows_the_loss_figures_in_a_real_browser_and_needs_nothing_outside_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = custos(d, &["import", workspace().join(FIXTURE).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = d.join("incident.html");
    let args = |file: &Path| {
        let mut a = vec!["report".to_string(), "--html".into(), file.to_str().unwrap().into()];
        a.extend(BOUND.map(String::from));
        a
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = custos(d, &a);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(stdout(&out).contains("computed at seq 53193"), "{}", stdout(&out));
    };
    run(args(&page));
    let html = std::fs::read_to_string(&page).unwrap();
    run(args(&d.join("again.html")));
    assert_eq!(std::fs::read_to_string(d.join("again.html")).unwrap(), html, "the same bound, the same bytes");

    // Self-contained: nothing fetched from the network or another file.
    for needle in ["src=", "href=", "<link", "<script", "url(", "@import", "https:"] {
        assert!(!html.contains(needle), "the page refers outside itself: {needle}");
    }
    assert_eq!(html.matches("http:").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());

    // What the browser lays out: the text of every cell of the loss table and the register,
    // collected by a script added to a copy of the page (the page itself has none).
    let probe = d.join("probe.html");
    let script = r#"<script>
const cells = {};
for (const tr of document.querySelectorAll('#losses tbody tr')) {
  const group = tr.querySelector('[data-col=group]').innerText;
  for (const td of tr.querySelectorAll('td')) cells[group + '/' + td.dataset.col] = td.innerText;
}
const out = {losses: cells,
  register_rows: document.querySelectorAll('#register tbody tr').length,
  register_ids: [...document.querySelectorAll('#register td[data-col=id]')].map(td => td.innerText),
  timeline_rows: document.querySelectorAll('#timeline tbody tr').length,
  digest: document.getElementById('digest').innerText,
  chart_panels: document.querySelectorAll('#chart svg g.panel').length};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script></body>"#;
    std::fs::write(&probe, html.replace("</body>", script)).unwrap();
    let dom = chromium(&probe, &["--dump-dom".to_string()]);
    let extracted = dom.split_once("<pre id=\"probe\">").expect("the probe ran").1.split_once("</pre>").unwrap().0;
    let seen: Value = serde_json::from_str(&unescape(extracted)).unwrap();

    let bound: Vec<&str> = BOUND.to_vec();
    let losses = json(&custos(d, &[&["losses", "--format", "json"][..], &bound].concat()));
    let mut compared = 0;
    for row in losses["rows"].as_array().unwrap() {
        let group = row["group"].as_str().unwrap();
        for (col, value) in row.as_object().unwrap() {
            let want = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            assert_eq!(seen["losses"][format!("{group}/{col}")], Value::String(want), "{group} {col} on the page");
            compared += 1;
        }
    }
    assert_eq!(compared, 4 * 13, "every cell of the four rows");
    assert_eq!(seen["losses"]["ETH/completed"], "4836.26");
    assert_eq!(seen["losses"]["total/completed_usd"], "33812346.00");

    let register = json(&custos(d, &[&["withdrawals", "--unauthorized", "--format", "json"][..], &bound].concat()));
    let ids: Vec<&str> = register["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 483);
    assert_eq!(seen["register_ids"], serde_json::json!(ids), "the register on the page, row by row");
    let digest = stdout(&custos(d, &["digest"]));
    assert_eq!(seen["digest"].as_str().unwrap(), digest.trim(), "the digest the page was computed at");
    assert_eq!(seen["chart_panels"], 3);
    // 483 flags, the reversals, the reimbursements, the suspension and the resumption.
    assert!(seen["timeline_rows"].as_u64().unwrap() > 483 + 2, "{seen}");

    // A screenshot of the page as a browser draws it, kept for a person to look at.
    let shot: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("incident-report.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&page, &[format!("--screenshot={}", shot.display()), "--window-size=1300,2400".to_string()]);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "a real picture: {} bytes", png.len());
    eprintln!("screenshot of the incident report: {}", shot.display());
}

#[test]
fn the_report_refuses_a_bad_page_name_a_missing_folder_and_a_backwards_window_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, says) in [
        (vec!["report", "--html", "r.pdf"], "name the file .html"),
        (vec!["report", "--html", "/no/such/dir/r.html"], "the folder /no/such/dir does not exist"),
        (vec!["report", "--html", "r.html", "--from", "2022-01-19", "--to", "2022-01-18"], "is after"),
    ] {
        let out = custos(d, &args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // An empty ledger: a page that says nothing is known unauthorized, no chart.
    let out = custos(d, &["deposit", "--account", "acct-a", "--asset", "ETH", "--amount", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let page = d.join("quiet.html");
    let out = custos(d, &["report", "--html", page.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("no withdrawal is known unauthorized at this bound") && !html.contains("<svg"));
}
