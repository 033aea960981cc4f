//! The benchmark table, and the sizes its rows name.

use crate::app::bench::Row;

/// `n` as `16M` when it is a whole number of 2^20, else in full.
pub fn human(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else {
        n.to_string()
    }
}

/// The table of every row, with each ratio's reference named.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<11}{:<44}{:<46}{:>11}{:>12} {:<11}ratio (same run)",
        "group", "kernel", "size", "median", "rate", "unit"
    );
    for r in rows {
        let ratio = match (&r.ratio, &r.ratio_to) {
            (Some(x), Some(to)) => format!("{x:.2}x {to}"),
            _ => String::new(),
        };
        let median = if r.time.median_s.is_finite() {
            format!("{:.3}ms", r.time.median_s * 1e3)
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{:<11}{:<44}{:<46}{:>11}{:>12.2} {:<11}{}",
            r.group, r.name, r.size, median, r.rate, r.unit, ratio
        );
    }
    s
}
