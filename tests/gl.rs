//! GPU smoke tests on wgpu's GL backend (`WGPU_BACKEND=gl`: llvmpipe's
//! OpenGL through EGL, which `.ci/run` installs): weights generated and
//! checked, a deep pass verified bit for bit against the CPU mirror, and
//! default tuning finishing in time (on GL the reference variant runs
//! untimed: its timings rank the variants wrongly). Outside CI a machine
//! without a GL adapter reports SKIPPED; under CI it fails.

mod common;

use std::process::Output;

fn gl(args: &[&str], cache: Option<&std::path::Path>) -> Output {
    let mut c = common::bin();
    c.env("WGPU_BACKEND", "gl");
    if let Some(dir) = cache {
        c.env("DEEPINIT_GEMM", "auto")
            .env("DEEPINIT_CACHE_DIR", dir);
    }
    c.args(args).output().expect("runs")
}

/// Whether a GL adapter exists (panics under CI when none does).
fn gl_adapter(test: &str) -> bool {
    let o = gl(&["adapters"], None);
    let text = String::from_utf8_lossy(&o.stdout);
    if o.status.success() && text.contains("(gl,") {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{test}: no GL adapter under CI (.ci/run installs libegl-mesa0 and libgl1-mesa-dri): {text}{}",
        common::stderr(&o)
    );
    eprintln!("SKIPPED {test}: no GL adapter on this machine");
    false
}

#[test]
fn the_gl_backend_generates_and_verifies_a_deep_pass() {
    if !gl_adapter("the_gl_backend_generates_and_verifies_a_deep_pass") {
        return;
    }
    let o = gl(&["init", "--shape", "256x256", "--backend", "gpu"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", common::stderr(&o));
    assert!(
        out.contains("[gl") && out.contains("verdict: PASS"),
        "{out}"
    );
    // Default tuning with an empty cache: the reference variant, untimed.
    let cache = tempfile::tempdir().expect("temp dir");
    let o = gl(
        &[
            "forward",
            "--scheme",
            "he",
            "--act",
            "tanh",
            "--width",
            "128",
            "--depth",
            "12",
            "--batch",
            "32",
            "--backend",
            "gpu",
        ],
        Some(cache.path()),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", common::stderr(&o));
    assert!(out.contains("CPU mirror: ok, bit-identical"), "{out}");
    assert!(
        !common::stderr(&o).contains("timing"),
        "nothing is timed on GL: {}",
        common::stderr(&o)
    );
}
