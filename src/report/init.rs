//! `deepinit init`'s report: what was drawn, the sample against its target,
//! the CPU comparison and the verdict.

use crate::backend::DeviceKind;
use crate::init::scheme::InitSpec;
use crate::report::style::{thousands, Outcome, Styled};
use crate::tensor::Report;
use std::fmt::Write;

/// A number in 7 significant digits, fixed-point where that is readable.
fn num(v: f64) -> String {
    if v == 0.0 || (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.7}")
    } else {
        format!("{v:.6e}")
    }
}

/// `deepinit init`'s text report.
pub(crate) fn render(r: &Report, spec: &InitSpec) -> Styled {
    let mut s = Styled::new();
    render_header(&mut s, r, spec);
    render_statistics(&mut s, r, spec);
    render_cpu_check(&mut s, r);
    render_footer(&mut s, r, spec);
    s
}

/// What was drawn, on which device, with which target.
fn render_header(s: &mut Styled, r: &Report, spec: &InitSpec) {
    let t = &r.target;
    let rule = match (t.scale, t.mode) {
        (Some(scale), Some(mode)) => {
            format!("variance {} x {scale} / {}", r.multiplier, mode.name())
        }
        _ => format!("fixed std, variance multiplier {}", r.multiplier),
    };
    let block = match r.block {
        Some([[r0, r1], [c0, c1]]) => format!(", block rows {r0}:{r1} x cols {c0}:{c1}"),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "deepinit init: {} ({rule}), {}, shape {}{block} ({} elements)",
        r.scheme,
        r.dist.name(),
        spec.shape(),
        thousands(r.elements),
    );
    let _ = writeln!(s, "device: {}", r.device.describe());
    let _ = writeln!(
        s,
        "fans: in {}, out {}  ->  target std {}, variance {:.6e}; seed {}, tensor {}",
        t.fan_in,
        t.fan_out,
        num(t.std),
        t.variance,
        r.seed,
        r.tensor_id
    );
}

/// The sample against the target: mean, variance, support, kurtosis, KS.
fn render_statistics(s: &mut Styled, r: &Report, spec: &InitSpec) {
    let t = &r.target;
    let _ = writeln!(s);
    let m = &r.sample;
    let too_few = |what: &str| format!(" ({what}: {})", crate::tensor::TOO_FEW);
    let _ = writeln!(s, "{:<22}{:<15}{:<15}check", "", "target", "sample");
    let _ = write!(
        s,
        "{:<22}{:<15}{:<15}",
        "mean",
        "0",
        format!("{:+.3e}", m.mean)
    );
    match &r.mean_test {
        Some(t) => {
            let _ = write!(s, "z = {:+.3}, |z| <= {:.3}: ", t.z, t.critical);
            s.outcome(Outcome::of(t.pass), 0);
        }
        None => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("mean test"));
        }
    }
    let _ = writeln!(s);
    let _ = write!(
        s,
        "{:<22}{:<15}{:<15}",
        "variance",
        format!("{:.6e}", t.variance),
        format!("{:.6e}", m.variance)
    );
    match (&r.variance_ci, r.target_in_ci) {
        (Some(ci), Some(inside)) => {
            let _ = write!(
                s,
                "{:.1}% CI [{:.4e}, {:.4e}]: ",
                100.0 * ci.level,
                ci.lo,
                ci.hi,
            );
            s.outcome(Outcome::of(inside), 0);
            if !inside {
                let _ = write!(s, ", the target is outside");
            }
        }
        _ => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("variance interval"));
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<22}{:<15}{:<15}", "std", num(t.std), num(m.std));
    let support = spec.dist().max_abs_in_std() * t.std;
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<22} support +-{}",
        "min / max",
        "",
        format!("{} / {}", num(m.min), num(m.max)),
        num(support)
    );
    let _ = writeln!(
        s,
        "{:<22}{:<15}{:<15}",
        "excess kurtosis",
        format!("{:+.4}", m.expected_excess_kurtosis),
        format!("{:+.4}", m.excess_kurtosis)
    );
    let _ = write!(s, "{:<22}", format!("KS vs {} CDF", r.dist.name()));
    match &r.ks {
        Some(k) => {
            let _ = write!(
                s,
                "D = {:.6}, critical {:.6} (n = {}, alpha {}): ",
                k.d,
                k.critical,
                thousands(k.n),
                k.alpha,
            );
            s.outcome(Outcome::of(k.pass), 0);
        }
        None => {
            s.outcome(Outcome::NotRun, 0);
            let _ = write!(s, "{}", too_few("KS test"));
        }
    }
    let _ = writeln!(s);
}

/// The GPU against the CPU reference (or why there was no comparison).
fn render_cpu_check(s: &mut Styled, r: &Report) {
    match &r.cpu_check {
        Some(c) => {
            let _ = write!(
                s,
                "{:<22}raw bits: {} of {} words identical: ",
                "GPU vs CPU reference",
                thousands(c.bits_compared - c.bits_mismatched),
                thousands(c.bits_compared),
            );
            s.outcome(Outcome::of(c.bits_mismatched == 0), 0);
            let _ = write!(
                s,
                "\n{:<22}values: {} of {} bit-identical: ",
                "",
                thousands(c.values.compared - c.values.mismatched),
                thousands(c.values.compared),
            );
            s.outcome(Outcome::of(c.values.identical()), 0);
            let _ = writeln!(s);
        }
        None if r.device.kind == DeviceKind::Cpu => {
            let _ = write!(s, "{:<22}", "GPU vs CPU reference");
            s.outcome(Outcome::NotRun, 0);
            let _ = writeln!(s, ", the CPU backend is the reference itself");
        }
        None => {
            let _ = write!(s, "{:<22}", "GPU vs CPU reference");
            s.outcome(Outcome::NotRun, 0);
            let _ = writeln!(s, ", not compared (--no-verify)");
        }
    }
}

/// The file written, the time, and the verdict.
fn render_footer(s: &mut Styled, r: &Report, spec: &InitSpec) {
    let _ = writeln!(s);
    if let Some(p) = &r.out {
        let _ = writeln!(
            s,
            "wrote {} ({} bytes)",
            p.display(),
            thousands(4 * r.elements + crate::io::npy::header(&r.out_shape).len() as u64)
        );
    }
    let _ = writeln!(
        s,
        "time: {:.2} s (generation + streaming checks)",
        r.seconds
    );
    let _ = write!(s, "verdict: ");
    s.verdict(r.verdict.pass);
    if r.verdict.pass {
        if r.verdict.not_checked.is_empty() {
            let _ = writeln!(s);
        } else {
            let _ = writeln!(s, " (of the checks that ran; not checked:)");
            for n in &r.verdict.not_checked {
                let _ = writeln!(s, "  - {n}");
            }
        }
    } else {
        let _ = writeln!(s);
        for f in &r.verdict.failures {
            let _ = writeln!(s, "  - {f}");
        }
        if r.out.is_none() && spec.shape().numel() > 0 {
            let _ = writeln!(s, "  (no file was written)");
        }
    }
}
