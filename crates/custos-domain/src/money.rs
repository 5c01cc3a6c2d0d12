//! Exact money arithmetic. Every quantity the ledger keeps (a balance, a flow, a loss total, a
//! USD sum) is a `Decimal` of at most its asset's scale; `rust_decimal` silently rounds a sum
//! whose 96-bit mantissa would overflow at that scale, and panics on its operators past its
//! range. These functions compute in integers at the scale instead, and answer `None` rather
//! than round: a quantity of scale `s` is exact while its magnitude is at most
//! [`quantity_max`]`(s)`, i.e. (2^96 - 1) units of 10^-s.
//!
//! The rule is a lint: `clippy::arithmetic_side_effects` is denied in every crate of the
//! workspace but the tests' and the benchmark's (clippy.toml lets machine integers through), so
//! an operator on a `Decimal` does not pass CI. Use these; where an operator cannot overflow or
//! round (the subtraction of two non-negative quantities of one scale, each within its limit),
//! allow it on that item with a comment saying why.

use num_bigint::BigUint;
use rust_decimal::Decimal;

/// The largest mantissa a `Decimal` holds: 2^96 - 1.
const MANTISSA_MAX: i128 = (1 << 96) - 1;

/// Decimal places of a USD value (cents).
pub const USD_SCALE: u32 = 2;

/// The largest magnitude a quantity of `scale` decimal places holds exactly:
/// 79,228,162,514.264337593543950335 at 18 (ETH), 792,281,625,142,643,375,935.43950335 at 8
/// (BTC), 79,228,162,514,264,337,593,543.950335 at 6, 792,281,625,142,643,375,935,439,503.35 at
/// 2 (USD).
pub fn quantity_max(scale: u32) -> Decimal {
    Decimal::from_i128_with_scale(MANTISSA_MAX, scale)
}

/// `d` as an integer count of 10^-scale units (`None` when `d` is finer than `scale`).
fn units(d: Decimal, scale: u32) -> Option<i128> {
    let up = scale.checked_sub(d.scale())?;
    d.mantissa().checked_mul(10i128.checked_pow(up)?)
}

fn combine(
    a: Decimal,
    b: Decimal,
    scale: u32,
    f: fn(i128, i128) -> Option<i128>,
    fast: fn(Decimal, Decimal) -> Option<Decimal>,
) -> Option<Decimal> {
    // The result keeps the larger of the two scales, as rust_decimal's own operators do.
    let s = a.scale().max(b.scale());
    if s > scale {
        return None;
    }
    // rust_decimal lowers the scale exactly when it has to round: a result at the larger scale
    // is exact (the property test below checks this against integers), and the common case
    // costs one Decimal operation. Anything else is decided in integers.
    if let Some(r) = fast(a, b).filter(|r| r.scale() == s) {
        return within(r, scale).then_some(r);
    }
    let r = f(units(a, s)?, units(b, s)?)?;
    let r = Decimal::try_from_i128_with_scale(r, s).ok()?;
    within(r, scale).then_some(r)
}

/// `|r| <= quantity_max(scale)` for `r` of at most `scale` places, in integers (this runs for
/// every sum of every fold): `|mantissa| x 10^(scale - r.scale()) <= 2^96 - 1`.
fn within(r: Decimal, scale: u32) -> bool {
    let Some(up) = scale.checked_sub(r.scale()) else { return false };
    let m = r.mantissa().unsigned_abs();
    match 10u128.checked_pow(up) {
        Some(p) => m.checked_mul(p).is_some_and(|v| v <= MANTISSA_MAX as u128),
        None => m == 0,
    }
}

/// `a + b` exactly, for quantities of at most `scale` places, or `None` when the sum is beyond
/// [`quantity_max`]`(scale)` (or an operand is finer than `scale`).
pub fn add_exact(a: Decimal, b: Decimal, scale: u32) -> Option<Decimal> {
    combine(a, b, scale, i128::checked_add, Decimal::checked_add)
}

/// `a - b` exactly, on the same terms as [`add_exact`].
pub fn sub_exact(a: Decimal, b: Decimal, scale: u32) -> Option<Decimal> {
    combine(a, b, scale, i128::checked_sub, Decimal::checked_sub)
}

/// `-d`: flipping the sign of a `Decimal` cannot overflow or round.
#[allow(clippy::arithmetic_side_effects)]
pub fn negate(d: Decimal) -> Decimal {
    -d
}

/// The pro rata USD value of `part` of `whole` (same asset, `0 <= part <= whole`, `whole > 0`)
/// of a withdrawal worth `usd`: `usd * part / whole`, rounded to cents half away from zero,
/// computed exactly (the product is up to 192 bits wide, so in a big integer). `None` when an
/// argument is out of those terms.
pub fn pro_rata_cents(usd: Decimal, part: Decimal, whole: Decimal) -> Option<Decimal> {
    if usd.is_sign_negative() || part.is_sign_negative() || part > whole || whole <= Decimal::ZERO {
        return None;
    }
    let s = part.scale().max(whole.scale());
    let big = |d: Decimal, s: u32| -> Option<BigUint> { BigUint::try_from(units(d, s)?).ok() };
    let (cents, part, whole) = (big(usd, USD_SCALE)?, big(part, s)?, big(whole, s)?);
    // round(x / w) half up, for non-negative integers: floor((2x + w) / 2w). Big integers
    // cannot overflow.
    #[allow(clippy::arithmetic_side_effects)]
    let two = BigUint::from(2u8);
    #[allow(clippy::arithmetic_side_effects)]
    let share = (&two * &cents * &part + &whole) / (&two * &whole);
    // share <= cents, so it fits wherever usd did.
    let share = i128::try_from(share).ok()?;
    Decimal::try_from_i128_with_scale(share, USD_SCALE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn limits_are_the_mantissa_at_each_scale() {
        assert_eq!(quantity_max(18).to_string(), "79228162514.264337593543950335");
        assert_eq!(quantity_max(8).to_string(), "792281625142643375935.43950335");
        assert_eq!(quantity_max(6).to_string(), "79228162514264337593543.950335");
        assert_eq!(quantity_max(2).to_string(), "792281625142643375935439503.35");
    }

    #[test]
    fn a_sum_that_rust_decimal_would_round_is_refused() {
        // The case: 7 x 12345678901.123456789012345678 ETH. rust_decimal rounds it.
        let a = d("12345678901.123456789012345678");
        let mut sum = Decimal::ZERO;
        let mut refused_at = None;
        for i in 1..=7 {
            match add_exact(sum, a, 18) {
                Some(s) => sum = s,
                None => {
                    refused_at = Some(i);
                    break;
                }
            }
        }
        assert_eq!(refused_at, Some(7));
        assert_eq!(sum.to_string(), "74074073406.740740734074074068");
        // At the limit exactly is fine; one unit past it is not.
        assert_eq!(add_exact(quantity_max(18), Decimal::ZERO, 18), Some(quantity_max(18)));
        assert_eq!(add_exact(quantity_max(18), d("0.000000000000000001"), 18), None);
        assert_eq!(add_exact(d("7900000000000000000000000000"), d("7900000000000000000000000000"), 6), None);
        // Finer than the scale: refused, not rounded.
        assert_eq!(add_exact(d("0.0000001"), d("1"), 6), None);
        assert_eq!(sub_exact(d("1.5"), d("2"), 18), Some(d("-0.5")));
    }

    #[test]
    fn pro_rata_is_exact_where_decimal_overflows() {
        // 1e20 USD for 1e22 units, 1e21 of them: a tenth, exactly.
        let usd = d("100000000000000000000");
        assert_eq!(
            pro_rata_cents(usd, d("1000000000000000000000"), d("10000000000000000000000")),
            Some(d("10000000000000000000.00"))
        );
        assert_eq!(pro_rata_cents(d("100"), d("1"), d("3")), Some(d("33.33")));
        assert_eq!(pro_rata_cents(d("100"), d("2"), d("3")), Some(d("66.67")));
        assert_eq!(pro_rata_cents(d("0.01"), d("1"), d("2")), Some(d("0.01"))); // half away from zero
        assert_eq!(pro_rata_cents(d("100"), d("4"), d("3")), None);
        let max_usd = quantity_max(USD_SCALE);
        assert_eq!(pro_rata_cents(max_usd, quantity_max(18), quantity_max(18)), Some(max_usd));
    }

    /// Mantissas around the 96-bit limit (both sides of it) and small ones (the common case).
    fn mantissa() -> impl Strategy<Value = i128> {
        prop_oneof![any::<i128>().prop_map(|a| a >> 30), -(10i128.pow(20))..10i128.pow(20)]
    }

    proptest! {
        /// Against i128 arithmetic on units (which cannot round) and, where the result fits,
        /// against rust_decimal's own operators.
        #[test]
        fn add_and_sub_agree_with_integers(a in mantissa(), b in mantissa(), sa in 0u32..=18, sb in 0u32..=18) {
            let (Ok(x), Ok(y)) = (Decimal::try_from_i128_with_scale(a, sa), Decimal::try_from_i128_with_scale(b, sb)) else {
                return Ok(());
            };
            let s = sa.max(sb);
            let within = |e: i128| e.checked_mul(10i128.pow(18 - s)).is_some_and(|u| u.abs() <= MANTISSA_MAX);
            type Ops = (fn(Decimal, Decimal, u32) -> Option<Decimal>, fn(i128, i128) -> Option<i128>, fn(Decimal, Decimal) -> Option<Decimal>);
            let ops: [Ops; 2] = [(add_exact, i128::checked_add, Decimal::checked_add), (sub_exact, i128::checked_sub, Decimal::checked_sub)];
            for (exact_op, int_op, decimal_op) in ops {
                let exact = a.checked_mul(10i128.pow(s - sa)).zip(b.checked_mul(10i128.pow(s - sb))).and_then(|(a, b)| int_op(a, b));
                let want = exact.filter(|e| within(*e)).map(|e| Decimal::from_i128_with_scale(e, s));
                prop_assert_eq!(exact_op(x, y, 18), want);
                if let Some(w) = want {
                    prop_assert_eq!(decimal_op(x, y), Some(w));
                }
            }
        }

        /// Against a rational computed in u128 where it fits.
        #[test]
        fn pro_rata_agrees_with_small_integers(usd in 0u64..1_000_000_000, whole in 1u64..1_000_000_000, part_frac in 0u64..=1000) {
            let part = whole * part_frac / 1000;
            let (c, p, w) = (usd as u128, part as u128, whole as u128);
            let want = (2 * c * p + w) / (2 * w);
            let got = pro_rata_cents(Decimal::new(usd as i64, 2), Decimal::from(part), Decimal::from(whole)).unwrap();
            prop_assert_eq!(got, Decimal::from_i128_with_scale(want as i128, 2));
        }
    }
}
