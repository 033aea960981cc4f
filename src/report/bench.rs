//! The benchmark table, and the sizes its rows name.

use crate::app::bench::Row;

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

/// Two lines per GEMM shape class the run used (the `tuning.gemm` JSON of
/// [`crate::gpu::tune::Choice`]s): the variant, how it was chosen and its
/// speed; then every other candidate's speed.
pub fn gemm_choices(choices: &serde_json::Value) -> Vec<String> {
    let Some(list) = choices.as_array() else {
        return Vec::new();
    };
    list.iter()
        .flat_map(|c| {
            let mut line = format!(
                "GEMM {}: {} ({}",
                c["shape"].as_str().unwrap_or("?"),
                c["variant"].as_str().unwrap_or("?"),
                c["source"].as_str().unwrap_or("?")
            );
            if let (Some(g), Some(t)) = (c["gflops"].as_f64(), c["timed"].as_array()) {
                let dims: Vec<String> = t.iter().map(|d| d.to_string()).collect();
                line.push_str(&format!(", {g:.2} GFLOP/s at {}", dims.join("x")));
            }
            line.push(')');
            let chosen = c["variant"].as_str().unwrap_or("?");
            std::iter::once(line).chain(others(&c["candidates"], chosen, 2))
        })
        .collect()
}

/// Widest line of the candidate lists: the bench indents them by 8, so
/// they stay within its 100 columns.
const CHOICE_WIDTH: usize = 92;

/// `  others: name rate, ...` for every candidate but `chosen`, wrapped at
/// [`CHOICE_WIDTH`] columns (continuation lines indented under the first).
fn others(candidates: &serde_json::Value, chosen: &str, decimals: usize) -> Vec<String> {
    let items: Vec<String> = candidates
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["variant"].as_str() != Some(chosen))
        .map(|o| {
            let name = o["variant"].as_str().unwrap_or("?");
            match o["gflops"].as_f64() {
                Some(g) => format!("{name} {g:.decimals$}"),
                None => format!("{name} rejected"),
            }
        })
        .collect();
    let mut lines = Vec::new();
    let mut line = String::from("  others:");
    for (i, item) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { "," } else { "" };
        if line.len() + 1 + item.len() + sep.len() > CHOICE_WIDTH && line.trim() != "others:" {
            lines.push(line);
            line = " ".repeat("  others:".len());
        }
        line.push(' ');
        line.push_str(item);
        line.push_str(sep);
    }
    if !items.is_empty() {
        lines.push(line);
    }
    lines
}

/// One line per generation kernel (with a second listing the other
/// candidates) from the JSON of [`crate::gpu::gen_tune::GenChoice`]s.
pub fn generation_choices(choices: &serde_json::Value) -> Vec<String> {
    let Some(list) = choices.as_array() else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for c in list {
        let chosen = c["variant"].as_str().unwrap_or("?");
        let mut line = format!(
            "generate {}: {chosen} ({}",
            c["kernel"].as_str().unwrap_or("?"),
            c["source"].as_str().unwrap_or("?")
        );
        if let (Some(g), Some(n)) = (c["gsamples"].as_f64(), c["timed"].as_u64()) {
            line.push_str(&format!(", {g:.3} Gsamples/s at {n} elements"));
        }
        line.push(')');
        lines.push(line);
        lines.extend(others(&c["candidates"], chosen, 3));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_lists_wrap_within_the_bench_width_and_list_every_other() {
        let candidates: Vec<serde_json::Value> = (0..16)
            .map(|i| serde_json::json!({"variant": format!("vec4-wg{}-emulated", 64 << (i % 4)), "gflops": 0.25 + f64::from(i)}))
            .chain([serde_json::json!({"variant": "odd", "gflops": null, "rejected": "wrong"})])
            .collect();
        let c = serde_json::json!([{"kernel": "normal", "variant": "chosen", "source": "tuned",
            "gsamples": 0.5, "timed": 4194304, "candidates": candidates}]);
        let lines = generation_choices(&c);
        assert_eq!(
            lines[0],
            "generate normal: chosen (tuned, 0.500 Gsamples/s at 4194304 elements)"
        );
        assert!(lines.len() > 3, "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= CHOICE_WIDTH), "{lines:?}");
        assert!(lines[1].starts_with("  others: vec4-wg64-emulated 0.250,"));
        assert!(lines[2..].iter().all(|l| l.starts_with("          ")));
        let all = lines[1..].join(" ");
        assert_eq!(all.matches("-emulated ").count(), 16);
        assert!(all.ends_with("odd rejected"));
    }
}
