//! `custos --server URL ...`: the same commands and queries, sent to a running `custos serve`
//! instead of opening the ledger folder (which the server holds). Output and exit codes are the
//! same as when working on the folder directly.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use custos_domain::{Command, CommandBody, Timestamp};
use serde_json::{json, Map, Value};

use crate::cli::{command_of, token_from, Cmd, Moment};
use crate::Exit;
use custos_ledger::ReplayOrder;
use custos_report::Format;

struct Client {
    base: String,
    token: String,
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
    /// What the query named that the ledger has never seen, on an answer with rows.
    never_seen: Option<String>,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the server answered {} with: {}", self.status, self.body))
    }
    /// The server's error message, for 4xx and 5xx answers.
    fn error_message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.body.clone())
    }
}

impl Client {
    fn request(&self, req: ureq::Request) -> Result<ureq::Request> {
        Ok(req.set("Authorization", &format!("Bearer {}", self.token)).timeout(Duration::from_secs(600)))
    }

    fn finish(&self, result: Result<ureq::Response, ureq::Error>) -> Result<Answer> {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => bail!("cannot reach the server at {}: {t}", self.base),
        };
        let status = response.status();
        let never_seen = response.header(custos_server::NEVER_SEEN_HEADER).map(str::to_string);
        let mut body = String::new();
        response.into_reader().take(256 << 20).read_to_string(&mut body)?;
        Ok(Answer { status, body, never_seen })
    }

    fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Answer> {
        let mut req = self.request(ureq::get(&format!("{}{path}", self.base)))?;
        for (k, v) in params {
            req = req.query(k, v);
        }
        self.finish(req.call())
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer> {
        let req = self.request(ureq::post(&format!("{}{path}", self.base)))?.set("Content-Type", content_type);
        self.finish(req.send_bytes(body))
    }
}

fn time(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn moment_params(m: &Moment) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if let Some(t) = m.as_of {
        p.push(("as_of", time(t)));
    }
    if let Some(t) = m.known_at {
        p.push(("known_at", time(t)));
    }
    if let Some(n) = m.at_seq {
        p.push(("at_seq", n.to_string()));
    }
    p
}

/// Prints a report answer; a refused query is a usage error, as it is locally.
/// Prints a query's answer. Names the ledger has never seen are said on stderr, exit 1, as
/// the CLI does on a local ledger.
fn print_report(answer: Answer) -> Result<Exit> {
    if answer.status == 404 && answer.json().is_ok_and(|v| v["error"]["code"] == "never_seen") {
        eprintln!("{}", answer.error_message());
        return Ok(Exit::Refused);
    }
    if answer.status != 200 {
        bail!("{}", answer.error_message());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(answer.body.as_bytes())?;
    drop(out);
    match answer.never_seen {
        Some(message) => {
            eprintln!("{message}");
            Ok(Exit::Refused)
        }
        None => Ok(Exit::Ok),
    }
}

/// A command as a JSON object of the import format.
fn command_json(c: &Command) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("id", c.id.to_string());
    put("kind", c.body.kind().name().to_string());
    if let Some(t) = c.occurred_at {
        put("occurred_at", time(t));
    }
    if let Some(v) = c.expected_version {
        put("expected_version", v.to_string());
    }
    match &c.body {
        CommandBody::Deposit { account, asset, amount, usd_value } => {
            put("account", account.to_string());
            put("asset", asset.to_string());
            put("amount", amount.to_string());
            if let Some(u) = usd_value {
                put("usd_value", u.to_string());
            }
        }
        CommandBody::Withdraw { account, asset, amount, usd_value, unauthorized, destination, auth_factor } => {
            put("account", account.to_string());
            put("asset", asset.to_string());
            put("amount", amount.to_string());
            put("unauthorized", unauthorized.to_string());
            if let Some(u) = usd_value {
                put("usd_value", u.to_string());
            }
            if let Some(d) = destination {
                put("destination", d.clone());
            }
            if let Some(f) = auth_factor {
                put("auth_factor", f.name().to_string());
            }
        }
        CommandBody::Reverse { withdrawal, .. } | CommandBody::Flag { withdrawal, .. } => {
            put("ref", withdrawal.to_string())
        }
        CommandBody::Reimburse { withdrawal, amount, .. } => {
            put("ref", withdrawal.to_string());
            if let Some(a) = amount {
                put("amount", a.to_string());
            }
        }
        CommandBody::SuspendWithdrawals { reason } => {
            if let Some(r) = reason {
                put("reason", r.clone());
            }
        }
        CommandBody::ResumeWithdrawals => {}
    }
    Value::Object(m)
}

/// A CSV command file as JSON Lines (the server validates every field).
/// A CSV import file as the JSON lines the server takes, one per record (an empty line for a
/// blank one), and the CSV line number of each JSON line (so that what the server says about
/// its line N is said about the file's line).
fn csv_to_jsonl(path: &Path) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path)?;
    let headers = rdr.headers()?.clone();
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for record in rdr.records() {
        let record = record?;
        lines.push(record.position().map_or(0, |p| p.line()));
        if record.iter().all(|v| v.trim().is_empty()) {
            out.push(b'\n');
            continue;
        }
        let mut m = Map::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            if !v.is_empty() {
                m.insert(h.to_string(), Value::String(v.to_string()));
            }
        }
        serde_json::to_writer(&mut out, &Value::Object(m))?;
        out.push(b'\n');
    }
    Ok((out, lines))
}

pub fn run(url: &str, token_file: Option<&Path>, cmd: Cmd) -> Result<Exit> {
    let Some(token) = token_from(token_file, "CUSTOS_TOKEN")? else {
        bail!("--server needs a bearer token: --token-file FILE or $CUSTOS_TOKEN");
    };
    let client = Client { base: url.trim_end_matches('/').to_string(), token };
    let fmt = |f: Format| ("format", f.name().to_string());
    match cmd {
        Cmd::Balances { account, accounts_file, asset, moment, all, format } => {
            let mut p = moment_params(&moment);
            let accounts = crate::cli::accounts_named(&account, accounts_file.as_deref())?;
            if !accounts.is_empty() {
                p.push(("accounts", accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")));
            }
            p.extend(asset.map(|a| ("asset", a)));
            if all {
                p.push(("all", "true".into()));
            }
            p.push(fmt(format));
            print_report(client.get("/v1/balances", &p)?)
        }
        Cmd::Losses { moment, detail, format } => {
            let mut p = moment_params(&moment);
            if detail {
                p.push(("detail", "true".into()));
            }
            p.push(fmt(format));
            print_report(client.get("/v1/losses", &p)?)
        }
        Cmd::History { account, asset, from, to, moment, format } => {
            let mut p = moment_params(&moment);
            p.push(("account", account));
            p.extend(asset.map(|a| ("asset", a)));
            p.extend(from.map(|t| ("from", time(t))));
            p.extend(to.map(|t| ("to", time(t))));
            p.push(fmt(format));
            print_report(client.get("/v1/history", &p)?)
        }
        Cmd::Assets { known_at, at_seq, format } => {
            let mut p = moment_params(&Moment { as_of: None, known_at, at_seq });
            p.push(fmt(format));
            print_report(client.get("/v1/assets", &p)?)
        }
        Cmd::Withdrawals { unauthorized, account, moment, format } => {
            let mut p = moment_params(&moment);
            p.extend(account.map(|a| ("account", a)));
            if unauthorized {
                p.push(("unauthorized", "true".to_string()));
            }
            p.push(fmt(format));
            print_report(client.get("/v1/withdrawals", &p)?)
        }
        Cmd::Replay { from, to, known_at, at_seq, order, format } => {
            let mut p = vec![("from", time(from)), ("to", time(to))];
            if order == ReplayOrder::Recorded {
                p.push(("order", "recorded".to_string()));
            }
            p.extend(known_at.map(|t| ("known_at", time(t))));
            p.extend(at_seq.map(|n| ("at_seq", n.to_string())));
            p.push(fmt(format));
            print_report(client.get("/v1/replay", &p)?)
        }
        Cmd::Log { from_seq, limit, format, kind, account, from, to, recorded_from, recorded_to } => {
            let mut p = vec![("from_seq", from_seq.to_string()), ("limit", limit.to_string()), fmt(format)];
            p.extend(kind.map(|k| ("kind", k.name().to_string())));
            p.extend(account.map(|a| ("account", a)));
            for (name, t) in
                [("from", from), ("to", to), ("recorded_from", recorded_from), ("recorded_to", recorded_to)]
            {
                p.extend(t.map(|t| (name, time(t))));
            }
            print_report(client.get("/v1/log", &p)?)
        }
        Cmd::Digest { at_seq, format, sign, origin } => {
            let p: Vec<(&str, String)> = at_seq.map(|s| ("at_seq", s.to_string())).into_iter().collect();
            let answer = client.get("/v1/digest", &p)?;
            if answer.status != 200 {
                bail!("{}", answer.error_message());
            }
            let v = answer.json()?;
            if let Some(key_file) = sign {
                // The server's tree head, signed here, where the key is.
                let head = crate::proofs::tree_head_of(&v)?;
                crate::say!("{}", crate::proofs::signed_checkpoint(&head, &key_file, origin.as_deref())?.trim_end());
                return Ok(Exit::Ok);
            }
            match format {
                Format::Json => crate::say!("{v}"),
                _ => crate::say!("{}", v["digest"].as_str().unwrap_or_default()),
            }
            Ok(Exit::Ok)
        }
        Cmd::Prove { seq, size, from, to, output } => {
            let answer = match (seq, from, to) {
                (Some(seq), _, _) => {
                    let mut p = vec![("seq", seq.to_string())];
                    p.extend(size.map(|n| ("size", n.to_string())));
                    client.get("/v1/proof/inclusion", &p)?
                }
                (None, Some(m), Some(n)) => {
                    client.get("/v1/proof/consistency", &[("from", m.to_string()), ("to", n.to_string())])?
                }
                _ => bail!("give --seq K (inclusion) or --from M --to N (consistency)"),
            };
            if answer.status != 200 {
                bail!("{}", answer.error_message());
            }
            let text = format!("{}\n", serde_json::to_string_pretty(&answer.json()?)?);
            match output {
                Some(file) => {
                    std::fs::write(&file, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
                    crate::say!("wrote the proof to {}", file.display());
                }
                None => crate::say!("{}", text.trim_end()),
            }
            Ok(Exit::Ok)
        }
        Cmd::Verify { digest, format } => {
            let body = json!({"digest": digest}).to_string();
            let started = client.post("/v1/verify", "application/json", body.as_bytes())?;
            if started.status != 202 {
                bail!("{}", started.error_message());
            }
            let poll = started.json()?["poll"].as_str().unwrap_or_default().to_string();
            loop {
                let v = client.get(&poll, &[])?.json()?;
                match v["state"].as_str() {
                    Some("running") => std::thread::sleep(Duration::from_millis(200)),
                    Some("done") => {
                        let clean = v["clean"].as_bool().unwrap_or(false);
                        // The job's own fields aside, the answer is the local one.
                        let mut v = v;
                        if let Some(m) = v.as_object_mut() {
                            m.remove("job");
                            m.remove("state");
                        }
                        if format == Format::Json {
                            crate::say!("{}", serde_json::to_string_pretty(&v)?);
                        } else {
                            crate::say!("{}", custos_report::verify_text(&v).trim_end_matches('\n'));
                        }
                        return Ok(if clean { Exit::Ok } else { Exit::Refused });
                    }
                    _ => bail!("verify failed on the server: {v}"),
                }
            }
        }
        Cmd::Import { file, strict, .. } => {
            if strict {
                bail!("import --strict checks the whole file against the ledger first; run it on the ledger's machine");
            }
            let (body, csv_lines) = match custos_ledger::ImportFormat::from_path(&file) {
                Some(custos_ledger::ImportFormat::Jsonl) => (std::fs::read(&file)?, Vec::new()),
                Some(custos_ledger::ImportFormat::Csv) => csv_to_jsonl(&file)?,
                None => bail!("{}: the file name must end in .csv or .jsonl", file.display()),
            };
            let answer = client.post("/v1/import", "application/x-ndjson", &body)?;
            if answer.status != 200 && answer.status != 409 {
                bail!("{}", answer.error_message());
            }
            let v = answer.json()?;
            // The server numbers the lines it was sent; a CSV file's are its own.
            let file_line = |n: u64| match n.checked_sub(1).and_then(|i| csv_lines.get(i as usize)) {
                Some(l) => *l,
                None => n,
            };
            for r in v["rejections"].as_array().cloned().unwrap_or_default() {
                let message = r["message"].as_str().unwrap_or_default();
                match r["line"].as_u64() {
                    Some(n) => {
                        let rest = message
                            .strip_prefix(&format!("line {n}: "))
                            .or_else(|| message.strip_prefix(&format!("line {n}, ")))
                            .unwrap_or(message);
                        eprintln!("line {}: {rest}", file_line(n));
                    }
                    None => eprintln!("{message}"),
                }
            }
            let new: Vec<String> = v["new_assets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let line = file_line(a["line"].as_u64().unwrap_or(0));
                    format!(
                        "{} ({} decimal places, line {line})",
                        a["asset"].as_str().unwrap_or(""),
                        a["decimal_places"]
                    )
                })
                .collect();
            let new = if new.is_empty() { String::new() } else { format!("; new assets: {}", new.join(", ")) };
            crate::say!(
                "import {} via {}: {} appended, {} duplicates, {} rejected{new}",
                file.display(),
                client.base,
                v["appended"],
                v["duplicates"],
                v["rejected"]
            );
            Ok(if v["rejected"] == 0 { Exit::Ok } else { Exit::Refused })
        }
        Cmd::Rebuild { .. }
        | Cmd::Export { .. }
        | Cmd::Report { .. }
        | Cmd::Demo { .. }
        | Cmd::Serve { .. }
        | Cmd::VerifyProof { .. }
        | Cmd::Keygen { .. }
        | Cmd::Liabilities { .. }
        | Cmd::Migrate { .. } => {
            bail!("this command works on the ledger's folder, not through --server")
        }
        write => {
            let (command, format) = command_of(write)?;
            let answer =
                client.post("/v1/commands", "application/json", command_json(&command).to_string().as_bytes())?;
            let v = answer.json()?;
            match (answer.status, format) {
                (200 | 409, Format::Json) => crate::say!("{v}"),
                (200, _) if v["duplicate"] == true => crate::say!(
                    "{} was already recorded at seq {} (idempotent replay, nothing appended)",
                    v["id"].as_str().unwrap_or_default(),
                    v["seq"]
                ),
                (200, _) => {
                    crate::say!("appended {} at seq {}", v["id"].as_str().unwrap_or_default(), v["seq"]);
                    if let Some(asset) = v["new_asset"].as_str().and_then(|a| custos_domain::Asset::new(a).ok()) {
                        eprintln!("note: {asset} is a new asset in this ledger ({} decimal places)", asset.scale());
                    }
                }
                (409, _) => eprintln!("rejected: {}", answer.error_message()),
                _ => bail!("{}", answer.error_message()),
            }
            Ok(if answer.status == 200 { Exit::Ok } else { Exit::Refused })
        }
    }
}
