//! Import files: CSV and JSON Lines command files, parsed line by line (streaming) into commands.
//!
//! Fields (header names exactly): `id,occurred_at,account,kind,asset,amount,usd_value,ref,
//! unauthorized` and optionally `recorded_at`. Every field is text: amounts and USD values are
//! exact decimals (a JSON number is refused, because it may already have been through a float).
//! Unknown fields and kinds are errors, never defaults; each error names the line and field.

use std::io::{BufRead, Read};

use custos_domain::{
    AccountId, Amount, Asset, AuthFactor, Command, CommandBody, DomainError, EventId, EventKind, Timestamp, Usd,
};
use rust_decimal::Decimal;

/// The fields of the import format, in the order export writes them.
/// The first nine are the format's core; `recorded_at` backfills history; `auth_factor`,
/// `destination` (withdrawals), `reason` (suspensions) and `expected_version` (optimistic
/// concurrency) are optional, so that every command the CLI can give survives export, import
/// and the HTTP API.
pub const IMPORT_FIELDS: [&str; 14] = [
    "id",
    "occurred_at",
    "recorded_at",
    "account",
    "kind",
    "asset",
    "amount",
    "usd_value",
    "ref",
    "unauthorized",
    "auth_factor",
    "destination",
    "reason",
    "expected_version",
];
const REQUIRED_FIELDS: [&str; 3] = ["id", "occurred_at", "kind"];
/// The longest line the importer reads (a limit on memory, and on garbage).
pub const LINE_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    Jsonl,
}

impl ImportFormat {
    pub fn from_path(path: &std::path::Path) -> Option<ImportFormat> {
        match path.extension()?.to_str()? {
            "csv" => Some(ImportFormat::Csv),
            "jsonl" | "ndjson" => Some(ImportFormat::Jsonl),
            _ => None,
        }
    }
}

/// Why a line could not become a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {message}", field.map(|f| format!(", field {f}")).unwrap_or_default())]
pub struct LineError {
    pub line: u64,
    pub field: Option<&'static str>,
    pub message: String,
}

/// One parsed line: its number in the file (1 = the first line, the CSV header included) and
/// its command, or why it is not one.
#[derive(Debug, Clone)]
pub struct ImportLine {
    pub line: u64,
    pub command: Result<Command, LineError>,
}

/// A record of the import format, as text: one slot per field of `IMPORT_FIELDS`.
#[derive(Default)]
struct Fields<'a> {
    values: [&'a str; IMPORT_FIELDS.len()],
}

impl<'a> Fields<'a> {
    /// The field's text, `None` when absent or empty.
    fn get(&self, name: &'static str) -> Option<&'a str> {
        let slot = field_slot(name).expect("a field of the import format");
        Some(self.values[slot]).filter(|v| !v.is_empty())
    }

    fn set(&mut self, slot: usize, value: &'a str) {
        self.values[slot] = value;
    }
}

/// The position of `name` in `IMPORT_FIELDS`.
fn field_slot(name: &str) -> Option<usize> {
    IMPORT_FIELDS.iter().position(|f| *f == name)
}

fn field_name(name: &str) -> Option<&'static str> {
    field_slot(name).map(|i| IMPORT_FIELDS[i])
}

fn to_command(line: u64, f: &Fields<'_>, occurred_at_required: bool) -> Result<Command, LineError> {
    let err = |field: &'static str, message: String| LineError { line, field: Some(field), message };
    let dom = |field: &'static str| move |e: DomainError| err(field, e.to_string());
    let required = |field: &'static str| f.get(field).ok_or_else(|| err(field, "is required".into()));
    let absent = |field: &'static str, kind: EventKind| match f.get(field) {
        Some(v) => Err(err(field, format!("must be empty for a {} (got {v:?})", kind.name()))),
        None => Ok(()),
    };
    let id = EventId::new(required("id")?).map_err(dom("id"))?;
    let kind_text = required("kind")?;
    let kind = EventKind::parse(kind_text).ok_or_else(|| {
        err(
            "kind",
            format!(
                "unknown kind {kind_text:?} (expected one of {})",
                EventKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let occurred_at = match f.get("occurred_at") {
        Some(t) => Some(Timestamp::parse_rfc3339(t).map_err(dom("occurred_at"))?),
        None if occurred_at_required => return Err(err("occurred_at", "is required".into())),
        None => None,
    };
    let recorded_at = f.get("recorded_at").map(Timestamp::parse_rfc3339).transpose().map_err(dom("recorded_at"))?;
    let account = || AccountId::new(required("account")?).map_err(dom("account"));
    let account_opt = || f.get("account").map(AccountId::new).transpose().map_err(dom("account"));
    let asset = || Asset::new(required("asset")?).map_err(dom("asset"));
    let asset_opt = || f.get("asset").map(Asset::new).transpose().map_err(dom("asset"));
    let usd = || f.get("usd_value").map(Usd::parse).transpose().map_err(dom("usd_value"));
    let reference = || EventId::new(required("ref")?).map_err(dom("ref"));
    let amount_opt = || f.get("amount").map(custos_domain_parse_decimal).transpose().map_err(dom("amount"));
    let unauthorized = match f.get("unauthorized") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(err("unauthorized", format!("must be true or false (got {other:?})"))),
    };
    let auth_factor = match f.get("auth_factor") {
        None => None,
        Some(name) => Some(AuthFactor::parse(name).ok_or_else(|| {
            err(
                "auth_factor",
                format!(
                    "unknown authorization factor {name:?} (expected one of {})",
                    AuthFactor::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        })?),
    };
    if auth_factor.is_some() && kind != EventKind::Withdrawal {
        return Err(err(
            "auth_factor",
            format!("only a withdrawal has an authorization factor, not a {}", kind.name()),
        ));
    }
    if unauthorized && kind != EventKind::Withdrawal {
        return Err(err(
            "unauthorized",
            format!("only a withdrawal can be marked unauthorized, not a {}", kind.name()),
        ));
    }
    let body = match kind {
        EventKind::Deposit | EventKind::Withdrawal => {
            absent("ref", kind)?;
            let asset = asset()?;
            let amount = Amount::parse(required("amount")?, &asset).map_err(dom("amount"))?;
            let (account, usd_value) = (account()?, usd()?);
            if kind == EventKind::Deposit {
                CommandBody::Deposit { account, asset, amount, usd_value }
            } else {
                CommandBody::Withdraw {
                    account,
                    asset,
                    amount,
                    usd_value,
                    unauthorized,
                    destination: f.get("destination").map(str::to_string),
                    auth_factor,
                }
            }
        }
        EventKind::Reversal | EventKind::Reimbursement | EventKind::Flag => {
            absent("usd_value", kind)?;
            let (withdrawal, account, asset) = (reference()?, account_opt()?, asset_opt()?);
            match kind {
                EventKind::Reversal => CommandBody::Reverse { withdrawal, account, asset, amount: amount_opt()? },
                EventKind::Reimbursement => {
                    CommandBody::Reimburse { withdrawal, account, asset, amount: amount_opt()? }
                }
                _ => {
                    absent("amount", kind)?;
                    CommandBody::Flag { withdrawal, account, asset }
                }
            }
        }
        EventKind::Suspend | EventKind::Resume => {
            for field in ["account", "asset", "amount", "usd_value", "ref"] {
                absent(field, kind)?;
            }
            if kind == EventKind::Suspend {
                CommandBody::SuspendWithdrawals { reason: f.get("reason").map(str::to_string) }
            } else {
                CommandBody::ResumeWithdrawals
            }
        }
    };
    if f.get("destination").is_some() && kind != EventKind::Withdrawal {
        return Err(err("destination", format!("only a withdrawal has a destination, not a {}", kind.name())));
    }
    if f.get("reason").is_some() && kind != EventKind::Suspend {
        return Err(err("reason", format!("only a suspension has a reason, not a {}", kind.name())));
    }
    let expected_version = f
        .get("expected_version")
        .map(|v| v.parse::<u64>().map_err(|_| err("expected_version", format!("{v:?} is not a stream version"))))
        .transpose()?;
    Ok(Command { id, occurred_at, recorded_at, expected_version, body })
}

fn custos_domain_parse_decimal(s: &str) -> Result<Decimal, DomainError> {
    let d = custos_domain::parse_decimal(s)?;
    if d <= Decimal::ZERO {
        return Err(DomainError::AmountNotPositive { amount: s.to_string(), asset: "the withdrawal's asset".into() });
    }
    Ok(d)
}

/// The refusal of a line over `LINE_BYTES_MAX`.
fn too_long(line: u64) -> ImportLine {
    let message = format!("line is longer than {LINE_BYTES_MAX} bytes");
    ImportLine { line, command: Err(LineError { line, field: None, message }) }
}

/// Parses a CSV command file lazily. A bad header is one error for line 1 and nothing else.
pub fn parse_csv<R: Read>(reader: R) -> impl Iterator<Item = ImportLine> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
    let header: Result<Vec<&'static str>, LineError> = match rdr.headers() {
        Err(e) => Err(LineError { line: 1, field: None, message: format!("cannot read the header: {e}") }),
        Ok(h) => {
            let mut names = Vec::new();
            let mut problem = None;
            for name in h.iter() {
                match field_name(name) {
                    Some(n) if names.contains(&n) => {
                        problem = Some(format!("field {name:?} appears twice in the header"))
                    }
                    Some(n) => names.push(n),
                    None => {
                        problem = Some(format!(
                            "unknown field {name:?} in the header (expected: {})",
                            IMPORT_FIELDS.join(",")
                        ))
                    }
                }
            }
            for req in REQUIRED_FIELDS {
                if !names.contains(&req) && problem.is_none() {
                    problem = Some(format!("the header has no {req:?} column"));
                }
            }
            match problem {
                Some(message) => Err(LineError { line: 1, field: None, message }),
                None => Ok(names),
            }
        }
    };
    let mut header_error = None;
    let names = match header {
        Ok(n) => n,
        Err(e) => {
            header_error = Some(e);
            Vec::new()
        }
    };
    let slots: Vec<usize> = names.iter().map(|n| field_slot(n).expect("checked above")).collect();
    let mut record = csv::StringRecord::new();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if let Some(e) = header_error.take() {
            done = true;
            return Some(ImportLine { line: 1, command: Err(e) });
        }
        loop {
            return match rdr.read_record(&mut record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() == 1 && record.get(0) == Some("") {
                        continue; // a blank line
                    }
                    let bytes: usize = record.iter().map(str::len).sum();
                    if bytes > LINE_BYTES_MAX {
                        return Some(too_long(line));
                    }
                    let mut fields = Fields::default();
                    for (slot, value) in slots.iter().zip(record.iter()) {
                        fields.set(*slot, value);
                    }
                    Some(ImportLine { line, command: to_command(line, &fields, true) })
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                        done = true;
                    }
                    Some(ImportLine {
                        line,
                        command: Err(LineError { line, field: None, message: format!("malformed CSV: {e}") }),
                    })
                }
            };
        }
    })
}

/// Parses a JSON Lines command file lazily: one object per line, every value a string (or a
/// boolean for `unauthorized`).
pub fn parse_jsonl<R: BufRead>(reader: R) -> impl Iterator<Item = ImportLine> {
    let mut lines = reader.split(b'\n');
    let mut number = 0u64;
    std::iter::from_fn(move || loop {
        number += 1;
        let line = number;
        let bytes = match lines.next()? {
            Ok(b) => b,
            Err(e) => {
                return Some(ImportLine {
                    line,
                    command: Err(LineError { line, field: None, message: format!("cannot read: {e}") }),
                })
            }
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if bytes.len() > LINE_BYTES_MAX {
            return Some(too_long(line));
        }
        return Some(ImportLine { line, command: parse_json_command(line, &bytes, true) });
    })
}

/// Parses one JSON object of the import format into a command. Without `occurred_at_required`,
/// a missing `occurred_at` means "when the ledger records it" (the HTTP API's single commands).
pub fn parse_json_command(line: u64, bytes: &[u8], occurred_at_required: bool) -> Result<Command, LineError> {
    let err = |field: Option<&'static str>, message: String| LineError { line, field, message };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| err(None, format!("malformed JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| err(None, "expected a JSON object".into()))?;
    let mut texts: Vec<(&'static str, String)> = Vec::new();
    for (key, v) in object {
        let name = field_name(key)
            .ok_or_else(|| err(None, format!("unknown field {key:?} (expected: {})", IMPORT_FIELDS.join(","))))?;
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Bool(b) if name == "unauthorized" => b.to_string(),
            serde_json::Value::Number(n) if name == "expected_version" => n.to_string(),
            serde_json::Value::Number(_) => {
                return Err(err(Some(name), "must be a string holding an exact decimal, not a JSON number".into()))
            }
            other => return Err(err(Some(name), format!("must be a string, not {other}"))),
        };
        texts.push((name, text));
    }
    let mut fields = Fields::default();
    for (name, text) in &texts {
        fields.set(field_slot(name).expect("checked above"), text.as_str());
    }
    to_command(line, &fields, occurred_at_required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(csv: &str) -> Vec<String> {
        parse_csv(csv.as_bytes()).filter_map(|l| l.command.err()).map(|e| e.to_string()).collect()
    }

    #[test]
    fn csv_lines_become_commands_or_named_errors() {
        let text = "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n\
            d1,2022-01-17T10:00:00Z,acct-1,deposit,ETH,1.5,4693.46,,\n\
            w1,2022-01-17T20:00:00Z,acct-1,withdrawal,ETH,1.5,,,true\n\
            r1,2022-01-18T04:00:00Z,,reversal,,,,w1,\n\
            bad,2022-01-17T10:00:00Z,acct-1,deposit,BTC,0.123456789,,,\n";
        let lines: Vec<ImportLine> = parse_csv(text.as_bytes()).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[..3].iter().all(|l| l.command.is_ok()));
        let e = lines[3].command.clone().unwrap_err();
        assert_eq!((e.line, e.field), (5, Some("amount")));
        assert!(e.to_string().contains("9 decimal places"), "{e}");
    }

    #[test]
    fn malformed_input_is_refused_with_line_and_field() {
        let head = "id,occurred_at,account,kind,asset,amount,usd_value,ref,unauthorized\n";
        let cases = [
            ("x,2022-01-17T10:00:00Z,a,deposit,ETH,abc,,,", "amount"),
            ("x,2022-01-17T10:00:00Z,a,deposit,ETH,-1,,,", "amount"),
            ("x,2022-01-17T10:00:00Z,a,deposit,ETH,0,,,", "amount"),
            ("x,2022-01-17T10:00:00Z,a,teleport,ETH,1,,,", "kind"),
            ("x,2022-01-17T10:00:00Z,a,deposit,eth,1,,,", "asset"),
            ("x,2022-01-17T10:00:00Z,,deposit,ETH,1,,,", "account"),
            ("x,yesterday,a,deposit,ETH,1,,,", "occurred_at"),
            ("x,2022-01-17T10:00:00Z,a,deposit,ETH,1,1.001,,", "usd_value"),
            ("x,2022-01-17T10:00:00Z,a,reversal,,,,,", "ref"),
            ("x,2022-01-17T10:00:00Z,a,deposit,ETH,1,,,maybe", "unauthorized"),
        ];
        for (row, field) in cases {
            let errs: Vec<LineError> =
                parse_csv(format!("{head}{row}\n").as_bytes()).filter_map(|l| l.command.err()).collect();
            assert_eq!(errs.len(), 1, "{row}");
            assert_eq!((errs[0].line, errs[0].field), (2, Some(field)), "{row}: {}", errs[0]);
        }
        assert!(errors_of("id,occurred_at,kind,ref,colour\n")[0].contains("unknown field \"colour\""));
        assert!(errors_of("id,kind,ref\n")[0].contains("no \"occurred_at\" column"));
    }

    #[test]
    fn jsonl_refuses_numbers_and_unknown_fields() {
        let good = r#"{"id":"d1","occurred_at":"2022-01-17T10:00:00Z","account":"a","kind":"deposit","asset":"ETH","amount":"1"}"#;
        let number = r#"{"id":"d1","occurred_at":"2022-01-17T10:00:00Z","account":"a","kind":"deposit","asset":"ETH","amount":1.1}"#;
        let unknown = r#"{"id":"d1","occurred_at":"2022-01-17T10:00:00Z","colour":"red"}"#;
        let text = format!("{good}\n\n{number}\n{unknown}\nnot json\n");
        let lines: Vec<ImportLine> = parse_jsonl(text.as_bytes()).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].command.is_ok());
        let errs: Vec<LineError> = lines[1..].iter().map(|l| l.command.clone().unwrap_err()).collect();
        assert_eq!((errs[0].line, errs[0].field), (3, Some("amount")));
        assert!(errs[1].message.contains("unknown field \"colour\""));
        assert!(errs[2].message.contains("malformed JSON"));
    }
}
