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

/// The table of every row, grouped, at most 100 columns wide: a "what"
/// column (kernel and size) that wraps onto its own line when long, then the
/// median time, the rate and the same-run ratio (on the next line, after
/// `=`, when the row would pass 100 columns).
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    const WHAT: usize = 48;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<WHAT$}{:>11}{:>11} {:<11}ratio (same run)",
        "kernel, size", "median", "rate", "unit"
    );
    let mut group = "";
    for r in rows {
        if r.group != group {
            group = r.group;
            let _ = writeln!(s, "{group}");
        }
        let median = if r.time.median_s.is_finite() {
            format!("{:.3} ms", r.time.median_s * 1e3)
        } else {
            "-".into()
        };
        let what = format!("  {}, {}", r.name, r.size);
        let numbers = format!("{median:>11}{:>11.2} {:<11}", r.rate, r.unit);
        let ratio = match (&r.ratio, &r.ratio_to) {
            (Some(x), Some(to)) => format!("{x:.2}x {to}"),
            _ => String::new(),
        };
        if what.len() > WHAT {
            let _ = writeln!(s, "{what}");
            let _ = write!(s, "{:WHAT$}{numbers}", "");
        } else {
            let _ = write!(s, "{what:<WHAT$}{numbers}");
        }
        if WHAT + numbers.len() + ratio.len() > 100 {
            let _ = write!(s, "\n{:WHAT$}= {ratio}", "");
        } else {
            let _ = write!(s, "{ratio}");
        }
        let _ = writeln!(s);
    }
    s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}
