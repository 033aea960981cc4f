//! The benchmark table, and the sizes its rows name.

use crate::app::bench::{Row, Tuning};
use crate::gpu::gen_tune::GenChoice;
use crate::gpu::tune::Choice;
use crate::gpu::tune_cache::{Entry, Measured, TuneKey, Unit, Variant};

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

/// A choice's line, `<what>: <variant> (<source>[, <rate> <unit> at
/// <timed>])`, then every other candidate. One format for the run's choices
/// and the cache's entries.
fn choice_lines(
    what: &str,
    chosen: Variant,
    source: impl std::fmt::Display,
    rate: Option<(f64, Unit, String)>,
    candidates: &[Measured],
) -> Vec<String> {
    let decimals = |u: Unit| match u {
        Unit::GflopPerS => 2,
        Unit::GsamplesPerS => 3,
    };
    let mut line = format!("{what}: {chosen} ({source}");
    if let Some((r, unit, timed)) = &rate {
        let d = decimals(*unit);
        let unit = serde_json::to_value(unit)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        line.push_str(&format!(", {r:.d$} {unit} at {timed}"));
    }
    line.push(')');
    let d = rate.as_ref().map_or(2, |(_, u, _)| decimals(*u));
    std::iter::once(line)
        .chain(others(candidates, chosen, d))
        .collect()
}

fn gemm_timed(t: [u32; 3]) -> String {
    format!("{}x{}x{}", t[0], t[1], t[2])
}

fn generation_timed(n: u64) -> String {
    format!("{n} elements")
}

/// Two lines per GEMM shape class the run used: the variant, how it was
/// chosen and its speed; then every other candidate's speed.
pub(crate) fn gemm_choices(choices: &[Choice]) -> Vec<String> {
    choices
        .iter()
        .flat_map(|c| {
            choice_lines(
                &format!("GEMM {}", c.shape),
                Variant::Gemm(c.variant),
                c.source,
                c.gflops
                    .zip(c.timed)
                    .map(|(g, t)| (g, Unit::GflopPerS, gemm_timed(t))),
                &c.candidates,
            )
        })
        .collect()
}

/// Widest line of the candidate lists: the bench indents them by 8, so
/// they stay within its 100 columns.
const CHOICE_WIDTH: usize = 92;

/// `  others: name rate, ...` for every candidate but `chosen`, wrapped at
/// [`CHOICE_WIDTH`] columns (continuation lines indented under the first).
fn others(candidates: &[Measured], chosen: Variant, decimals: usize) -> Vec<String> {
    let items: Vec<String> = candidates
        .iter()
        .filter(|o| o.variant != chosen)
        .map(|o| match o.rate {
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
    choices
        .iter()
        .flat_map(|c| {
            choice_lines(
                &format!("generate {}", c.kernel),
                Variant::Generate(c.setting),
                c.source,
                c.gsamples
                    .zip(c.timed)
                    .map(|(g, n)| (g, Unit::GsamplesPerS, generation_timed(n))),
                &c.candidates,
            )
        })
        .collect()
}

/// The tuning cache's entries of one adapter, as written: generation
/// kernels first (`(no int64)` marks those tuned with native int64 off),
/// then GEMM shape classes.
pub(crate) fn cached_lines(entries: &[Entry]) -> Vec<String> {
    let (mut generation, mut gemm) = (Vec::new(), Vec::new());
    for e in entries {
        let (what, timed, out) = match e.key {
            TuneKey::Generate { .. } => (
                e.key.to_string(),
                generation_timed(u64::from(e.timed[0])),
                &mut generation,
            ),
            TuneKey::Gemm(_) => (format!("GEMM {}", e.key), gemm_timed(e.timed), &mut gemm),
        };
        out.extend(choice_lines(
            &what,
            e.variant,
            "cached",
            Some((e.rate, e.unit, timed)),
            &e.candidates,
        ));
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
        use crate::gpu::shaders::{MulHi, Store};
        use crate::gpu::tune_cache::GenSetting;
        let setting = |store, workgroup_size, mulhi| GenSetting {
            store,
            workgroup_size,
            mulhi,
        };
        // 16 emulated candidates (4 sizes, each 4 times: the list is not
        // deduplicated), one rejected int64 one, and the chosen one.
        let chosen = setting(Store::Vec4, 64, MulHi::Int64);
        let candidates: Vec<Measured> = (0..16)
            .map(|i| Measured {
                variant: Variant::Generate(setting(Store::Vec4, 64 << (i % 4), MulHi::Emulated)),
                rate: Some(0.25 + f64::from(i)),
                rejected: None,
            })
            .chain([
                Measured {
                    variant: Variant::Generate(setting(Store::Scalar, 32, MulHi::Int64)),
                    rate: None,
                    rejected: Some("wrong".into()),
                },
                Measured {
                    variant: Variant::Generate(chosen),
                    rate: Some(0.5),
                    rejected: None,
                },
            ])
            .collect();
        let c = GenChoice {
            kernel: "normal",
            setting: chosen,
            source: crate::gpu::tune::Source::Tuned,
            gsamples: Some(0.5),
            timed: Some(4194304),
            candidates,
        };
        let lines = generation_choices(&[c]);
        assert_eq!(
            lines[0],
            "generate normal: vec4-wg64-int64 (tuned, 0.500 Gsamples/s at 4194304 elements)"
        );
        assert!(lines.len() > 3, "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= CHOICE_WIDTH), "{lines:?}");
        assert!(lines[1].starts_with("  others: vec4-wg64-emulated 0.250,"));
        assert!(lines[2..].iter().all(|l| l.starts_with("          ")));
        let all = lines[1..].join(" ");
        assert_eq!(all.matches("-emulated ").count(), 16);
        assert!(all.ends_with("scalar-wg32-int64 rejected"), "{all}");
        // The chosen one is not among the others.
        assert!(!all.contains("vec4-wg64-int64"), "{all}");
    }

    #[test]
    fn cached_entries_read_as_the_runs_choices_do_generation_first() {
        use crate::gpu::gemm::{GemmForm, GemmVariant};
        use crate::gpu::shaders::{MulHi, Store};
        use crate::gpu::tune::ShapeClass;
        use crate::gpu::tune_cache::GenSetting;
        use crate::rng::{dist::Dist, request::Kernel};
        let gemm = |v| Variant::Gemm(v);
        let chosen = GenSetting {
            store: Store::Scalar,
            workgroup_size: 256,
            mulhi: MulHi::Emulated,
        };
        let entries = [
            Entry {
                device: "d".into(),
                key: TuneKey::Gemm(ShapeClass::of(GemmForm::Nt, 128, 256, 256)),
                timed: [128, 256, 256],
                variant: gemm(GemmVariant::Direct),
                rate: 12.345,
                unit: Unit::GflopPerS,
                candidates: vec![
                    Measured {
                        variant: gemm(GemmVariant::Direct),
                        rate: Some(12.345),
                        rejected: None,
                    },
                    Measured {
                        variant: gemm(GemmVariant::Tiled64),
                        rate: Some(10.0),
                        rejected: None,
                    },
                ],
                unix_time: 0,
            },
            Entry {
                device: "d".into(),
                key: TuneKey::Generate {
                    kernel: Kernel::Dist(Dist::Normal),
                    int64: false,
                },
                timed: [4096, 0, 0],
                variant: Variant::Generate(chosen),
                rate: 0.5,
                unit: Unit::GsamplesPerS,
                candidates: vec![Measured {
                    variant: Variant::Generate(chosen),
                    rate: Some(0.5),
                    rejected: None,
                }],
                unix_time: 0,
            },
        ];
        assert_eq!(
            cached_lines(&entries),
            [
                "generate normal (no int64): scalar-wg256-emulated (cached, 0.500 Gsamples/s at \
                 4096 elements)"
                    .to_string(),
                "GEMM nt m128 n256 k256: direct (cached, 12.35 GFLOP/s at 128x256x256)".into(),
                "  others: tiled64 10.00".into(),
            ]
        );
    }
}
