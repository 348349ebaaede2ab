//! Decimal views of `f64` that the wire contract depends on.
//!
//! The contract was born in Python, so three things must match Python byte for byte:
//! - [`round9`]: the shortest round-trip decimal of a double, rounded half-up (away from zero) at the
//!   9th decimal *in decimal arithmetic*, parsed back. Float arithmetic (`(x * 1e9).round() / 1e9`)
//!   gets ties like `0.1234567895` wrong, so we round the digit string instead.
//! - [`python_repr`]: how `repr(float)` prints (positional for `1e-4 <= |x| < 1e16`, otherwise
//!   `d.ddde±XX`), always with a fractional part or an exponent.
//! - [`printf_fixed`]: C's `%.Nf`, used in verification reasons.
//!
//! All three start from [`ShortestDigits`], the digits Rust's `{:e}` prints: the shortest string that
//! parses back to the same double, which is the same digit string Python's `repr` is built from.

/// The shortest round-trip decimal form of a finite double: `±d1.d2d3…dn × 10^exponent`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShortestDigits {
    /// True for negative numbers, including `-0.0`.
    negative: bool,
    /// Significant digits without leading zeros (`"0"` for zero), ASCII.
    digits: String,
    /// Decimal exponent of the first digit.
    exponent: i32,
}

impl ShortestDigits {
    fn of(value: f64) -> Self {
        debug_assert!(value.is_finite(), "JSON numbers are always finite");
        // `{:e}` prints the shortest round-trip digits, e.g. `-1.5e-9`, `0e0`, `1.234e2`.
        let printed = format!("{:e}", value.abs());
        let (mantissa, exponent) = printed.split_once('e').unwrap_or((&printed, "0"));
        ShortestDigits {
            negative: value.is_sign_negative(),
            digits: mantissa.chars().filter(char::is_ascii_digit).collect(),
            exponent: exponent.parse().unwrap_or(0),
        }
    }

    fn sign(&self) -> &'static str {
        if self.negative { "-" } else { "" }
    }
}

/// Rounds half-up (away from zero) at the 9th decimal, in decimal arithmetic on the shortest digits.
///
/// Non-finite values are returned unchanged (they cannot come from JSON).
pub fn round9(value: f64) -> f64 {
    if !value.is_finite() {
        return value;
    }
    let shortest = ShortestDigits::of(value);
    // Digits up to and including the 9th decimal.
    let kept_len = shortest.exponent + 10;
    let digit_count = shortest.digits.len() as i32;
    if kept_len >= digit_count {
        return value; // nine decimals or fewer already
    }
    let digits = shortest.digits.as_bytes();
    let (mut kept, next_digit) = if kept_len < 0 {
        (Vec::new(), b'0')
    } else {
        let kept_len = kept_len as usize;
        (digits[..kept_len].to_vec(), digits[kept_len])
    };
    if next_digit >= b'5' {
        increment_decimal(&mut kept);
    }
    if kept.is_empty() {
        return if shortest.negative { -0.0 } else { 0.0 };
    }
    let text = format!("{}{}e-9", shortest.sign(), String::from_utf8_lossy(&kept));
    text.parse().unwrap_or(value)
}

/// Adds one to an ASCII decimal integer in place (`""` becomes `"1"`, `"99"` becomes `"100"`).
fn increment_decimal(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// Prints a double exactly as Python's `repr(float)` does.
pub fn python_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let shortest = ShortestDigits::of(value);
    let digits = shortest.digits.as_str();
    let exponent = shortest.exponent;
    if (-4..16).contains(&exponent) {
        let body = if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        };
        format!("{}{body}", shortest.sign())
    } else {
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.to_owned()
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}{mantissa}e{exponent_sign}{:02}",
            shortest.sign(),
            exponent.unsigned_abs()
        )
    }
}

/// Prints a double like C's `printf("%.{decimals}f")`: the exact binary value rounded half-to-even.
///
/// Rust's `{:.N}` formatting rounds the exact binary value too; this wrapper exists so the contract's
/// `%.4f` has one name and one test suite.
pub fn printf_fixed(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round9_contract_vectors() {
        assert_eq!(round9(1.412345678901234), 1.412345679);
        assert_eq!(round9(0.1234567895), 0.12345679);
        assert_eq!(round9(1.5e-9), 2e-9);
        assert_eq!(round9(12345.6789012345), 12345.678901235);
    }

    #[test]
    fn round9_edges() {
        assert_eq!(round9(-0.1234567895), -0.12345679);
        assert_eq!(round9(0.9999999995), 1.0);
        assert_eq!(round9(4e-10).to_bits(), 0.0f64.to_bits());
        assert_eq!(round9(-4e-10).to_bits(), (-0.0f64).to_bits());
        assert_eq!(round9(5e-10), 1e-9);
        assert_eq!(round9(1e-12), 0.0);
        assert_eq!(round9(1e300), 1e300);
        assert_eq!(round9(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(round9(99999.9999999995), 100000.0);
    }

    #[test]
    fn repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1e-7, "1e-07"),
            (2e-9, "2e-09"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (123456789.125, "123456789.125"),
            (1e300, "1e+300"),
            (-2.5e-308, "-2.5e-308"),
            (5e-324, "5e-324"),
            (0.528320834, "0.528320834"),
            (12345.678901235, "12345.678901235"),
            (100.0, "100.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_repr(*value), *expected, "repr of {value:e}");
        }
    }

    #[test]
    fn printf_fixed_rounds_exact_binary_ties_to_even() {
        assert_eq!(printf_fixed(0.15625, 4), "0.1562");
        assert_eq!(printf_fixed(0.03125, 4), "0.0312");
        assert_eq!(printf_fixed(0.09375, 4), "0.0938");
        assert_eq!(printf_fixed(1.05, 4), "1.0500");
        assert_eq!(printf_fixed(-0.00001, 4), "-0.0000");
        assert_eq!(printf_fixed(1e20, 4), "100000000000000000000.0000");
    }

    proptest! {
        #[test]
        fn round9_is_idempotent(value in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let once = round9(value);
            prop_assert_eq!(round9(once).to_bits(), once.to_bits());
        }

        #[test]
        fn round9_moves_at_most_half_a_unit(value in -1e6f64..1e6) {
            prop_assert!((round9(value) - value).abs() <= 5e-10 + value.abs() * 1e-15);
        }

        #[test]
        fn repr_round_trips(value in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let printed = python_repr(value);
            let parsed: f64 = printed.parse().unwrap();
            prop_assert_eq!(parsed.to_bits(), value.to_bits());
        }
    }
}
