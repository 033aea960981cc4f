//! The `deepinit` binary end to end: output files, JSON, the numpy
//! re-implementation of the RNG mapping, and bad input (clear message,
//! non-zero exit, no panic, no file).

mod common;

use common::{run as deepinit, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn writes_a_numpy_file_atomically_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("w.npy");
    let o = out.to_str().expect("utf8 path");
    let r = deepinit(&[
        "init",
        "--backend",
        "cpu",
        "--shape",
        "64x300",
        "--seed",
        "3",
        "--out",
        o,
        "--json",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v = json(&r);
    assert_eq!(v["verdict"]["pass"], true);
    assert_eq!(v["elements"], 19_200);
    assert_eq!(v["target"]["fan_in"], 300);
    let bytes = std::fs::read(&out).expect("file written");
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(bytes.len(), header_len + 4 * 19_200);
    assert!(String::from_utf8_lossy(&bytes[10..header_len]).contains("'shape': (64, 300)"));
    // Element 0 as written equals the CPU reference's element 0.
    let mut want = [0f32; 1];
    let std = v["target"]["std"].as_f64().expect("std");
    deepinit::rng::cpu::fill(
        deepinit::Dist::Normal,
        deepinit::Dist::Normal.kernel_scale(std),
        3,
        0,
        0,
        &mut want,
    );
    assert_eq!(&bytes[header_len..header_len + 4], &want[0].to_le_bytes());

    // A second run without --force refuses and leaves the file untouched.
    let r2 = deepinit(&["init", "--backend", "cpu", "--shape", "8x8", "--out", o]);
    assert_eq!(r2.status.code(), Some(1));
    assert!(
        stderr(&r2).contains("already exists; pass --force"),
        "{}",
        stderr(&r2)
    );
    assert_eq!(std::fs::read(&out).expect("still there"), bytes);
    let r3 = deepinit(&[
        "init",
        "--backend",
        "cpu",
        "--shape",
        "8x8",
        "--out",
        o,
        "--force",
    ]);
    assert!(r3.status.success(), "{}", stderr(&r3));
    assert_eq!(
        std::fs::read(&out).expect("rewritten").len(),
        header_len + 4 * 64
    );
    assert_eq!(
        files_in(dir.path()).len(),
        1,
        "no temporary files left behind"
    );
}

fn numpy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn numpy_reimplementation_of_the_documented_mapping_agrees() {
    if !numpy_available() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide python3 with numpy (.ci/run installs it)"
        );
        eprintln!("SKIPPED numpy_reimplementation_of_the_documented_mapping_agrees: no python3 with numpy");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/numpy_mapping.py");
    for (dist, seed, tensor, shape, scheme) in [
        ("normal", "0", "0", "128x257", "he"),
        ("normal", "18446744073709551557", "7", "5x3x3", "lecun"),
        ("uniform", "12345", "2", "100x101", "xavier"),
        ("truncated", "99", "4294967295", "33x65", "naive:0.5"),
    ] {
        let out = dir.path().join(format!("{dist}-{seed}.npy"));
        let o = out.to_str().expect("utf8");
        let r = deepinit(&[
            "init",
            "--backend",
            "cpu",
            "--dist",
            dist,
            "--seed",
            seed,
            "--tensor-id",
            tensor,
            "--shape",
            shape,
            "--scheme",
            scheme,
            "--out",
            o,
            "--json",
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        let std = json(&r)["target"]["std"].as_f64().expect("std");
        let check = Command::new("python3")
            .arg(&script)
            .args([o, dist, &format!("{std:?}"), seed, tensor])
            .output()
            .expect("python3 runs");
        assert!(
            check.status.success(),
            "{dist}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn gpu_file_equals_cpu_file_for_every_distribution() {
    if common::gpu("gpu_file_equals_cpu_file_for_every_distribution").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for dist in ["uniform", "normal", "truncated"] {
        let g = dir.path().join(format!("g-{dist}.npy"));
        let c = dir.path().join(format!("c-{dist}.npy"));
        for (backend, path) in [("gpu", &g), ("cpu", &c)] {
            let r = deepinit(&[
                "init",
                "--backend",
                backend,
                "--dist",
                dist,
                "--shape",
                "300x301",
                "--seed",
                "5",
                "--out",
                path.to_str().expect("utf8"),
            ]);
            assert!(r.status.success(), "{backend}: {}", stderr(&r));
        }
        let (gb, cb) = (
            std::fs::read(&g).expect("gpu file"),
            std::fs::read(&c).expect("cpu file"),
        );
        assert_eq!(gb.len(), cb.len());
        assert!(gb == cb, "{dist}: the GPU and CPU files differ");
    }
}

#[test]
fn bad_input_gives_a_clear_error_and_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bad.npy");
    let o = out.to_str().expect("utf8");
    let cases: &[(&[&str], &str)] = &[
        (&["--shape", "0x5"], "dimension 0 is 0"),
        (
            &["--shape", "4294967296x4294967296"],
            "more than 2^64 elements",
        ),
        (&["--shape", "12xabc"], "not a positive integer"),
        (&["--shape", ""], "empty shape"),
        (&["--scheme", "naive:nan"], "naive standard deviation"),
        (
            &["--scheme", "naive:-1"],
            "invalid naive standard deviation '-1': not a finite number greater than 0",
        ),
        (&["--scheme", "naive:inf"], "naive standard deviation"),
        (&["--multiplier", "nan"], "invalid multiplier"),
        (&["--multiplier", "-2"], "invalid multiplier"),
        (&["--multiplier", "inf"], "invalid multiplier"),
        (
            &["--scheme", "hee"],
            "invalid scheme 'hee': unknown scheme (did you mean 'he'?)",
        ),
        (&["--gain", "-1"], "invalid gain"),
        (&["--gain", "swish"], "invalid gain"),
        (
            &["--scheme", "naive:0.1", "--gain", "relu"],
            "do not apply to naive",
        ),
        (&["--shape", "30x3x3x3", "--groups", "4"], "does not divide"),
        (&["--workgroup-size", "100"], "workgroup size"),
        (&["--shape", "1000000x1000000x1000"], "too large"),
    ];
    for (args, msg) in cases {
        let mut full = vec!["init", "--backend", "cpu", "--out", o];
        full.extend_from_slice(args);
        let r = deepinit(&full);
        let e = stderr(&r);
        // A value its flag's parser refuses is a usage error (2); one
        // refused when the values are combined, an input error (1).
        let code = if e.starts_with("error: invalid value '") {
            2
        } else {
            1
        };
        assert_eq!(r.status.code(), Some(code), "{args:?}: {e}");
        assert!(e.contains(msg), "{args:?}: expected '{msg}' in: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
        assert!(files_in(dir.path()).is_empty(), "{args:?} left a file");
    }
    // Without --out, a tensor beyond host memory is refused up front.
    let r = deepinit(&["init", "--backend", "cpu", "--shape", "1000000x1000000"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr(&r).contains("host memory; pass --out"),
        "{}",
        stderr(&r)
    );
    // Choices are listed: a bad one is a usage error (exit 2) naming them.
    for (flag, bad, listed) in [
        ("--mode", "fan_sideways", "fan_in, fan_out, fan_avg"),
        ("--dist", "cauchy", "normal, truncated, uniform"),
    ] {
        let r = deepinit(&["init", "--backend", "cpu", "--out", o, flag, bad]);
        assert_eq!(r.status.code(), Some(2), "{flag}");
        assert!(stderr(&r).contains(listed), "{}", stderr(&r));
        assert!(files_in(dir.path()).is_empty());
    }
    // Unknown subcommand / flag: clap's usage error, exit 2.
    assert_eq!(deepinit(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        deepinit(&["init", "--backend", "tpu"]).status.code(),
        Some(2)
    );
}

#[test]
fn device_limits_are_enforced_with_a_message() {
    let Some(ctx) = common::gpu("device_limits_are_enforced_with_a_message") else {
        return;
    };
    let too_big = (ctx.limits().max_storage_buffer_binding_size / 4 + 1).min(1 << 30) + 1;
    let r = deepinit(&[
        "init",
        "--backend",
        "gpu",
        "--shape",
        "64x64",
        "--chunk-elems",
        &too_big.to_string(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr(&r).contains("chunk (elements in one storage binding) is too large"),
        "{}",
        stderr(&r)
    );
}

#[test]
fn adapter_selection_and_cpu_fallback() {
    // A name that matches nothing: --backend gpu fails with the advice, auto falls back.
    let r = deepinit(&[
        "init",
        "--backend",
        "gpu",
        "--adapter",
        "no-such-adapter-xyz",
        "--shape",
        "16x16",
    ]);
    assert_eq!(r.status.code(), Some(1));
    let e = stderr(&r);
    assert!(
        e.contains("no GPU adapter found matching name 'no-such-adapter-xyz'"),
        "{e}"
    );
    // The advice fits what exists: name a listed adapter, or install a driver.
    let advice = if e.contains("available:") {
        "deepinit adapters"
    } else {
        "mesa-vulkan-drivers"
    };
    assert!(e.contains(advice) && e.contains("--backend cpu"), "{e}");
    // An adapter the user named must exist, even under --backend auto.
    let r = deepinit(&[
        "init",
        "--adapter",
        "no-such-adapter-xyz",
        "--shape",
        "16x16",
        "--json",
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("no-such-adapter-xyz"), "{}", stderr(&r));
    // Without a name, auto falls back to the CPU where no adapter exists
    // (no DX12 adapters on Linux).
    let r = common::bin()
        .args(["init", "--shape", "16x16", "--json"])
        .env("WGPU_BACKEND", "dx12")
        .output()
        .expect("runs");
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("falling back to the CPU backend"));
    assert_eq!(json(&r)["device"]["kind"], "cpu");
    // A misspelt WGPU_BACKEND is named, not silently ignored.
    let r = common::bin()
        .args(["init", "--shape", "16x16"])
        .env("WGPU_BACKEND", "vulcan")
        .output()
        .expect("runs");
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("'vulcan'"), "{}", stderr(&r));

    let r = deepinit(&["adapters", "--json"]);
    assert!(r.status.success());
    let v = json(&r);
    if let Some(ctx) = common::gpu("adapter_selection_and_cpu_fallback (listing)") {
        let list = v["adapters"].as_array().expect("list");
        let chosen = v["chosen"].as_u64().expect("an adapter is chosen") as usize;
        assert_eq!(list[chosen]["name"], ctx.adapter().name.as_str());
        assert_eq!(
            list[chosen]["max_storage_buffer_binding_size"],
            ctx.limits().max_storage_buffer_binding_size
        );
    }
}

/// A normal run prints nothing that looks like an error: Mesa's device-select
/// layer, which makes libwayland print "error: XDG_RUNTIME_DIR is invalid"
/// on machines without a display, is switched off by the binary itself.
#[test]
fn a_normal_run_prints_no_error_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = common::bin()
        .current_dir(dir.path())
        .args(["init", "--shape", "64x64", "--json"])
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .env_remove("DRI_PRIME")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("runs");
    let err = stderr(&r);
    assert!(r.status.success(), "{err}");
    assert!(
        !err.lines().any(|l| l.to_lowercase().contains("error")),
        "stderr of a passing run: {err}"
    );
}

#[test]
fn no_arguments_runs_the_demo_and_writes_its_report_and_plot() {
    // The README's main command: the lecture as an experiment, in a scratch directory.
    let dir = tempfile::tempdir().expect("tempdir");
    let r = common::bin()
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{text}{}", stderr(&r));
    for scheme in ["he", "xavier", "lecun", "naive:0.01", "naive:1.0"] {
        assert!(
            text.lines().any(|l| l.starts_with(scheme)),
            "no row for {scheme}: {text}"
        );
    }
    assert!(
        text.contains("relu: width 256, depth 50") && text.contains("tanh: width 256, depth 50"),
        "{text}"
    );
    let out = dir.path().join("deepinit-out");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 10);
    for run in runs {
        for key in [
            "scheme",
            "activation",
            "width",
            "depth",
            "batch",
            "layers",
            "verdict",
        ] {
            assert!(!run[key].is_null(), "run lacks {key}");
        }
        let layer = &run["layers"][0];
        for key in [
            "layer",
            "pre_mean",
            "pre_var",
            "post_mean",
            "post_var",
            "grad_var",
            "theory_pre_var",
            "dead_frac",
            "saturated_frac",
        ] {
            assert!(layer.get(key).is_some(), "layer lacks {key}");
        }
        assert_eq!(run["layers"].as_array().expect("layers").len(), 50);
        assert_eq!(run["verdict"]["cpu_match"], true, "{}", run["verdict"]);
        assert_eq!(run["verdict"]["theory_match"], true, "{}", run["verdict"]);
    }
    // He / relu is stable; LeCun / relu and naive:0.01 vanish; naive:1.0 / relu overflows.
    let fate = |s: &str, a: &str| {
        text.lines()
            .skip_while(|l| !l.starts_with(&format!("{a}:")))
            .find(|l| l.starts_with(&format!("{s} ")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(
        fate("he", "relu").contains("stable"),
        "{}",
        fate("he", "relu")
    );
    assert!(fate("lecun", "relu").contains("vanishes"));
    assert!(fate("naive:1.0", "relu").contains("overflows"));
    let png = std::fs::read(out.join("variance.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(out.join("variance.svg")).expect("svg");
    assert!(
        deepinit::report::plot::svg_to_png(&svg).is_ok(),
        "the SVG parses"
    );
}

#[test]
fn forward_writes_json_and_rejects_bad_networks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("f.json");
    let r = deepinit(&[
        "forward",
        "--backend",
        "cpu",
        "--scheme",
        "lecun",
        "--act",
        "tanh",
        "--width",
        "32",
        "--depth",
        "4",
        "--batch",
        "8",
        "--bias-std",
        "0.05",
        "--json",
        json.to_str().expect("utf8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("JSON");
    assert_eq!(v["runs"][0]["depth"], 4);
    assert_eq!(v["runs"][0]["bias_std"], 0.05);
    // Inputs from a .npy file: the batch comes from the file; the run is
    // verified against the CPU reference on the same inputs.
    let x = dir.path().join("x.npy");
    let dest = deepinit::io::output::Destination::check(&x, false).expect("destination");
    let mut w = deepinit::io::npy::NpyWriter::create(&dest, &[12, 40]).expect("create");
    let vals: Vec<f32> = (0..480)
        .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
        .collect();
    w.write(&vals).expect("write");
    w.finish().expect("finish");
    let xs = x.to_str().expect("utf8");
    let mut args = vec![
        "forward",
        "--input",
        xs,
        "--width",
        "40",
        "--depth",
        "3",
        "--act",
        "gelu",
        "--json",
        json.to_str().expect("utf8"),
    ];
    let r = deepinit(&args);
    // The report from before is not replaced without --force.
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("--force"), "{}", stderr(&r));
    args.push("--force");
    let r = deepinit(&args);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("JSON");
    assert_eq!(v["runs"][0]["batch"], 12);
    assert_eq!(v["runs"][0]["verdict"]["cpu_match"], true);
    let r = deepinit(&[
        "forward",
        "--backend",
        "cpu",
        "--input",
        xs,
        "--widths",
        "41,8",
    ]);
    assert!(
        stderr(&r).contains("the file has width 40"),
        "{}",
        stderr(&r)
    );
    // Exit 2: refused by the flag's parser (its range); 1: by the pass.
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--input", "/nonexistent/x.npy"], 1, "/nonexistent/x.npy"),
        (
            &["--depth", "0"],
            2,
            "'--depth <DEPTH>': must be an integer from 1",
        ),
        (
            &["--width", "0"],
            2,
            "'--width <WIDTH>': must be an integer from 1",
        ),
        (
            &["--batch", "0"],
            2,
            "'--batch <BATCH>': must be an integer from 1",
        ),
        (
            &["--act", "swish"],
            2,
            "'--act <ACT>': invalid activation 'swish': unknown activation",
        ),
        (
            &["--bias-std", "-1"],
            1,
            "invalid bias-std: -1 (must be finite and >= 0)",
        ),
        (
            &["--widths", "16,0,8"],
            2,
            "'--widths <WIDTHS>': must be an integer from 1",
        ),
        (&["--width", "1000000000", "--batch", "64"], 1, "too large"),
    ];
    for (args, code, msg) in cases {
        let mut full = vec!["forward", "--backend", "cpu"];
        full.extend_from_slice(args);
        let r = deepinit(&full);
        assert_eq!(r.status.code(), Some(*code), "{args:?}: {}", stderr(&r));
        assert!(
            stderr(&r).contains(msg),
            "{args:?}: expected '{msg}' in {}",
            stderr(&r)
        );
        assert!(!stderr(&r).contains("panicked"));
    }
}

#[test]
fn bench_quick_reports_roofline_ratios_and_checks_its_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let r = deepinit(&[
        "bench",
        "--quick",
        "--repeats",
        "1",
        "--no-numpy",
        "--json",
        json.to_str().expect("utf8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("JSON");
    let rows = v["rows"].as_array().expect("rows");
    fn find<'a>(
        rows: &'a [serde_json::Value],
        name: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        rows.iter()
            .filter(move |r| r["name"].as_str().is_some_and(|n| n.starts_with(name)))
    }

    // CPU rows always; GPU rows with their same-run ratios when a device exists.
    assert!(find(rows, "gemm crate sgemm").count() == 1 && find(rows, "rand_distr").count() == 1);
    let big_cpu = find(rows, "big layer, CPU backend")
        .next()
        .expect("CPU big layer");
    assert_eq!(
        (big_cpu["unit"].as_str(), big_cpu["ratio_to"].as_str()),
        (Some("GFLOP/s"), Some("gemm crate sgemm"))
    );
    assert_eq!(find(rows, "deep pass on the CPU backend").count(), 1);
    if v["device"]["kind"] == "gpu" {
        // The binary runs with DEEPINIT_GEMM=tiled64 here: every product of
        // the run is listed with that fixed choice.
        let gemm = v["tuning"]["gemm"].as_array().expect("GEMM choices");
        assert!(gemm.len() >= 3, "{gemm:?}");
        assert!(gemm
            .iter()
            .all(|c| c["variant"] == "tiled64" && c["source"] == "fixed"));
        assert!(find(rows, "gemm A*B^T (tiled64, fixed)").count() == 2);
        assert_eq!(
            find(rows, "big layer, GPU").next().expect("big layer")["ratio_to"],
            "fma"
        );
        for r in find(rows, "normal")
            .chain(find(rows, "truncated"))
            .chain(find(rows, "uniform"))
        {
            assert_eq!(r["ratio_to"], "fill");
            assert!(r["ratio"].as_f64().expect("ratio") > 0.0);
        }
        for r in find(rows, "gemm A*B^T") {
            assert_eq!(r["ratio_to"], "fma");
        }
        assert!(find(rows, "fill").count() >= 1 && find(rows, "fma").count() == 1);
        // The rooflines are the best of several variants, each recorded with its time.
        let log = v["tuning"]["roofline"].as_array().expect("roofline log");
        let candidates = |what: &str| -> Vec<&serde_json::Value> {
            log.iter()
                .filter(|e| e["roofline"] == what)
                .flat_map(|e| e["candidates"].as_array().expect("candidates").iter())
                .collect()
        };
        for (what, at_least) in [("fill", 3), ("fma", 2)] {
            let c = candidates(what);
            assert!(c.len() >= at_least, "{what}: {c:?}");
            assert!(c
                .iter()
                .all(|c| c["median_s"].as_f64().is_some_and(|s| s > 0.0)));
        }
        assert!(["gpu-timestamps", "wall-clock"]
            .contains(&rows[0]["time"]["method"].as_str().expect("method")));
        // The default demo's first run (new pipelines; the GEMM is fixed
        // here) against its warm runs: the ratio printed is the two times'.
        let first = find(rows, "first run (new pipelines; GEMM fixed to tiled64)")
            .next()
            .expect("demo first run");
        let warm = find(rows, "warm (same handle)").next().expect("demo warm");
        let (f, w) = (
            first["time"]["median_s"].as_f64().expect("first"),
            warm["time"]["median_s"].as_f64().expect("warm"),
        );
        assert!(f > 0.0 && w > 0.0 && first["time"]["repeats"] == 1);
        assert_eq!(first["ratio_to"], "warm");
        // Relative 1e-12: three f64s through JSON text may each move by an
        // ulp or so.
        let ratio = first["ratio"].as_f64().expect("ratio");
        assert!((ratio - f / w).abs() <= 1e-12 * ratio, "{ratio} vs {f}/{w}");
    }
}

#[test]
fn sweep_command_writes_its_files_and_rejects_bad_grids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sw");
    let r = deepinit(&[
        "sweep",
        "--backend",
        "cpu",
        "--act",
        "relu",
        "--multiplier",
        "1.5,2,2.5",
        "--depth",
        "8",
        "--width",
        "64",
        "--batch",
        "8",
        "--out-dir",
        out.to_str().expect("utf8"),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.contains("critical multiplier, theory (chi_1 = 1 at the fixed point q*):   2.0000"),
        "{text}"
    );
    for f in [
        "sweep.json",
        "heatmap.svg",
        "heatmap.png",
        "curves.svg",
        "curves.png",
        "histograms.svg",
        "histograms.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for (args, code, msg) in [
        (&["--batch", "7"][..], 1, "even batch"),
        (&["--multiplier", "4:1:0.1"][..], 1, "multiplier grid"),
        (
            &["--act", "swish"][..],
            2,
            "'--act <ACT>': invalid activation 'swish'",
        ),
        (
            &["--depth", "0"][..],
            2,
            "'--depth <DEPTH>': must be an integer from 1",
        ),
    ] {
        let mut full = vec![
            "sweep",
            "--backend",
            "cpu",
            "--width",
            "16",
            "--out-dir",
            out.to_str().expect("utf8"),
        ];
        full.extend_from_slice(args);
        let r = deepinit(&full);
        assert_eq!(r.status.code(), Some(code), "{args:?}: {}", stderr(&r));
        assert!(stderr(&r).contains(msg), "{args:?}: {}", stderr(&r));
    }
}
