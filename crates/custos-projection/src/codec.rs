//! Checkpoint encoding helpers: decimals packed exactly as (sign and scale, mantissa), which
//! bincode writes as one byte and a variable-length integer: 2 to 6 bytes for the amounts and
//! USD values of a ledger instead of the 16 of `Decimal::serialize`.

use rust_decimal::Decimal;

pub(crate) fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes exactly like a `Vec` of the items `1` yields (`0` of them), without collecting them:
/// checkpoints write hundreds of thousands of rows straight from the state.
pub(crate) struct AsSeq<F>(pub usize, pub F);

impl<F, I, T> bincode::Encode for AsSeq<F>
where
    F: Fn() -> I,
    I: Iterator<Item = T>,
    T: bincode::Encode,
{
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        (self.0 as u64).encode(encoder)?;
        let mut n = 0;
        for item in (self.1)() {
            item.encode(encoder)?;
            n += 1;
        }
        debug_assert_eq!(n, self.0, "the length written is the number of items");
        Ok(())
    }
}

/// An exact decimal as stored: bit 7 of the first byte is the sign, bits 0-4 the scale (0-28);
/// then the unsigned 96-bit mantissa.
pub(crate) type Packed = (u8, u128);

pub(crate) fn dec(d: Decimal) -> Packed {
    let sign = if d.is_sign_negative() { 0x80 } else { 0 };
    (sign | d.scale() as u8, d.mantissa().unsigned_abs())
}

pub(crate) fn undec((flags, mantissa): Packed) -> Option<Decimal> {
    let scale = u32::from(flags & 0x7f);
    if scale > 28 || mantissa >> 96 != 0 {
        return None;
    }
    let m = i128::try_from(mantissa).ok()?;
    let d = Decimal::try_from_i128_with_scale(if flags & 0x80 != 0 { -m } else { m }, scale).ok()?;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_decimals_round_trip_exactly_and_refuse_what_no_decimal_is() {
        for s in ["0", "-0", "1.5", "0.000000000000000001", "-12345.67", "79228162514264337593543950335", "1.0000"] {
            let d: Decimal = s.parse().unwrap();
            let back = undec(dec(d)).unwrap();
            assert_eq!(back, d);
            assert_eq!(back.scale(), d.scale(), "{s}: the scale is kept, so 1.0000 stays 1.0000");
        }
        assert_eq!(undec((29, 1)), None);
        assert_eq!(undec((0, 1u128 << 96)), None);
    }

    #[test]
    fn a_sequence_encodes_exactly_like_a_vec() {
        let rows: Vec<(String, u64)> = (0..300u64).map(|i| (format!("acct-{i}"), i * 1000)).collect();
        let as_vec = bincode::encode_to_vec(&rows, config()).unwrap();
        let as_seq =
            bincode::encode_to_vec(AsSeq(rows.len(), || rows.iter().map(|(a, n)| (a.as_str(), *n))), config()).unwrap();
        assert_eq!(as_seq, as_vec);
    }
}
