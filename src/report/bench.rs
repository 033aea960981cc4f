//! The benchmark table, and the sizes its rows name.

use crate::app::bench::{Row, Tuning};
use crate::gpu::gen_tune::GenChoice;
use crate::gpu::tune::Choice;
use crate::gpu::tune_cache::{Entry, Measured, TuneKey};

/// The table of every row, grouped, at most 100 columns wide: a "what"
/// column (kernel and size) that wraps onto its own line when long, then the
/// median time, the rate and the same-run ratio (on the next line, after
/// `=`, when the row would pass 100 columns).
pub(crate) fn table(rows: &[Row]) -> String {
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

/// Two lines per GEMM shape class the run used: the variant, how it was
/// chosen and its speed; then every other candidate's speed.
pub(crate) fn gemm_choices(choices: &[Choice]) -> Vec<String> {
    choices
        .iter()
        .flat_map(|c| {
            let mut line = format!("GEMM {}: {} ({}", c.shape, c.variant, c.source);
            if let (Some(g), Some(t)) = (c.gflops, c.timed) {
                line.push_str(&format!(", {g:.2} GFLOP/s at {}x{}x{}", t[0], t[1], t[2]));
            }
            line.push(')');
            std::iter::once(line).chain(others(&c.candidates, c.variant, 2))
        })
        .collect()
}

/// Widest line of the candidate lists: the bench indents them by 8, so
/// they stay within its 100 columns.
const CHOICE_WIDTH: usize = 92;

/// `  others: name rate, ...` for every candidate but `chosen`, wrapped at
/// [`CHOICE_WIDTH`] columns (continuation lines indented under the first).
fn others(candidates: &[Measured], chosen: &str, decimals: usize) -> Vec<String> {
    let items: Vec<String> = candidates
        .iter()
        .filter(|o| o.variant != chosen)
        .map(|o| match o.gflops {
            Some(g) => format!("{} {g:.decimals$}", o.variant),
            None => format!("{} rejected", o.variant),
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

/// One line per generation kernel (with the other candidates after it).
pub(crate) fn generation_choices(choices: &[GenChoice]) -> Vec<String> {
    let mut lines = Vec::new();
    for c in choices {
        let mut line = format!("generate {}: {} ({}", c.kernel, c.variant, c.source);
        if let (Some(g), Some(n)) = (c.gsamples, c.timed) {
            line.push_str(&format!(", {g:.3} Gsamples/s at {n} elements"));
        }
        line.push(')');
        lines.push(line);
        lines.extend(others(&c.candidates, &c.variant, 3));
    }
    lines
}

/// The tuning cache's entries of one adapter, as written (not as
/// [`Choice`]s, which map a variant this build lacks to "?": a stale entry
/// shows what it names): generation kernels first, then GEMM shape classes.
pub(crate) fn cached_lines(entries: &[Entry]) -> Vec<String> {
    let (mut generation, mut gemm) = (Vec::new(), Vec::new());
    for e in entries {
        match e.key {
            TuneKey::Generate { .. } => {
                generation.push(format!(
                    "{}: {} (cached, {:.3} Gsamples/s at {} elements)",
                    e.key, e.variant, e.rate, e.timed[0]
                ));
                generation.extend(others(&e.candidates, &e.variant.to_string(), 3));
            }
            TuneKey::Gemm(_) => {
                gemm.push(format!(
                    "GEMM {}: {} (cached, {:.2} GFLOP/s at {}x{}x{})",
                    e.key, e.variant, e.rate, e.timed[0], e.timed[1], e.timed[2]
                ));
                gemm.extend(others(&e.candidates, &e.variant.to_string(), 2));
            }
        }
    }
    generation.into_iter().chain(gemm).collect()
}

/// The tuning section of the bench's text: every generation kernel's and
/// GEMM shape class's choice.
pub(crate) fn tuning_lines(t: &Tuning) -> Vec<String> {
    generation_choices(&t.generation)
        .into_iter()
        .chain(gemm_choices(&t.gemm))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_lists_wrap_within_the_bench_width_and_list_every_other() {
        let candidates: Vec<Measured> = (0..16)
            .map(|i| Measured {
                variant: format!("vec4-wg{}-emulated", 64 << (i % 4)),
                gflops: Some(0.25 + f64::from(i)),
                rejected: None,
            })
            .chain([Measured {
                variant: "odd".into(),
                gflops: None,
                rejected: Some("wrong".into()),
            }])
            .collect();
        let c = GenChoice {
            kernel: "normal",
            variant: "chosen".into(),
            store: crate::gpu::shaders::Store::Vec4,
            workgroup_size: 64,
            mulhi: None,
            source: crate::gpu::tune::Source::Tuned,
            gsamples: Some(0.5),
            timed: Some(4194304),
            candidates,
        };
        let lines = generation_choices(&[c]);
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
