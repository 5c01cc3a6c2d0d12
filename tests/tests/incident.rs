//! The incident data set over the real CLI: the published figures, bitemporal views, the replay
//! of the window, verification, and the rejected-commands file.

use custos_tests::{code, custos, stderr, stdout, workspace};
use serde_json::Value;

const FIXTURE: &str = "fixtures/incident-2022-01/commands.csv";
const REJECTED: &str = "fixtures/incident-2022-01/rejected.csv";

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

fn row<'a>(report: &'a Value, group: &str) -> &'a Value {
    report["rows"].as_array().expect("rows").iter().find(|r| r["group"] == group).expect("group row")
}

#[test]
fn the_committed_fixture_is_what_the_generator_makes() {
    let data = custos_fixtures::incident(custos_fixtures::SEED);
    let committed = std::fs::read_to_string(workspace().join(FIXTURE)).unwrap();
    assert!(committed == data.commands_csv, "fixtures/incident-2022-01/commands.csv is stale: regenerate it");
    let rejected = std::fs::read_to_string(workspace().join(REJECTED)).unwrap();
    assert_eq!(rejected, data.rejected_csv);
    assert!(data.commands >= 50_000);
}

#[test]
fn the_demo_reproduces_the_published_figures_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = custos(dir.path(), &["demo", "--format", "json", "--plot", dir.path().join("w.svg").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    let losses = &v["losses"];
    let eth = row(losses, "ETH");
    assert_eq!(eth["completed"], "4836.26");
    assert_eq!(eth["completed_usd"], "15132516.00");
    let btc = row(losses, "BTC");
    assert_eq!(btc["completed"], "443.93");
    assert_eq!(btc["completed_usd"], "18613630.00");
    let misc = row(losses, "misc");
    assert_eq!(misc["completed_usd"], "66200.00");
    assert_eq!(misc["completed"], Value::Null, "misc has no units");
    let total = row(losses, "total");
    assert_eq!(total["completed_usd"], "33812346.00");
    assert_eq!(total["accounts_affected"], 483);
    for r in [eth, btc, misc, total] {
        assert_eq!(r["reimbursed_usd"], r["completed_usd"], "reimbursed = completed");
        assert_eq!(r["outstanding_usd"], "0.00");
    }
    assert_eq!(eth["reimbursed"], "4836.26");
    assert_eq!(btc["outstanding"], "0");
    assert_eq!(v["affected_accounts"]["count"], 483);
    let prevented = v["affected_accounts"]["prevented_in_full"].as_u64().unwrap();
    assert!(prevented > 483 / 2, "the majority were prevented: {prevented}");
    let s = &v["suspensions"][0];
    assert_eq!(s["suspended_at"], "2022-01-18T03:46:00Z");
    assert_eq!(s["resumed_at"], "2022-01-18T17:46:00Z");
    assert_eq!(s["hours"], "14");
    assert_eq!(v["ledger"]["verified"], true);
    // The moments come from the ledger's own events, each labelled with what happened, each
    // as known then: nothing is known lost at the suspension, the first flag shows a loss.
    let moments = v["moments"].as_array().unwrap();
    let names: Vec<&str> = moments.iter().map(|m| m["moment"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "withdrawals suspended (as known then)",
            "first withdrawal flagged unauthorized (as known then)",
            "last withdrawal flagged unauthorized (as known then)",
            "withdrawals resumed (as known then)",
            "last reimbursement (as known then)",
            "today"
        ]
    );
    let total = |i: usize, col: &str| row(&moments[i]["report"], "total")[col].as_str().unwrap().to_string();
    assert_eq!(total(0, "attempted_usd"), "0.00", "at the suspension no withdrawal was known unauthorized yet");
    assert_ne!(total(1, "attempted_usd"), "0.00", "the first flag is a known loss");
    assert_eq!(total(5, "completed_usd"), "33812346.00");
    let svg = std::fs::read_to_string(dir.path().join("w.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("withdrawals suspended"));
    the_chart_is_reproducible_marks_every_flag_and_scales_each_panel(dir.path(), &svg);
}

/// The demo's chart: the same bytes from another run; each panel's scale fits its own data
/// (the maxima from the CLI's replay); one mark per flag, in the panel of its withdrawal's
/// group (from the fixture); labels drawn over the grid with a halo.
fn the_chart_is_reproducible_marks_every_flag_and_scales_each_panel(d: &std::path::Path, svg: &str) {
    let again = d.join("again.svg");
    let out = custos(d, &["demo", "--plot", again.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), svg, "another run draws the same bytes");
    let today = custos_domain::Timestamp::now().to_rfc3339()[..10].to_string();
    assert!(!svg.contains(&today), "the chart does not stamp the wall clock ({today})");

    let fixture = std::fs::read_to_string(workspace().join(FIXTURE)).unwrap();
    let mut asset_of = std::collections::HashMap::new();
    let mut flags: Vec<(String, String)> = Vec::new(); // (withdrawal, recorded_at)
    for l in fixture.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        match f[4] {
            "withdrawal" => {
                asset_of.insert(f[0].to_string(), f[5].to_string());
            }
            "flag" => flags.push((f[8].to_string(), f[2].to_string())),
            _ => {}
        }
    }
    let group_of = |asset: &str| match asset {
        "ETH" | "BTC" => asset.to_string(),
        _ => "misc".to_string(),
    };
    let kept = tempfile::tempdir().unwrap();
    let imported = custos(kept.path(), &["import", workspace().join(FIXTURE).to_str().unwrap()]);
    assert_eq!(code(&imported), 0);
    let replay = json(&custos(
        kept.path(),
        &["replay", "--from", "2022-01-17T19:00:00Z", "--to", "2022-01-19T12:00:00Z", "--format", "json"],
    ));
    let panels: Vec<&str> = svg.split(r#"<g class="panel""#).skip(1).collect();
    assert_eq!(panels.len(), 3);
    let attr = |p: &str, name: &str| -> String {
        p.split_once(&format!(r#"{name}=""#)).unwrap().1.split_once('"').unwrap().0.to_string()
    };
    let mut axes = Vec::new();
    for p in &panels {
        let p = p.split_once("</g>").unwrap().0;
        let group = attr(p, "data-group");
        let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
        let (max, axis) = (dec(&attr(p, "data-max-usd")), dec(&attr(p, "data-axis-max-usd")));
        let g = group.to_lowercase();
        let want = replay["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                ["completed_usd", "prevented_usd", "outstanding_usd"]
                    .map(|c| dec(r[format!("{g}_{c}")].as_str().unwrap()))
            })
            .max()
            .unwrap();
        assert_eq!(max, want, "{group}: the panel's maximum is the replay's");
        assert!(
            axis >= max && axis <= max * rust_decimal::Decimal::new(15, 1),
            "{group}: axis {axis} for a maximum of {max}"
        );
        axes.push(axis);
        let marks = p.matches(r#"class="flag""#).count();
        let want = flags.iter().filter(|(w, _)| group_of(&asset_of[w]) == group).count();
        assert_eq!(marks, want, "{group}: one mark per flag of its withdrawals");
        if let Some((before, label)) = p.split_once("withdrawals suspended 14 h") {
            assert!(!label.contains("<line"), "{group}: the label is drawn after every line");
            assert!(before.rsplit_once("<text").unwrap().1.contains("paint-order=\"stroke\""), "halo");
        }
    }
    assert_eq!(flags.len(), 483);
    assert!(axes[0] != axes[1], "ETH and BTC each have their own scale: {axes:?}");
}

fn imported() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = custos(dir.path(), &["import", workspace().join(FIXTURE).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("53193 appended, 0 duplicates, 0 rejected"), "{}", stdout(&out));
    dir
}

#[test]
fn bitemporal_views_verify_and_the_rejected_file_over_the_cli() {
    let dir = imported();
    let d = dir.path();

    // Before the flags were recorded, nothing was known to be unauthorized.
    let before = custos(d, &["losses", "--known-at", "2022-01-18T03:45:00Z", "--format", "json"]);
    assert_eq!(code(&before), 0, "{}", stderr(&before));
    let v = json(&before);
    assert_eq!(row(&v, "total")["attempted_usd"], "0.00");
    assert_eq!(row(&v, "total")["accounts_affected"], 0);
    assert_eq!(v["known_at"], "2022-01-18T03:45:00Z");
    // Known today, as of the same moment: the attack so far is visible, nothing prevented.
    let hindsight = json(&custos(d, &["losses", "--as-of", "2022-01-18T03:45:00Z", "--format", "json"]));
    assert_ne!(row(&hindsight, "total")["attempted_usd"], "0.00");
    assert_eq!(row(&hindsight, "total")["prevented_usd"], "0.00");
    // At a seq: exact reproduction gives the same answer as the time it stands for.
    let at_seq = json(&custos(d, &["losses", "--at-seq", "53193", "--format", "json"]));
    assert_eq!(row(&at_seq, "total")["completed_usd"], "33812346.00");

    // The replay of the attack window lists exactly the incident's withdrawals, in time order.
    let out =
        custos(d, &["replay", "--from", "2022-01-17T20:00:00Z", "--to", "2022-01-18T03:45:59Z", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let replay = json(&out);
    let rows = replay["rows"].as_array().unwrap();
    let fixture = std::fs::read_to_string(workspace().join(FIXTURE)).unwrap();
    let mut expected: Vec<(String, String)> = fixture
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1] >= "2022-01-17T20:00:00Z" && f[1] < "2022-01-18T03:46:00Z")
                .then(|| (f[1].to_string(), f[0].to_string()))
        })
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["occurred_at"].as_str().unwrap().to_string(), r["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        got.iter().all(|(_, id)| id.starts_with("unauth-") || id.starts_with("dep-")),
        "only the attack and deposits"
    );
    assert_eq!(got.iter().filter(|(_, id)| id.starts_with("unauth-")).count(), 483);
    assert!(rows.iter().filter(|r| r["kind"] == "Withdrawn").all(|r| r["unauthorized"] == true));
    let last = rows.last().unwrap();
    assert_eq!(last["total_completed_usd"], last["total_attempted_usd"]);

    let out = custos(d, &["verify"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("verified 53193 events"), "{}", stdout(&out));

    // The rejected commands: each line refused with its reason, nothing appended.
    let digest_before = stdout(&custos(d, &["digest"]));
    let out = custos(d, &["import", workspace().join(REJECTED).to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let err = stderr(&out);
    for (line, reason) in [
        (2, "falls inside the suspension of withdrawals from 2022-01-18T03:46:00Z to 2022-01-18T17:46:00Z"),
        (3, "falls inside the suspension"),
        (4, "already fully reimbursed"),
        (5, "withdrawal unauth-999, which the ledger does not have"),
        (6, "field amount: amount 0.123456789 has 9 decimal places; BTC allows at most 8"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&format!("line {line}:")) && l.contains(reason)),
            "line {line} {reason}:\n{err}"
        );
    }
    assert!(stdout(&out).contains("0 appended, 0 duplicates, 5 rejected"), "{}", stdout(&out));
    assert_eq!(stdout(&custos(d, &["digest"])), digest_before, "nothing was appended");
    let out = custos(d, &["import", "--strict", workspace().join(REJECTED).to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("nothing was appended"), "{}", stderr(&out));

    // Re-importing the data set appends nothing.
    let out = custos(d, &["import", workspace().join(FIXTURE).to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("0 appended, 53193 duplicates, 0 rejected"), "{}", stdout(&out));
    assert_eq!(stdout(&custos(d, &["digest"])), digest_before);
}

/// The mission's replay: the window in the order the ledger learned it. Each attack withdrawal
/// is not yet known unauthorized at its own row, names when it became known (its flag's
/// recorded_at, read here from the fixture), and the loss totals grow only as flags are recorded.
#[test]
fn the_recorded_order_replay_shows_the_investigation_unfold() {
    let dir = imported();
    let d = dir.path();
    let window = ["--from", "2022-01-17T20:00:00Z", "--to", "2022-01-18T17:46:00Z", "--format", "json"];
    let recorded = json(&custos(d, &[&["replay", "--order", "recorded"][..], &window[..]].concat()));
    let valid = json(&custos(d, &[&["replay"][..], &window[..]].concat()));
    assert_eq!(recorded["order"], "recorded");
    let rows = recorded["rows"].as_array().unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order");
    assert_eq!(rows.len(), valid["rows"].as_array().unwrap().len(), "the same facts (every flag is in the window)");

    // From the fixture: each flag's recorded_at by the withdrawal it flags, and each attack
    // withdrawal's USD value.
    let fixture = std::fs::read_to_string(workspace().join(FIXTURE)).unwrap();
    let mut flagged_at = std::collections::HashMap::new();
    let mut usd = std::collections::HashMap::new();
    for l in fixture.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        match f[4] {
            "flag" => {
                flagged_at.insert(f[8].to_string(), f[2].to_string());
            }
            "withdrawal" if f[0].starts_with("unauth-") => {
                usd.insert(f[0].to_string(), f[7].parse::<rust_decimal::Decimal>().unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(flagged_at.len(), 483);
    let mut attempted = rust_decimal::Decimal::ZERO;
    let mut flags_seen = 0;
    for r in rows {
        let id = r["id"].as_str().unwrap();
        let total_attempted: rust_decimal::Decimal = r["total_attempted_usd"].as_str().unwrap().parse().unwrap();
        if id.starts_with("unauth-") && r["kind"] == "Withdrawn" {
            assert_eq!(r["unauthorized"], false, "{id}: not known at its own row");
            assert_eq!(r["classified_at"], flagged_at[id].as_str(), "{id}");
            assert_eq!(r["classified_how"], "flagged", "{id}");
        }
        if r["kind"] == "WithdrawalFlagged" {
            flags_seen += 1;
            let w = r["ref"].as_str().unwrap();
            attempted += usd[w];
            assert_eq!(r["classified_at"], r["recorded_at"], "{id} classifies {w} when it is recorded");
        }
        assert_eq!(total_attempted, attempted, "after {id}: the attempted USD of the flags recorded so far");
    }
    assert_eq!(flags_seen, 483);
    // Once everything in the window is known, the two orders agree on the totals.
    let last = |v: &Value| {
        let r = v["rows"].as_array().unwrap().last().unwrap().clone();
        ["total_attempted_usd", "total_prevented_usd", "total_reimbursed_usd", "eth_completed", "btc_completed"]
            .map(|c| r[c].clone())
    };
    assert_eq!(last(&recorded), last(&valid));

    // The window an investigator picks: from just before the first flag. Its flags are of
    // withdrawals made before it; the totals still start from what was known then (nothing)
    // and grow at each flag's row to the attack's attempted total.
    let out = custos(
        d,
        &[
            "replay",
            "--order",
            "recorded",
            "--from",
            "2022-01-18T03:50:00Z",
            "--to",
            "2022-01-18T08:00:00Z",
            "--format",
            "json",
        ],
    );
    let rows = json(&out)["rows"].as_array().unwrap().clone();
    let at = |i: usize| rows[i]["total_attempted_usd"].as_str().unwrap().to_string();
    let first_flag = rows.iter().position(|r| r["kind"] == "WithdrawalFlagged").unwrap();
    assert!(first_flag == 0 || at(first_flag - 1) == "0.00", "nothing known before the first flag");
    assert_eq!(at(first_flag), usd[rows[first_flag]["ref"].as_str().unwrap()].to_string());
    assert_eq!(at(rows.len() - 1), "82003610.45", "every flag recorded by 08:00 counted");
}
