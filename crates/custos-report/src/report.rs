//! Reports in three formats from one description: an aligned text table for people, CSV for
//! spreadsheets, JSON for machines. Decimals are printed exactly, and as strings in JSON.

use std::io::Write;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "table" => Some(Format::Table),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
    /// The HTTP content type of a report in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Cell {
    Text(String),
    /// A quantity, printed normalized (no trailing zeros).
    Dec(Decimal),
    /// A US dollar value, printed with exactly two decimals (cents are exact).
    Usd(Decimal),
    Int(u64),
    Bool(bool),
    Null,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Dec(d) => d.normalize().to_string(),
            Cell::Usd(d) => usd_text(*d),
            Cell::Int(i) => i.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Null => String::new(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Dec(d) => Value::String(d.normalize().to_string()),
            Cell::Usd(d) => Value::String(usd_text(*d)),
            Cell::Int(i) => Value::from(*i),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Null => Value::Null,
        }
    }
    fn numeric(&self) -> bool {
        matches!(self, Cell::Dec(_) | Cell::Usd(_) | Cell::Int(_))
    }
}

fn usd_text(d: Decimal) -> String {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d.to_string()
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}
impl From<Decimal> for Cell {
    fn from(d: Decimal) -> Self {
        Cell::Dec(d)
    }
}
impl From<u64> for Cell {
    fn from(i: u64) -> Self {
        Cell::Int(i)
    }
}
impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Bool(b)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(o: Option<T>) -> Self {
        o.map_or(Cell::Null, Into::into)
    }
}

/// A table with a title and the facts it answered for (printed above the table, as header
/// comments in CSV, and as top-level fields in JSON).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    pub meta: Vec<(&'static str, Value)>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Report {
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Report {
        Report { title: title.into(), columns: columns.iter().map(|c| c.to_string()).collect(), ..Default::default() }
    }
    pub fn meta(mut self, key: &'static str, value: impl Into<Value>) -> Report {
        self.meta.push((key, value.into()));
        self
    }
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for (k, v) in &self.meta {
            obj.insert((*k).to_string(), v.clone());
        }
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, cell) in self.columns.iter().zip(r) {
                    m.insert(c.clone(), cell.json());
                }
                Value::Object(m)
            })
            .collect();
        obj.insert("rows".into(), Value::Array(rows));
        Value::Object(obj)
    }

    pub fn render_table(&self) -> String {
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&self.title);
            out.push('\n');
        }
        for (k, v) in &self.meta {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            out.push_str(&format!("  {k}: {v}\n"));
        }
        let texts: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(Cell::text).collect()).collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for r in &texts {
            for (i, t) in r.iter().enumerate() {
                widths[i] = widths[i].max(t.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows.iter().any(|r| r[i].numeric())
                    && self.rows.iter().all(|r| r[i].numeric() || matches!(r[i], Cell::Null))
            })
            .collect();
        let line = |cells: Vec<String>| -> String {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(
                    |(i, t)| {
                        if numeric[i] {
                            format!("{t:>w$}", w = widths[i])
                        } else {
                            format!("{t:<w$}", w = widths[i])
                        }
                    },
                )
                .collect();
            parts.join("  ").trim_end().to_string() + "\n"
        };
        out.push_str(&line(self.columns.clone()));
        out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        for r in texts {
            out.push_str(&line(r));
        }
        if self.rows.is_empty() {
            out.push_str("(no rows)\n");
        }
        out
    }

    /// The report rendered in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut buf = Vec::new();
        self.write(format, &mut buf).expect("writing to memory");
        String::from_utf8(buf).expect("reports are UTF-8")
    }

    /// The bytes `serde_json::to_writer_pretty(&self.to_json())` writes (keys sorted, as its
    /// map sorts them; two-space indents), row by row, without building the value tree: a
    /// large answer costs its rows, not their JSON values too.
    fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        // As `to_json` builds its map: a later key replaces an earlier one; sorted.
        let mut map: std::collections::BTreeMap<&str, Option<&Value>> = std::collections::BTreeMap::new();
        for (k, v) in &self.meta {
            map.insert(k, Some(v));
        }
        map.insert("rows", None);
        let keys: Vec<(&str, Option<&Value>)> = map.into_iter().collect();
        let mut columns: Vec<(usize, &String)> = self.columns.iter().enumerate().collect();
        columns.sort_by(|a, b| a.1.cmp(b.1));
        out.write_all(b"{\n")?;
        for (i, (key, value)) in keys.iter().enumerate() {
            write!(out, "  {}: ", serde_json::to_string(key)?)?;
            match value {
                Some(v) => {
                    let text = serde_json::to_string_pretty(v)?;
                    out.write_all(text.replace('\n', "\n  ").as_bytes())?;
                }
                None if self.rows.is_empty() => out.write_all(b"[]")?,
                None => {
                    out.write_all(b"[\n")?;
                    for (r, row) in self.rows.iter().enumerate() {
                        out.write_all(b"    {\n")?;
                        for (c, (at, name)) in columns.iter().enumerate() {
                            let comma = if c + 1 < columns.len() { "," } else { "" };
                            let cell = serde_json::to_string(&row[*at].json())?;
                            writeln!(out, "      {}: {cell}{comma}", serde_json::to_string(name)?)?;
                        }
                        out.write_all(if r + 1 < self.rows.len() { b"    },\n" } else { b"    }\n" })?;
                    }
                    out.write_all(b"  ]")?;
                }
            }
            out.write_all(if i + 1 < keys.len() { b",\n" } else { b"\n" })?;
        }
        out.write_all(b"}\n")
    }

    /// The table as HTML (escaped): a caption, then one row per row; each cell names its
    /// column (`data-col`), so a reader (or a test) can find a figure without counting.
    pub fn html_table(&self, id: &str) -> String {
        let mut out =
            format!("<table id=\"{}\">\n<caption>{}</caption>\n<thead><tr>", html_escape(id), html_escape(&self.title));
        for c in &self.columns {
            out.push_str(&format!("<th>{}</th>", html_escape(c)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for r in &self.rows {
            out.push_str("<tr>");
            for (c, cell) in self.columns.iter().zip(r) {
                let class = match cell {
                    Cell::Dec(_) | Cell::Usd(_) | Cell::Int(_) => " class=\"num\"",
                    _ => "",
                };
                out.push_str(&format!("<td data-col=\"{}\"{class}>{}</td>", html_escape(c), html_escape(&cell.text())));
            }
            out.push_str("</tr>\n");
        }
        if self.rows.is_empty() {
            out.push_str(&format!("<tr><td colspan=\"{}\">(no rows)</td></tr>\n", self.columns.len().max(1)));
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    pub fn write(&self, format: Format, out: &mut impl Write) -> std::io::Result<()> {
        match format {
            Format::Table => out.write_all(self.render_table().as_bytes()),
            Format::Json => self.write_json(out),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(&self.columns).map_err(csv_io)?;
                for r in &self.rows {
                    w.write_record(r.iter().map(Cell::text)).map_err(csv_io)?;
                }
                w.flush()
            }
        }
    }
}

/// Text made safe inside HTML elements and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The writer's own IO error, unwrapped (so that a closed pipe is seen as one), else the
/// CSV error.
pub fn csv_io(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed JSON is byte for byte what serde_json's pretty printer makes of `to_json`.
    #[test]
    fn json_is_written_as_serde_would_pretty_print_it() {
        let mut r = Report::new("t", &["zeta", "alpha", "m\"id"])
            .meta("known_seq", 7u64)
            .meta("as_of", "2022-01-18T00:00:00Z")
            .meta("nested", serde_json::json!({"b": [1, {"c": null}], "a": "x"}))
            .meta("empty", serde_json::json!([]));
        let empty = r.clone();
        r.push(vec![Cell::Dec("1.50".parse().unwrap()), Cell::Usd("3".parse().unwrap()), Cell::Null]);
        r.push(vec![Cell::Text("é \\ \n".into()), Cell::Bool(true), Cell::Int(42)]);
        for report in [r, empty, Report::new("", &["a"])] {
            let mut want = serde_json::to_string_pretty(&report.to_json()).unwrap();
            want.push('\n');
            assert_eq!(report.render(Format::Json), want);
        }
    }
}
