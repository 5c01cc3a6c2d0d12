//! Newtypes that carry the ledger's meaning and invariants.

use std::fmt;
use std::str::FromStr;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;

/// Why a value could not become a domain type. Messages name the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("account id {0:?} is not 1-64 characters of letters, digits, '.', '_', ':', '@' or '-'")]
    BadAccountId(String),
    #[error("event id {0:?} is not 1-128 characters of letters, digits, '.', '_', ':' or '-'")]
    BadEventId(String),
    #[error("asset symbol {0:?} is not 1-10 uppercase letters or digits")]
    BadAssetSymbol(String),
    #[error("amount {0:?} is not a decimal number")]
    BadDecimal(String),
    #[error("amount {amount} {asset} is not positive")]
    AmountNotPositive { amount: String, asset: String },
    #[error("amount {amount} has {places} decimal places; {asset} allows at most {allowed}")]
    AmountHasTooManyDecimals { amount: String, asset: String, places: u32, allowed: u32 },
    #[error("usd value {0} is negative")]
    UsdNegative(String),
    #[error("usd value {0} has more than 2 decimal places (cents)")]
    UsdHasTooManyDecimals(String),
    #[error("amount overflow adding {0} and {1}")]
    Overflow(String, String),
    #[error("time {0:?} is not RFC3339 (e.g. 2022-01-18T03:46:00Z) or a date YYYY-MM-DD")]
    BadTime(String),
    /// A data field's time (when something happened or was recorded): RFC3339 only.
    #[error("time {0:?} is not RFC3339 (e.g. 2022-01-18T03:46:00Z): when something happened is written to the second at least, not as a date")]
    NotRfc3339(String),
    #[error("time {0:?} is outside the supported range, 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z (nanoseconds since 1970 in 64 bits)")]
    TimeOutOfRange(String),
    #[error("time {0:?} cannot be kept exactly: a leap second (:60) or more than 9 fractional digits (nanoseconds)")]
    TimeNotExact(String),
    #[error("{0:?} has more digits than the ledger can represent exactly (28 significant digits)")]
    DecimalTooLarge(String),
}

/// A value as an error message shows it: whole when short, else its start and its length, so
/// that a refusal never echoes kilobytes of what it refused.
pub fn shown(s: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 64;
    match s.char_indices().nth(SHOWN_CHARS_MAX) {
        None => s.to_string(),
        Some((end, _)) => format!("{}... ({} bytes)", &s[..end], s.len()),
    }
}

fn id_chars_ok(s: &str, extra: &[char]) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') || extra.contains(&c))
}

/// A customer account, e.g. `acct-000042`. Each account is one event stream. Shared (`Arc`), so
/// the many copies projections keep cost a reference count, not a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(std::sync::Arc<str>);

/// Lookups by `&str` (hash and equality are the string's, as for the `Arc<str>` inside).
impl std::borrow::Borrow<str> for AccountId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Encodes a string-backed id exactly like a `String`; decoding checks it as its constructor
/// does.
macro_rules! encoded_as_str {
    ($t:ident, $malformed:literal) => {
        impl Encode for $t {
            fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
                self.as_str().encode(encoder)
            }
        }

        impl<Ctx> Decode<Ctx> for $t {
            fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
                let s = String::decode(decoder)?;
                $t::new(&s).map_err(|_| DecodeError::Other($malformed))
            }
        }
        bincode::impl_borrow_decode!($t);
    };
}

encoded_as_str!(AccountId, "stored account id is malformed");

/// The longest account id the ledger accepts.
pub const ACCOUNT_ID_LEN_MAX: usize = 64;
/// The longest event id the ledger accepts.
pub const EVENT_ID_LEN_MAX: usize = 128;

impl AccountId {
    pub fn new(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > ACCOUNT_ID_LEN_MAX || !id_chars_ok(s, &['@']) {
            return Err(DomainError::BadAccountId(shown(s)));
        }
        Ok(AccountId(std::sync::Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stream an event belongs to: one per account, plus the ledger-wide control stream that
/// holds `WithdrawalsSuspended` / `WithdrawalsResumed`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    Account(AccountId),
    Ledger,
}

impl StreamId {
    /// The control stream's name. `$` is not allowed in account ids, so it cannot collide.
    pub const LEDGER_NAME: &'static str = "$ledger";

    pub fn as_str(&self) -> &str {
        match self {
            StreamId::Account(a) => a.as_str(),
            StreamId::Ledger => Self::LEDGER_NAME,
        }
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s == Self::LEDGER_NAME {
            Ok(StreamId::Ledger)
        } else {
            Ok(StreamId::Account(AccountId::new(s)?))
        }
    }
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            StreamId::Account(a) => Some(a),
            StreamId::Ledger => None,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command's client-chosen id: its idempotency key, and the id of the event it appends.
/// Shared (`Arc`): the writer hands the same id to the event, the caller's answer and the
/// write model, and a copy costs a reference count. Encoded exactly like a `String`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(std::sync::Arc<str>);

encoded_as_str!(EventId, "stored event id is malformed");

impl EventId {
    pub fn new(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > EVENT_ID_LEN_MAX || !id_chars_ok(s, &[]) {
            return Err(DomainError::BadEventId(shown(s)));
        }
        Ok(EventId(std::sync::Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An asset symbol: 1-10 uppercase ASCII letters or digits. Stored inline (it is `Copy`), so
/// folding millions of events does not allocate a string per event; encoded exactly like a
/// `String` (length, then bytes), as payload schema version 1 wrote it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asset {
    bytes: [u8; Asset::SYMBOL_LEN_MAX],
    len: u8,
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asset({:?})", self.as_str())
    }
}

impl Encode for Asset {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.as_str().encode(encoder)
    }
}

impl<Ctx> Decode<Ctx> for Asset {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        use bincode::de::read::Reader;
        let len = u64::decode(decoder)? as usize;
        if len == 0 || len > Asset::SYMBOL_LEN_MAX {
            return Err(DecodeError::Other("stored asset symbol has a bad length"));
        }
        decoder.claim_bytes_read(len)?;
        let mut bytes = [0u8; Asset::SYMBOL_LEN_MAX];
        decoder.reader().read(&mut bytes[..len])?;
        if !bytes[..len].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Err(DecodeError::Other("stored asset symbol is malformed"));
        }
        Ok(Asset { bytes, len: len as u8 })
    }
}
bincode::impl_borrow_decode!(Asset);

/// How reports group assets: ETH, BTC, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssetGroup {
    Eth,
    Btc,
    Misc,
}

impl AssetGroup {
    pub const ALL: [AssetGroup; 3] = [AssetGroup::Eth, AssetGroup::Btc, AssetGroup::Misc];
    pub fn name(self) -> &'static str {
        match self {
            AssetGroup::Eth => "ETH",
            AssetGroup::Btc => "BTC",
            AssetGroup::Misc => "misc",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Asset {
    pub const SYMBOL_LEN_MAX: usize = 10;

    pub fn new(s: &str) -> Result<Self, DomainError> {
        if s.is_empty()
            || s.len() > Self::SYMBOL_LEN_MAX
            || !s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(DomainError::BadAssetSymbol(shown(s)));
        }
        let mut bytes = [0u8; Asset::SYMBOL_LEN_MAX];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Asset { bytes, len: s.len() as u8 })
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("asset symbols are ASCII")
    }
    /// Decimal places the asset allows: BTC 8, ETH 18, every other asset 6.
    pub fn scale(&self) -> u32 {
        match self.as_str() {
            "BTC" => 8,
            "ETH" => 18,
            _ => 6,
        }
    }
    /// The largest quantity of this asset the ledger keeps exactly (a balance, a flow, a
    /// total): (2^96 - 1) units of its smallest fraction. See [`crate::money`].
    pub fn quantity_max(&self) -> Decimal {
        crate::money::quantity_max(self.scale())
    }
    pub fn group(&self) -> AssetGroup {
        match self.as_str() {
            "ETH" => AssetGroup::Eth,
            "BTC" => AssetGroup::Btc,
            _ => AssetGroup::Misc,
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn encode_decimal<E: Encoder>(d: &Decimal, encoder: &mut E) -> Result<(), EncodeError> {
    // The exact 16-byte form: bincode's serde mode cannot read Decimal's default serde form.
    d.serialize().encode(encoder)
}

fn decode_decimal<Ctx, D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Decimal, DecodeError> {
    let bytes = <[u8; 16]>::decode(decoder)?;
    // Reject encodings `Decimal::serialize` never produces (scale > 28, stray flag bits), so a
    // flipped bit in a stored amount is a decode error rather than a silently different number.
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] > 28 || (bytes[3] & 0x7f) != 0 {
        return Err(DecodeError::Other("malformed decimal"));
    }
    Ok(Decimal::deserialize(bytes))
}

/// A positive quantity of some asset, normalized (no trailing zeros), within the asset's scale.
/// The asset is not stored in the amount; constructors check the scale against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    pub fn new(value: Decimal, asset: &Asset) -> Result<Self, DomainError> {
        let value = value.normalize();
        if value <= Decimal::ZERO {
            return Err(DomainError::AmountNotPositive { amount: value.to_string(), asset: asset.to_string() });
        }
        if value.scale() > asset.scale() {
            return Err(DomainError::AmountHasTooManyDecimals {
                amount: value.to_string(),
                asset: asset.to_string(),
                places: value.scale(),
                allowed: asset.scale(),
            });
        }
        Ok(Amount(value))
    }
    /// Parses a decimal string exactly (never through a float).
    pub fn parse(s: &str, asset: &Asset) -> Result<Self, DomainError> {
        Amount::new(parse_decimal(s)?, asset)
    }
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Encode for Amount {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encode_decimal(&self.0, encoder)
    }
}

impl<Ctx> Decode<Ctx> for Amount {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let d = decode_decimal(decoder)?;
        if d <= Decimal::ZERO || d.scale() > 18 {
            return Err(DecodeError::Other("stored amount is not positive or exceeds any asset scale"));
        }
        Ok(Amount(d))
    }
}
bincode::impl_borrow_decode!(Amount);

/// Parses a plain decimal: optional sign, digits, optional fraction. No exponents, no spaces,
/// no thousands separators, never a float.
pub fn parse_decimal(s: &str) -> Result<Decimal, DomainError> {
    let body = s.strip_prefix('-').or_else(|| s.strip_prefix('+')).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits_ok = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || (body.contains('.') && frac.is_empty()) {
        return Err(DomainError::BadDecimal(shown(s)));
    }
    // The syntax is right, so a failure here is a number past 96 bits or 28 places.
    Decimal::from_str_exact(s).map_err(|_| DomainError::DecimalTooLarge(shown(s)))
}

/// A US dollar value: non-negative, at most cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(Decimal);

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    pub fn new(value: Decimal) -> Result<Self, DomainError> {
        if value < Decimal::ZERO {
            return Err(DomainError::UsdNegative(value.to_string()));
        }
        let value = value.normalize();
        if value.scale() > 2 {
            return Err(DomainError::UsdHasTooManyDecimals(value.to_string()));
        }
        Ok(Usd(value))
    }
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Usd::new(parse_decimal(s)?)
    }
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Encode for Usd {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encode_decimal(&self.0, encoder)
    }
}

impl<Ctx> Decode<Ctx> for Usd {
    fn decode<D: Decoder<Context = Ctx>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let d = decode_decimal(decoder)?;
        if d < Decimal::ZERO || d.scale() > 2 {
            return Err(DecodeError::Other("stored usd value is negative or finer than cents"));
        }
        Ok(Usd(d))
    }
}
bincode::impl_borrow_decode!(Usd);

/// A global sequence number: from 1, gap-free.
pub type Seq = u64;

/// A SHA-256 hash-chain link.
pub type Hash = [u8; 32];

/// A moment in UTC, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }
    pub fn nanos(self) -> i64 {
        self.0
    }
    pub fn now() -> Self {
        Self::from_datetime(Utc::now()).expect("the clock is within years 1678-2261")
    }
    pub fn from_datetime(dt: DateTime<Utc>) -> Option<Self> {
        dt.timestamp_nanos_opt().map(Timestamp)
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_nanos(self.0)
    }
    /// RFC3339 with an offset (converted to UTC). Data fields accept only this form.
    pub fn parse_rfc3339(s: &str) -> Result<Self, DomainError> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| DomainError::NotRfc3339(shown(s)))?;
        // chrono accepts a leap second (kept as a nanosecond past 1e9, which becomes the next
        // minute) and drops fractional digits past the ninth: neither is the time written.
        let fraction = s.split_once('.').map(|(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
        if chrono::Timelike::nanosecond(&dt) >= 1_000_000_000 || fraction.is_some_and(|n| n > 9) {
            return Err(DomainError::TimeNotExact(shown(s)));
        }
        Self::from_datetime(dt.with_timezone(&Utc)).ok_or_else(|| DomainError::TimeOutOfRange(shown(s)))
    }
    /// An upper query bound (`--to`, `--as-of`, `--known-at`): RFC3339, or a plain date
    /// `YYYY-MM-DD` meaning the end of that day in UTC (its last nanosecond), so `--as-of
    /// 2022-01-18` includes everything on the 18th.
    pub fn parse_query(s: &str) -> Result<Self, DomainError> {
        Self::parse_day_or_time(s, NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).expect("valid time"))
    }
    /// A lower query bound (`--from`): RFC3339, or a plain date `YYYY-MM-DD` meaning the start
    /// of that day in UTC, so `--from 2022-01-18` includes everything on the 18th.
    pub fn parse_query_start(s: &str) -> Result<Self, DomainError> {
        Self::parse_day_or_time(s, NaiveTime::MIN)
    }
    fn parse_day_or_time(s: &str, time_of_day: NaiveTime) -> Result<Self, DomainError> {
        if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            if s.len() == 10 {
                return Self::from_datetime(Utc.from_utc_datetime(&date.and_time(time_of_day)))
                    .ok_or_else(|| DomainError::TimeOutOfRange(shown(s)));
            }
        }
        Self::parse_rfc3339(s).map_err(|e| match e {
            DomainError::NotRfc3339(s) => DomainError::BadTime(s),
            e => e,
        })
    }
    /// RFC3339 in UTC with `Z`, with as many fractional digits as needed (none for whole seconds).
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_query(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_checked_against_scale() {
        let btc = Asset::new("BTC").unwrap();
        let eth = Asset::new("ETH").unwrap();
        assert_eq!(Amount::parse("0.12345678", &btc).unwrap().to_string(), "0.12345678");
        assert!(matches!(
            Amount::parse("0.123456789", &btc),
            Err(DomainError::AmountHasTooManyDecimals { places: 9, allowed: 8, .. })
        ));
        assert_eq!(Amount::parse("1.000000000000000001", &eth).unwrap().to_string(), "1.000000000000000001");
        assert_eq!(Amount::parse("1.50", &eth).unwrap().to_string(), "1.5");
        for bad in ["0", "-1", "0.0"] {
            assert!(matches!(Amount::parse(bad, &eth), Err(DomainError::AmountNotPositive { .. })), "{bad}");
        }
        for bad in ["1e3", "1,5", " 1", "abc", "", ".5", "5.", "NaN", "1.2.3"] {
            assert!(matches!(Amount::parse(bad, &eth), Err(DomainError::BadDecimal(_))), "{bad}");
        }
        // Past Decimal's range: said so, not "not a decimal number".
        let e = Amount::parse("79228162514264337593543950336", &eth).unwrap_err();
        assert!(matches!(e, DomainError::DecimalTooLarge(_)), "{e}");
    }

    #[test]
    fn symbols_and_ids_are_validated() {
        assert!(Asset::new("USDC").is_ok());
        assert!(Asset::new("1INCH").is_ok());
        for bad in ["eth", "", "TOOLONGSYMBOL", "ET H", "ÉTH"] {
            assert!(Asset::new(bad).is_err(), "{bad}");
        }
        assert!(AccountId::new("acct-000042").is_ok());
        assert!(AccountId::new("$ledger").is_err());
        assert!(EventId::new("a,b").is_err());
        // A refusal shows the start of a long value and its length, not all of it.
        let long = "x".repeat(5000);
        let message = AccountId::new(&long).unwrap_err().to_string();
        assert!(message.len() < 200 && message.contains("(5000 bytes)"), "{message}");
    }

    #[test]
    fn usd_is_cents_at_most() {
        assert!(Usd::parse("15132516").is_ok());
        assert!(Usd::parse("0.01").is_ok());
        assert!(matches!(Usd::parse("0.001"), Err(DomainError::UsdHasTooManyDecimals(_))));
        assert!(matches!(Usd::parse("-1"), Err(DomainError::UsdNegative(_))));
    }

    #[test]
    fn times_parse_as_documented() {
        let t = Timestamp::parse_query("2022-01-18").unwrap();
        assert_eq!(t.to_rfc3339(), "2022-01-18T23:59:59.999999999Z");
        let start = Timestamp::parse_query_start("2022-01-18").unwrap();
        assert_eq!(start.to_rfc3339(), "2022-01-18T00:00:00Z");
        assert_eq!(Timestamp::parse_query_start("2022-01-18T05:00:00Z").unwrap().to_rfc3339(), "2022-01-18T05:00:00Z");
        let t = Timestamp::parse_rfc3339("2022-01-18T04:46:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2022-01-18T03:46:00Z");
        assert!(Timestamp::parse_rfc3339("2022-01-18").is_err());
        // Found by a helper attacking the importer: both were silently changed.
        assert!(matches!(Timestamp::parse_rfc3339("2022-01-10T10:00:60Z"), Err(DomainError::TimeNotExact(_))));
        assert!(matches!(
            Timestamp::parse_rfc3339("2022-01-10T10:00:00.123456789123Z"),
            Err(DomainError::TimeNotExact(_))
        ));
        assert_eq!(
            Timestamp::parse_rfc3339("2022-01-10T10:00:00.123456789Z").unwrap().nanos() % 1_000_000_000,
            123456789
        );
        assert!(Timestamp::parse_query("yesterday").is_err());
    }

    #[test]
    fn decimal_codec_round_trips_and_rejects_garbage() {
        let cfg = bincode::config::standard();
        let eth = Asset::new("ETH").unwrap();
        let a = Amount::parse("4836.26", &eth).unwrap();
        let bytes = bincode::encode_to_vec(a, cfg).unwrap();
        let (b, _): (Amount, usize) = bincode::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(a, b);
        let mut bad = bytes.clone();
        bad[2] = 200;
        assert!(bincode::decode_from_slice::<Amount, _>(&bad, cfg).is_err());
    }
}
