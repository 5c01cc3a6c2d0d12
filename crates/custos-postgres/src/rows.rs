//! The typed columns of `custos_events`: derived from each envelope when it is appended, and
//! checked against it by `verify` (an `UPDATE` of a column is found and named by its seq).

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use custos_domain::{Envelope, Event, Seq};
use custos_log::{AppendBatch, IndexEntry, IndexFinding, IndexKey, LogError, Result};
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Client;

/// Findings listed at most (the first is what matters).
const FINDINGS_MAX: usize = 50;

/// What the typed columns of one event hold, from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Typed {
    hash: Vec<u8>,
    stream: String,
    stream_version: i64,
    event_id: String,
    kind: &'static str,
    account: Option<String>,
    asset: Option<String>,
    amount: Option<Decimal>,
    usd_value: Option<Decimal>,
    occurred_ns: i64,
    recorded_ns: i64,
    reference: Option<String>,
    unauthorized: Option<bool>,
}

impl Typed {
    fn of(env: &Envelope) -> Typed {
        let asset_amount = env.event.asset_amount();
        let reference = match &env.event {
            Event::Reversed { withdrawal, .. } | Event::Reimbursed { withdrawal, .. } => Some(withdrawal),
            Event::WithdrawalFlagged(f) => Some(&f.withdrawal),
            _ => None,
        };
        Typed {
            hash: env.hash.to_vec(),
            stream: env.stream.as_str().to_string(),
            stream_version: env.stream_version as i64,
            event_id: env.event_id.as_str().to_string(),
            kind: env.event.kind().name(),
            account: env.stream.account().map(|a| a.as_str().to_string()),
            asset: asset_amount.map(|(a, _)| a.as_str().to_string()),
            amount: asset_amount.map(|(_, x)| x.value()),
            usd_value: env.event.usd_value().map(|u| u.value()),
            occurred_ns: env.occurred_at.nanos(),
            recorded_ns: env.recorded_at.nanos(),
            reference: reference.map(|r| r.as_str().to_string()),
            unauthorized: match &env.event {
                Event::Withdrawn { unauthorized, .. } => Some(*unauthorized),
                _ => None,
            },
        }
    }
}

/// The columns `custos_events` is loaded with, in order, and their types: one binary `COPY`
/// per batch (the fastest way into PostgreSQL: no SQL parsed or planned per row, values in
/// their binary forms, so amounts and instants arrive exact).
const COPY: &str = "COPY custos_events (seq, envelope, hash, stream, stream_version, event_id, kind, account, \
     asset, amount, usd_value, occurred_at, recorded_at, occurred_ns, recorded_ns, ref, unauthorized, flag_of, \
     loss_ns) FROM STDIN (FORMAT binary)";

const COPY_TYPES: [Type; 19] = [
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
];

/// An instant as PostgreSQL's `timestamptz` holds it: whole microseconds (rounded down, as
/// `verify` expects) since 2000-01-01, sent in the binary form.
#[derive(Debug)]
struct PgInstant(i64);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl PgInstant {
    fn of_nanos(ns: i64) -> PgInstant {
        // i64 nanoseconds span 1677-2262: in microseconds far inside timestamptz's range, and
        // the shift cannot overflow.
        PgInstant(ns.div_euclid(1000) - PG_EPOCH_US)
    }
}

impl ToSql for PgInstant {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

/// Writes the events of `batch` into `custos_events` with one binary `COPY`; returns the rows
/// written.
pub(crate) async fn copy_in(
    client: &Client,
    batch: &AppendBatch,
    failed: impl Fn(tokio_postgres::Error) -> LogError,
) -> Result<u64> {
    let mut flag_of: BTreeMap<Seq, i64> = BTreeMap::new();
    let mut loss: BTreeMap<Seq, i64> = BTreeMap::new();
    for e in &batch.index {
        match e.key {
            IndexKey::FlagOf(w) => {
                flag_of.insert(e.seq, w as i64);
            }
            IndexKey::LossTime(t) => {
                loss.insert(e.seq, t.nanos());
            }
            _ => {}
        }
    }
    let sink = client.copy_in(COPY).await.map_err(&failed)?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    tokio::pin!(writer);
    for (seq, record) in (batch.first_seq..).zip(&batch.records) {
        let env = Envelope::decode(record).map_err(|e| LogError::corrupt_at(seq, e.to_string()))?;
        let t = Typed::of(&env);
        let row: [&(dyn ToSql + Sync); 19] = [
            &(seq as i64),
            record,
            &t.hash,
            &t.stream,
            &t.stream_version,
            &t.event_id,
            &t.kind,
            &t.account,
            &t.asset,
            &t.amount,
            &t.usd_value,
            &PgInstant::of_nanos(t.occurred_ns),
            &PgInstant::of_nanos(t.recorded_ns),
            &t.occurred_ns,
            &t.recorded_ns,
            &t.reference,
            &t.unauthorized,
            &flag_of.get(&seq).copied(),
            &loss.get(&seq).copied(),
        ];
        writer.as_mut().write(&row).await.map_err(&failed)?;
    }
    writer.finish().await.map_err(&failed)
}

pub(crate) const SELECT_CHECKED: &str = "SELECT seq, envelope, hash, stream, stream_version, event_id, kind, \
     account, asset, amount::text, usd_value::text, \
     (extract(epoch FROM occurred_at) * 1000000)::bigint, (extract(epoch FROM recorded_at) * 1000000)::bigint, \
     occurred_ns, recorded_ns, ref, unauthorized, flag_of, loss_ns \
     FROM custos_events WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT 4096";

/// One stored row, as `verify` reads it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: Seq,
    envelope: Vec<u8>,
    typed: Result<Typed, String>,
    occurred_us: i64,
    recorded_us: i64,
    flag_of: Option<i64>,
    loss_ns: Option<i64>,
}

impl EventRow {
    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Result<EventRow> {
        let seq: i64 = r.get(0);
        let decimal = |i: usize| -> Result<Option<Decimal>, String> {
            r.get::<_, Option<String>>(i)
                .map(|s| s.parse::<Decimal>().map_err(|e| format!("column {i} holds {s:?}, not a decimal: {e}")))
                .transpose()
        };
        let typed = (|| -> Result<Typed, String> {
            let kind: String = r.get(6);
            Ok(Typed {
                hash: r.get(2),
                stream: r.get(3),
                stream_version: r.get(4),
                event_id: r.get(5),
                // Compared by name below; the static str is only a placeholder.
                kind: custos_domain::EventKind::parse(&kind).map(|k| k.name()).unwrap_or("(unknown kind)"),
                account: r.get(7),
                asset: r.get(8),
                amount: decimal(9)?,
                usd_value: decimal(10)?,
                occurred_ns: r.get(13),
                recorded_ns: r.get(14),
                reference: r.get(15),
                unauthorized: r.get(16),
            })
        })();
        Ok(EventRow {
            seq: Seq::try_from(seq).map_err(|_| LogError::corrupt(format!("a stored seq is negative ({seq})")))?,
            envelope: r.get(1),
            typed,
            occurred_us: r.get(11),
            recorded_us: r.get(12),
            flag_of: r.get(17),
            loss_ns: r.get(18),
        })
    }
}

/// What the ledger expects of the index columns of one seq.
#[derive(Debug, Default)]
struct ExpectedIndex {
    stream: Option<String>,
    event_id: Option<String>,
    occurred_ns: Option<i64>,
    flag_of: Option<i64>,
    loss_ns: Option<i64>,
}

pub(crate) struct Expected(BTreeMap<Seq, ExpectedIndex>);

impl Expected {
    pub(crate) fn of(entries: Vec<IndexEntry>) -> Expected {
        let mut map: BTreeMap<Seq, ExpectedIndex> = BTreeMap::new();
        for e in entries {
            let x = map.entry(e.seq).or_default();
            match e.key {
                IndexKey::EventId(id) => x.event_id = Some(id.as_str().to_string()),
                IndexKey::Stream(s) => x.stream = Some(s.as_str().to_string()),
                IndexKey::OccurredAt(t) => x.occurred_ns = Some(t.nanos()),
                IndexKey::FlagOf(w) => x.flag_of = Some(w as i64),
                IndexKey::LossTime(t) => x.loss_ns = Some(t.nanos()),
            }
        }
        Expected(map)
    }
}

/// Compares stored rows, in seq order, with their envelopes and with the expected index.
pub(crate) struct Checker {
    expected: Expected,
    found: Vec<IndexFinding>,
}

impl Checker {
    pub(crate) fn new(expected: Expected) -> Checker {
        Checker { expected, found: Vec::new() }
    }

    fn push(&mut self, seq: Seq, what: String) {
        if self.found.len() < FINDINGS_MAX {
            self.found.push(IndexFinding { seq: Some(seq), what, more: 0 });
        } else if let Some(last) = self.found.last_mut() {
            // Counted, not listed: verify reports how many.
            last.more += 1;
        }
    }

    pub(crate) fn row(&mut self, row: &EventRow) {
        let seq = row.seq;
        let edited = |column: &str, stored: String, event: String| {
            format!(
                "the column {column} of seq {seq} in custos_events holds {stored} but its event says {event}: the row was changed outside the ledger"
            )
        };
        let Some(want) = self.expected.0.remove(&seq) else {
            self.push(seq, format!("seq {seq} is in custos_events but not in the log the ledger read"));
            return;
        };
        let Ok(env) = Envelope::decode(&row.envelope) else {
            // The chain check reports an envelope that does not decode.
            return;
        };
        let from_env = Typed::of(&env);
        let stored = match &row.typed {
            Ok(t) => t.clone(),
            Err(why) => {
                self.push(seq, format!("seq {seq} in custos_events: {why}"));
                return;
            }
        };
        let mut diffs = Vec::new();
        macro_rules! cmp {
            ($field:ident, $name:literal) => {
                if stored.$field != from_env.$field {
                    diffs.push(edited($name, stored.$field.shown(), from_env.$field.shown()));
                }
            };
        }
        cmp!(hash, "hash");
        cmp!(stream, "stream");
        cmp!(stream_version, "stream_version");
        cmp!(event_id, "event_id");
        cmp!(kind, "kind");
        cmp!(account, "account");
        cmp!(asset, "asset");
        cmp!(amount, "amount");
        cmp!(usd_value, "usd_value");
        cmp!(occurred_ns, "occurred_ns");
        cmp!(recorded_ns, "recorded_ns");
        cmp!(reference, "ref");
        cmp!(unauthorized, "unauthorized");
        if row.occurred_us != from_env.occurred_ns.div_euclid(1000) {
            diffs.push(edited("occurred_at", format!("{} µs", row.occurred_us), env.occurred_at.to_string()));
        }
        if row.recorded_us != from_env.recorded_ns.div_euclid(1000) {
            diffs.push(edited("recorded_at", format!("{} µs", row.recorded_us), env.recorded_at.to_string()));
        }
        let index_differs = want.stream.as_deref() != Some(stored.stream.as_str())
            || want.event_id.as_deref() != Some(stored.event_id.as_str())
            || want.occurred_ns != Some(stored.occurred_ns)
            || want.flag_of != row.flag_of
            || want.loss_ns != row.loss_ns;
        if index_differs && diffs.is_empty() {
            diffs.push(format!(
                "the index columns of seq {seq} (flag_of {}, loss_ns {}) differ from what its event implies (flag_of {}, loss_ns {})",
                row.flag_of.shown(),
                row.loss_ns.shown(),
                want.flag_of.shown(),
                want.loss_ns.shown()
            ));
        }
        for d in diffs {
            self.push(seq, d);
        }
    }

    pub(crate) fn end(mut self) -> Vec<IndexFinding> {
        let missing: Vec<Seq> = self.expected.0.keys().copied().collect();
        for seq in missing {
            self.push(seq, format!("seq {seq} is in the log but has no row in custos_events"));
        }
        self.found
    }
}

/// A column's value as a message shows it: as SQL would print it, NULL for none.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for String {
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

impl Shown for &'static str {
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

impl Shown for i64 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for Vec<u8> {
    fn shown(&self) -> String {
        let hex: String = self.iter().map(|b| format!("{b:02x}")).collect();
        format!("\\x{hex}")
    }
}

impl<T: Shown> Shown for Option<T> {
    fn shown(&self) -> String {
        self.as_ref().map_or_else(|| "NULL".to_string(), Shown::shown)
    }
}

impl Shown for Decimal {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for bool {
    fn shown(&self) -> String {
        self.to_string()
    }
}
