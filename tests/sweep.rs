//! The multiplier sweep: the critical multiplier found from the measured
//! gradients must fall inside the finite-size interval derived from the
//! theory (see `net::critical::critical_interval`: where |ln chi_1| <= 4 sigma of the
//! measured per-layer gain), and the theory must put it at sigma_w^2 = 2 for
//! ReLU and 1 for tanh without bias.

mod common;

use deepinit::act::Activation;
use deepinit::app::sweep::{self, SweepConfig};
use deepinit::backend::{Backend, Gpu};
use deepinit::init::scheme::Scheme;

fn config(act: Activation, grid: &str, bias_std: f64) -> SweepConfig {
    SweepConfig {
        act,
        scheme: Scheme::LECUN,
        multipliers: sweep::parse_grid(grid).expect("grid"),
        depth: 30,
        width: 256,
        batch: 32,
        bias_std,
        seed: 4,
        verify: false,
    }
}

fn run(cfg: &SweepConfig) -> sweep::SweepReport {
    // On the GPU where there is one (the path under test), else the CPU backend.
    match common::gpu("sweep (GPU half)") {
        Some(ctx) => {
            let dev = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
            sweep::run(&dev, cfg, |_, _, _| {}).expect("sweep")
        }
        None => sweep::run(&Backend::Cpu, cfg, |_, _, _| {}).expect("sweep"),
    }
}

#[test]
fn relu_critical_multiplier_is_he() {
    let r = run(&config(Activation::Relu, "1.5:2.5:0.125", 0.0));
    let t = r.critical_theory.expect("in range");
    assert!((t - 2.0).abs() < 1e-9, "theory {t}");
    let m = r.critical_measured.expect("measured crossing");
    let (lo, hi) = r.critical_interval.expect("interval");
    assert_eq!(
        r.critical_match,
        Some(true),
        "measured {m} outside [{lo}, {hi}]"
    );
    // The interval itself is tight for ReLU: +-4 sigma of ln(m / 2).
    assert!(lo > 1.6 && hi < 2.4, "[{lo}, {hi}]");
    assert!(r.points.iter().all(|p| p.run.verdict.theory_match));
    eprintln!("relu: measured {m:.4}, interval [{lo:.3}, {hi:.3}]");
}

#[test]
fn tanh_critical_multiplier_is_one_without_bias_and_above_one_with_bias() {
    let r = run(&config(Activation::Tanh, "0.5:2:0.125", 0.0));
    let t = r.critical_theory.expect("in range");
    assert!((t - 1.0).abs() < 1e-6, "theory {t}");
    assert_eq!(
        r.critical_match,
        Some(true),
        "{:?} vs {:?}",
        r.critical_measured,
        r.critical_interval
    );
    let (lo, _) = r.critical_interval.expect("interval");
    assert!(lo > 0.8, "{lo}");
    // Ordered side: the deep per-layer gradient gain tracks chi_1 = sigma_w^2.
    let p = &r.points[0];
    assert!(
        (p.grad_rate / p.theory_chi1 - 1.0).abs() < 0.1,
        "{} vs {}",
        p.grad_rate,
        p.theory_chi1
    );

    // With a bias the fixed point moves off 0 and the edge of chaos to sigma_w^2 > 1.
    let rb = run(&config(Activation::Tanh, "0.5:3:0.125", 0.3));
    let tb = rb.critical_theory.expect("in range");
    assert!(tb > 1.05 && tb < 2.5, "theory with bias {tb}");
    assert_eq!(
        rb.critical_match,
        Some(true),
        "{:?} vs {:?}",
        rb.critical_measured,
        rb.critical_interval
    );
}

#[test]
fn outputs_are_written_and_valid() {
    let cfg = SweepConfig {
        depth: 6,
        width: 48,
        batch: 8,
        ..config(Activation::Tanh, "0.5,1,2", 0.0)
    };
    let r = sweep::run(&Backend::Cpu, &cfg, |_, _, _| {}).expect("sweep");
    let hist = sweep::histograms(&cfg, &r).expect("histograms");
    assert_eq!(hist.len(), 9, "3 multipliers x 3 layers");
    for h in &hist {
        // Every value lands exactly once: a bin, a zero, beyond the axis, non-finite.
        assert_eq!(h.total(), 8 * 48);
        // tanh: the axis is its whole range, so nothing is beyond it.
        assert_eq!((h.lo, h.hi, h.below, h.above), (-1.0, 1.0, 0, 0));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        deepinit::io::output::OutputDir::check(dir.path(), &sweep::OUTPUT_FILES, false).unwrap();
    let files = deepinit::report::sweep::write_outputs(&out, &r, &hist).expect("write");
    for f in &files {
        let bytes = std::fs::read(f).expect("written");
        match f.extension().and_then(|e| e.to_str()) {
            Some("png") => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n"),
            Some("svg") => {
                let svg = String::from_utf8(bytes).expect("utf8");
                deepinit::report::plot::svg_to_png(&svg).expect("the SVG parses and renders");
            }
            Some("json") => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                assert_eq!(v["points"].as_array().expect("points").len(), 3);
                assert!(v["critical_theory"].as_f64().is_some());
            }
            other => panic!("unexpected file {other:?}"),
        }
    }
}

#[test]
fn grids_parse_and_bad_grids_are_rejected() {
    assert_eq!(sweep::parse_grid("0.25:4:0.05").expect("grid").len(), 76);
    assert_eq!(
        sweep::parse_grid("1,2,3.5").expect("list"),
        vec![1.0, 2.0, 3.5]
    );
    for bad in [
        "4:1:0.1",
        "1:2:0",
        "1:2",
        "a:b:c",
        "0,1",
        "-1,2",
        "2,1",
        "1:1e9:1e-6",
        "",
    ] {
        assert!(sweep::parse_grid(bad).is_err(), "{bad}");
    }
}
