//! Import files: CSV and JSON Lines command files, parsed line by line (streaming) into commands.
//!
//! Fields (header names exactly): `id,occurred_at,account,kind,asset,amount,usd_value,ref,
//! unauthorized` and optionally `recorded_at`. Every field is text: amounts and USD values are
//! exact decimals (a JSON number is refused, because it may already have been through a float).
//! Unknown fields and kinds are errors, never defaults; each error names the line and field.

use std::io::Read;

use custos_domain::{
    shown, AccountId, Amount, Asset, AuthFactor, Command, CommandBody, DomainError, EventId, EventKind, Timestamp, Usd,
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
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
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
        Some(v) => Err(err(field, format!("must be empty for a {} (got {:?})", kind.name(), shown(v)))),
        None => Ok(()),
    };
    let id = EventId::new(required("id")?).map_err(dom("id"))?;
    let kind_text = required("kind")?;
    let kind = EventKind::parse(kind_text).ok_or_else(|| {
        err(
            "kind",
            format!(
                "unknown kind {:?} (expected one of {})",
                shown(kind_text),
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
        Some(other) => return Err(err("unauthorized", format!("must be true or false (got {:?})", shown(other)))),
    };
    let auth_factor = match f.get("auth_factor") {
        None => None,
        Some(name) => Some(AuthFactor::parse(name).ok_or_else(|| {
            err(
                "auth_factor",
                format!(
                    "unknown authorization factor {:?} (expected one of {})",
                    shown(name),
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
        .map(|v| {
            v.parse::<u64>().map_err(|_| err("expected_version", format!("{:?} is not a stream version", shown(v))))
        })
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
fn too_long_line(line: u64) -> ImportLine {
    let message = format!("line is longer than {LINE_BYTES_MAX} bytes");
    ImportLine { line, command: Err(LineError { line, field: None, message }) }
}

/// One physical line of an import: its number (from 1) and its bytes without the line break,
/// or `None` when it was longer than `LINE_BYTES_MAX` (its bytes were dropped as they came).
/// Borrowed from the bytes pushed, or from the splitter's carry for a line split across two
/// pushes: the common line costs no allocation and no copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLine<'a> {
    pub number: u64,
    pub bytes: Option<&'a [u8]>,
}

/// Splits a byte stream into lines, sans IO: the caller pushes the bytes it read (from a file
/// or a request body) and is handed each complete line. The line limit is enforced as bytes
/// arrive: an over-long line never holds more than `LINE_BYTES_MAX + 1` bytes of memory (the
/// one more is a CR). A UTF-8 byte order mark at the start of the first line is dropped, and a
/// CR before a line break. The CLI and the server share it, so an import has one set of limits
/// whoever reads it.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of a line the bytes pushed so far have not ended.
    carry: Vec<u8>,
    too_long: bool,
    number: u64,
}

/// The line `bytes` is (number `number`), BOM and CR dropped, or `None` past the limit.
fn line_of(number: u64, too_long: bool, bytes: &[u8]) -> RawLine<'_> {
    let bytes = if number == 1 { bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes) } else { bytes };
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    RawLine { number, bytes: (!too_long && bytes.len() <= LINE_BYTES_MAX).then_some(bytes) }
}

impl LineSplitter {
    /// Feeds `bytes`; calls `f` with each line they complete, in order.
    pub fn push(&mut self, mut bytes: &[u8], f: &mut dyn FnMut(RawLine<'_>)) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            let segment = &bytes[..end];
            self.number += 1;
            if self.carry.is_empty() && !self.too_long {
                f(line_of(self.number, false, segment));
            } else {
                self.take(segment);
                f(line_of(self.number, self.too_long, &self.carry));
                self.carry.clear();
                self.too_long = false;
            }
            bytes = &bytes[end + 1..];
        }
        self.take(bytes);
    }

    fn take(&mut self, part: &[u8]) {
        if self.too_long {
            return;
        }
        // One byte more than the limit: the CR of a CRLF line break, dropped in `line_of`.
        if self.carry.len() + part.len() > LINE_BYTES_MAX + 1 {
            self.too_long = true;
            self.carry = Vec::new();
        } else {
            self.carry.extend_from_slice(part);
        }
    }

    /// Call at the end of the input: hands `f` the last line, when it had no line break.
    pub fn finish(&mut self, f: &mut dyn FnMut(RawLine<'_>)) {
        if !self.carry.is_empty() || self.too_long {
            self.number += 1;
            f(line_of(self.number, self.too_long, &self.carry));
            self.carry.clear();
            self.too_long = false;
        }
    }

    /// The number of the last line handed out.
    pub fn lines(&self) -> u64 {
        self.number
    }
}

/// Bytes for the csv crate through a [`LineSplitter`]: the same lines, except that a line over
/// the limit is replaced by one the CSV reader cannot take (more fields than any header), and
/// its number is kept so that its refusal says why. A whole chunk of input is passed on at a
/// time.
struct LimitedLines<R> {
    inner: R,
    splitter: LineSplitter,
    out: Vec<u8>,
    at: usize,
    eof: bool,
    too_long: std::rc::Rc<std::cell::RefCell<std::collections::BTreeSet<u64>>>,
}

impl<R: Read> Read for LimitedLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.out.clear();
            self.at = 0;
            let mut chunk = [0u8; 64 * 1024];
            let n = loop {
                match self.inner.read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            let LimitedLines { splitter, out, too_long, .. } = self;
            let mut emit = |line: RawLine<'_>| {
                match line.bytes {
                    // A line of spaces and tabs only is a blank line (csv would read it as a
                    // record of one field); the line break stays, so line numbers do not move.
                    Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {}
                    Some(bytes) => out.extend_from_slice(bytes),
                    None => {
                        too_long.borrow_mut().insert(line.number);
                        out.extend_from_slice(&[b','; IMPORT_FIELDS.len() + 1]);
                    }
                }
                out.push(b'\n');
            };
            if n == 0 {
                self.eof = true;
                splitter.finish(&mut emit);
            } else {
                splitter.push(&chunk[..n], &mut emit);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The command of one CSV record: each field must be UTF-8 (a bad byte refuses this line only).
fn csv_command(line: u64, slots: &[usize], record: &csv::ByteRecord) -> Result<Command, LineError> {
    let mut fields = Fields::default();
    for (slot, value) in slots.iter().zip(record.iter()) {
        let text = std::str::from_utf8(value).map_err(|e| LineError {
            line,
            field: Some(IMPORT_FIELDS[*slot]),
            message: format!("is not UTF-8 text (a bad byte at offset {})", e.valid_up_to()),
        })?;
        fields.set(*slot, text);
    }
    to_command(line, &fields, true)
}

/// Parses a CSV command file lazily. A bad header is one error for line 1 and nothing else.
pub fn parse_csv<R: Read>(reader: R) -> impl Iterator<Item = ImportLine> {
    let too_long = std::rc::Rc::new(std::cell::RefCell::new(std::collections::BTreeSet::new()));
    let limited = LimitedLines {
        inner: reader,
        splitter: LineSplitter::default(),
        out: Vec::new(),
        at: 0,
        eof: false,
        too_long: std::rc::Rc::clone(&too_long),
    };
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(limited);
    let header: Result<Vec<&'static str>, LineError> = match rdr.headers() {
        Err(e) => Err(LineError { line: 1, field: None, message: format!("cannot read the header: {e}") }),
        Ok(h) => {
            let mut names = Vec::new();
            let mut problem = None;
            for name in h.iter() {
                match field_name(name) {
                    Some(n) if names.contains(&n) => {
                        problem = Some(format!("field {:?} appears twice in the header", shown(name)))
                    }
                    Some(n) => names.push(n),
                    None => {
                        problem = Some(format!(
                            "unknown field {:?} in the header (expected: {})",
                            shown(name),
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
    let mut record = csv::ByteRecord::new();
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
            return match rdr.read_byte_record(&mut record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() == 1 && record.get(0) == Some(b"") {
                        continue; // a blank line
                    }
                    if too_long.borrow_mut().remove(&line) {
                        return Some(too_long_line(line));
                    }
                    Some(ImportLine { line, command: csv_command(line, &slots, &record) })
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if too_long.borrow_mut().remove(&line) {
                        return Some(too_long_line(line));
                    }
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
pub fn parse_jsonl<R: Read>(mut reader: R) -> impl Iterator<Item = ImportLine> {
    let mut splitter = LineSplitter::default();
    let mut ready: std::collections::VecDeque<ImportLine> = std::collections::VecDeque::new();
    let mut eof = false;
    std::iter::from_fn(move || loop {
        if let Some(line) = ready.pop_front() {
            return Some(line);
        }
        if eof {
            return None;
        }
        let mut chunk = [0u8; 64 * 1024];
        let mut emit = |raw: RawLine<'_>| ready.extend(json_line(raw));
        match reader.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                splitter.finish(&mut emit);
            }
            Ok(n) => splitter.push(&chunk[..n], &mut emit),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eof = true;
                let line = splitter.lines() + 1;
                let message = format!("cannot read: {e}");
                ready.push_back(ImportLine { line, command: Err(LineError { line, field: None, message }) });
            }
        }
    })
}

/// The command of one JSON Lines line (`None` for a blank line).
pub fn json_line(raw: RawLine<'_>) -> Option<ImportLine> {
    let line = raw.number;
    match raw.bytes {
        None => Some(too_long_line(line)),
        Some(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => None,
        Some(bytes) => Some(ImportLine { line, command: parse_json_command(line, bytes, true) }),
    }
}

/// A JSON object whose keys are all different: `serde_json::Value` keeps the last of two equal
/// keys silently (`"amount":"1","amount":"1000"` booked 1000); a duplicate key is refused, as a
/// duplicate CSV column is.
struct UniqueObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
                let mut out: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("field {:?} appears twice", shown(&key))));
                    }
                    out.push((key, value));
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Parses one JSON object of the import format into a command. Without `occurred_at_required`,
/// a missing `occurred_at` means "when the ledger records it" (the HTTP API's single commands).
pub fn parse_json_command(line: u64, bytes: &[u8], occurred_at_required: bool) -> Result<Command, LineError> {
    let err = |field: Option<&'static str>, message: String| LineError { line, field, message };
    let object: UniqueObject = serde_json::from_slice(bytes).map_err(|e| err(None, format!("malformed JSON: {e}")))?;
    let mut texts: Vec<(&'static str, String)> = Vec::new();
    for (key, v) in &object.0 {
        let name = field_name(key).ok_or_else(|| {
            err(None, format!("unknown field {:?} (expected: {})", shown(key), IMPORT_FIELDS.join(",")))
        })?;
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

    /// However the bytes arrive, the splitter yields the lines of the text, an over-long one as
    /// `None`, a leading byte order mark and CRs before line breaks dropped.
    #[test]
    fn lines_split_the_same_whatever_the_chunks() {
        use proptest::prelude::*;
        let long = "y".repeat(LINE_BYTES_MAX + 1);
        let max = "z".repeat(LINE_BYTES_MAX);
        // A line of exactly the limit counts the same with LF or CRLF (a helper found CRLF lines
        // getting one byte less).
        let text = format!("\u{feff}a,b\r\n\n{long}\nccc\n{max}\n{long}{long}\n{max}\r\n{long}\r\nlast");
        let want: Vec<Option<String>> =
            ["a,b", "", "TOO LONG", "ccc", max.as_str(), "TOO LONG", max.as_str(), "TOO LONG", "last"]
                .iter()
                .map(|l| (*l != "TOO LONG").then(|| l.to_string()))
                .collect();
        proptest!(|(cuts in proptest::collection::vec(0usize..text.len(), 0..12))| {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut splitter = LineSplitter::default();
            let mut got: Vec<(u64, Option<String>)> = Vec::new();
            let mut at = 0;
            let mut collect = |l: RawLine<'_>| got.push((l.number, l.bytes.map(|b| String::from_utf8(b.to_vec()).unwrap())));
            for cut in cuts.into_iter().chain([text.len()]) {
                splitter.push(&text.as_bytes()[at..cut], &mut collect);
                at = cut;
            }
            splitter.finish(&mut collect);
            let numbers: Vec<u64> = got.iter().map(|l| l.0).collect();
            prop_assert_eq!(numbers, (1..=want.len() as u64).collect::<Vec<_>>());
            let lines: Vec<Option<String>> = got.into_iter().map(|l| l.1).collect();
            prop_assert_eq!(&lines, &want);
        });
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
