//! Value parsers for the numeric flags: every refusal names the accepted
//! range, the same way for `-1`, `0`, `1e99` and `x`.
//!
//! clap's own integer parsers report a negative number to an unsigned flag
//! as "invalid digit found in string"; these parse into `i128` first, so a
//! value of any sign or size is compared with the range and the message is
//! always "must be an integer from LO to HI" (clap adds the flag's name).

/// A bound as a user reads it: powers of two (and one less) above 2^16 as
/// `2^k` / `2^k-1`, others in decimal.
fn bound(v: i128) -> String {
    let p = |v: i128| v > 1 << 16 && v.count_ones() == 1;
    if p(v) {
        format!("2^{}", v.trailing_zeros())
    } else if p(v + 1) {
        format!("2^{}-1", (v + 1).trailing_zeros())
    } else {
        v.to_string()
    }
}

/// The range phrase of a refusal: "must be an integer from 1 to 2^32".
pub(crate) fn range_phrase(lo: i128, hi: i128) -> String {
    format!("must be an integer from {} to {}", bound(lo), bound(hi))
}

/// A parser for an integer flag in `lo..=hi` (both inclusive).
pub(crate) fn int_in<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: Copy + Into<i128> + TryFrom<i128> + Send + Sync + 'static,
{
    let (l, h): (i128, i128) = (lo.into(), hi.into());
    move |s: &str| {
        let v: i128 = s.trim().parse().map_err(|_| range_phrase(l, h))?;
        if v < l || v > h {
            return Err(range_phrase(l, h));
        }
        T::try_from(v).map_err(|_| range_phrase(l, h))
    }
}

/// `int_in` for `usize` flags (no `Into<i128>` for `usize`).
pub(crate) fn usize_in(
    lo: u64,
    hi: u64,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync {
    let parse = int_in(lo, hi);
    move |s: &str| {
        let v = parse(s)?;
        usize::try_from(v).map_err(|_| range_phrase(lo.into(), hi.into()))
    }
}

/// A parser for a finite number strictly between `lo` and `hi`.
pub(crate) fn real_between(
    lo: f64,
    hi: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    let phrase = move || format!("must be a number greater than {lo} and less than {hi}");
    move |s: &str| {
        let v: f64 = s.trim().parse().map_err(|_| phrase())?;
        if v.is_finite() && v > lo && v < hi {
            Ok(v)
        } else {
            Err(phrase())
        }
    }
}

/// The seed: any 64-bit unsigned integer.
pub(crate) fn seed(s: &str) -> Result<u64, String> {
    int_in(0u64, u64::MAX)(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_names_the_range() {
        let p = int_in(1u64, 1 << 32);
        for bad in [
            "-1",
            "0",
            "4294967297",
            "1e3",
            "x",
            "",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                p(bad),
                Err("must be an integer from 1 to 2^32".into()),
                "{bad:?}"
            );
        }
        assert_eq!(p("1"), Ok(1));
        assert_eq!(p("4294967296"), Ok(1 << 32));
        assert_eq!(
            seed("-1"),
            Err("must be an integer from 0 to 2^64-1".into())
        );
        assert_eq!(seed("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            int_in(0u32, u32::MAX)("-5"),
            Err("must be an integer from 0 to 2^32-1".into())
        );
        assert_eq!(
            usize_in(1, 100_000)("100001"),
            Err("must be an integer from 1 to 100000".into())
        );
        assert_eq!(usize_in(1, 100_000)("7"), Ok(7));
    }

    #[test]
    fn reals_refuse_the_open_ends_and_non_finite_values() {
        let p = real_between(0.0, 0.5);
        for bad in ["0", "0.5", "-1", "nan", "inf", "x"] {
            assert!(
                p(bad)
                    .unwrap_err()
                    .contains("greater than 0 and less than 0.5"),
                "{bad}"
            );
        }
        assert_eq!(p("0.001"), Ok(0.001));
    }
}
