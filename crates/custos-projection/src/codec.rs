//! Checkpoint encoding helpers: decimals as their exact 16-byte form inside bincode.

use rust_decimal::Decimal;

pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

pub(crate) fn dec(d: Decimal) -> [u8; 16] {
    d.serialize()
}

pub(crate) fn undec(b: [u8; 16]) -> Option<Decimal> {
    (b[0] == 0 && b[1] == 0 && b[2] <= 28 && b[3] & 0x7f == 0).then(|| Decimal::deserialize(b))
}
