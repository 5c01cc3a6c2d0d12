//! The typed columns of `custos_events`: derived from each envelope when it is appended, and
//! checked against it by `verify` (an `UPDATE` of a column is found and named by its seq).

use std::collections::BTreeMap;

use custos_domain::{Envelope, Event, Seq};
use custos_log::{AppendBatch, IndexEntry, IndexFinding, IndexKey, LogError, Result};
use rust_decimal::Decimal;
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

/// A batch as columns, for one `INSERT … SELECT FROM UNNEST(…)`.
#[derive(Default)]
pub(crate) struct Columns {
    seq: Vec<i64>,
    envelope: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    stream: Vec<String>,
    stream_version: Vec<i64>,
    event_id: Vec<String>,
    kind: Vec<&'static str>,
    account: Vec<Option<String>>,
    asset: Vec<Option<String>>,
    amount: Vec<Option<String>>,
    usd_value: Vec<Option<String>>,
    occurred_ns: Vec<i64>,
    recorded_ns: Vec<i64>,
    reference: Vec<Option<String>>,
    unauthorized: Vec<Option<bool>>,
    flag_of: Vec<Option<i64>>,
    loss_ns: Vec<Option<i64>>,
}

const INSERT: &str = "INSERT INTO custos_events (seq, envelope, hash, stream, stream_version, event_id, kind, \
     account, asset, amount, usd_value, occurred_at, recorded_at, occurred_ns, recorded_ns, ref, unauthorized, \
     flag_of, loss_ns) \
     SELECT seq, envelope, hash, stream, stream_version, event_id, kind, account, asset, amount::numeric, \
     usd_value::numeric, \
     'epoch'::timestamptz + floor(occurred_ns / 1000.0)::float8 * interval '1 microsecond', \
     'epoch'::timestamptz + floor(recorded_ns / 1000.0)::float8 * interval '1 microsecond', \
     occurred_ns, recorded_ns, ref, unauthorized, flag_of, loss_ns \
     FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::bigint[], $6::text[], $7::text[], \
     $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::text[], \
     $15::boolean[], $16::bigint[], $17::bigint[]) \
     AS u(seq, envelope, hash, stream, stream_version, event_id, kind, account, asset, amount, usd_value, \
     occurred_ns, recorded_ns, ref, unauthorized, flag_of, loss_ns)";

impl Columns {
    pub(crate) fn of(batch: &AppendBatch) -> Result<Columns> {
        let mut c = Columns::default();
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
        for (seq, record) in (batch.first_seq..).zip(&batch.records) {
            let env = Envelope::decode(record).map_err(|e| LogError::corrupt_at(seq, e.to_string()))?;
            let t = Typed::of(&env);
            c.seq.push(seq as i64);
            c.envelope.push(record.clone());
            c.hash.push(t.hash);
            c.stream.push(t.stream);
            c.stream_version.push(t.stream_version);
            c.event_id.push(t.event_id);
            c.kind.push(t.kind);
            c.account.push(t.account);
            c.asset.push(t.asset);
            c.amount.push(t.amount.map(|d| d.to_string()));
            c.usd_value.push(t.usd_value.map(|d| d.to_string()));
            c.occurred_ns.push(t.occurred_ns);
            c.recorded_ns.push(t.recorded_ns);
            c.reference.push(t.reference);
            c.unauthorized.push(t.unauthorized);
            c.flag_of.push(flag_of.get(&seq).copied());
            c.loss_ns.push(loss.get(&seq).copied());
        }
        Ok(c)
    }

    pub(crate) async fn insert(&self, client: &Client) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                INSERT,
                &[
                    &self.seq,
                    &self.envelope,
                    &self.hash,
                    &self.stream,
                    &self.stream_version,
                    &self.event_id,
                    &self.kind,
                    &self.account,
                    &self.asset,
                    &self.amount,
                    &self.usd_value,
                    &self.occurred_ns,
                    &self.recorded_ns,
                    &self.reference,
                    &self.unauthorized,
                    &self.flag_of,
                    &self.loss_ns,
                ],
            )
            .await
    }
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
            self.found.push(IndexFinding { seq: Some(seq), what });
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
