//! The deep forward/backward pass: the GPU GEMM on exact integer problems,
//! GPU statistics against the CPU reference for every activation, layers
//! larger than one storage binding, and the mean-field theory.

mod common;

use deepinit::act::Activation;
use deepinit::backend::{Backend, Gpu};
use deepinit::experiment::{self, CpuStatus, RunReport, TheoryStatus};
use deepinit::gpu::gemm::{GemmKernels, GemmVariant};
use deepinit::init::scheme::Scheme;
use deepinit::net::kernels::{GemmForm, GemmParams};
use deepinit::net::NetConfig;

/// Small integers, so every product and partial sum is exact in f32 (all
/// |sums| < 2^24): any indexing, tiling or bounds error shows as inequality.
fn ints(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13) % 9) as f32 - 4.0)
        .collect()
}

#[test]
fn every_gemm_variant_is_exact_on_integers_for_awkward_sizes_and_leaves_the_rest_untouched() {
    let Some(ctx) = common::gpu(
        "every_gemm_variant_is_exact_on_integers_for_awkward_sizes_and_leaves_the_rest_untouched",
    ) else {
        return;
    };
    let kernels = GemmKernels::new(ctx);
    let variants = kernels.available();
    // Every device with WebGPU's minimum 16 KiB of workgroup memory runs the
    // four variants without subgroups.
    for v in GemmVariant::ALL {
        if v != GemmVariant::Subgroup {
            assert!(variants.contains(&v), "{} unavailable", v.name());
        }
    }
    eprintln!(
        "GEMM variants on this device: {:?}",
        variants.iter().map(|v| v.name()).collect::<Vec<_>>()
    );
    // Sizes of 0, 1, 17, 63, 65, 257 and non-multiples of every tile, plus
    // whole tiles of every variant (their interior fast paths).
    let sizes = [
        (1, 1, 1),
        (1, 65, 3),
        (63, 64, 17),
        (64, 63, 16),
        (65, 65, 65),
        (97, 31, 129),
        (130, 7, 1),
        (5, 200, 0),
        (0, 17, 5),
        (257, 257, 17),
        (128, 256, 64),
    ];
    for v in variants {
        for &(m, n, kk) in &sizes {
            for form in [GemmForm::Nt, GemmForm::Nn] {
                for accumulate in [false, true] {
                    check_integer_gemm(&kernels, v, form, accumulate, (m, n, kk));
                }
            }
        }
    }
}

/// One exact integer problem with strided, offset operands and a C buffer
/// holding NaN wherever the kernel must not write.
fn check_integer_gemm(
    kernels: &GemmKernels,
    v: GemmVariant,
    form: GemmForm,
    accumulate: bool,
    (m, n, kk): (usize, usize, usize),
) {
    let (lda, ldc, a_off, b_off, c_off) = (kk + 3, n + 5, 2, 1, 7);
    let ldb = if form == GemmForm::Nt { kk + 2 } else { n + 2 };
    let b_rows = if form == GemmForm::Nt { n } else { kk };
    let a = ints(a_off + m * lda, 1);
    let b = ints(b_off + b_rows * ldb, 2);
    // C pre-filled with NaN outside the m x n window; inside, a base to accumulate onto.
    let mut c = vec![f32::NAN; c_off + m * ldc + 3];
    for i in 0..m {
        for j in 0..n {
            c[c_off + i * ldc + j] = if accumulate { (i + j) as f32 } else { f32::NAN };
        }
    }
    let p = GemmParams {
        m: m as u32,
        n: n as u32,
        k: kk as u32,
        lda: lda as u32,
        ldb: ldb as u32,
        ldc: ldc as u32,
        a_off: a_off as u32,
        b_off: b_off as u32,
        c_off: c_off as u32,
        accumulate: u32::from(accumulate),
        ..Default::default()
    };
    let what = format!("{} {form:?} acc {accumulate} {m}x{n}x{kk}", v.name());
    let got = kernels
        .matmul_host(v, form, &p, &a, &b, &c)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    for (idx, g) in got.iter().enumerate() {
        let inside = idx >= c_off && (idx - c_off) / ldc < m && (idx - c_off) % ldc < n;
        if !inside {
            assert!(g.is_nan(), "{what}: wrote outside C at {idx}");
            continue;
        }
        let (i, j) = ((idx - c_off) / ldc, (idx - c_off) % ldc);
        let mut want: f32 = if accumulate { (i + j) as f32 } else { 0.0 };
        for p in 0..kk {
            let bv = match form {
                GemmForm::Nt => b[b_off + j * ldb + p],
                GemmForm::Nn => b[b_off + p * ldb + j],
            };
            want += a[a_off + i * lda + p] * bv;
        }
        assert_eq!(*g, want, "{what} at ({i},{j})");
    }
}

/// On non-integer data every variant's result must equal the reference
/// variant's bit for bit: all compute each element as the same ascending-k
/// chain of fma, and Vulkan's fma is exact (see `shaders/gemm/common.wgsl`).
#[test]
fn every_gemm_variant_gives_the_reference_variants_bits() {
    let Some(ctx) = common::gpu("every_gemm_variant_gives_the_reference_variants_bits") else {
        return;
    };
    let kernels = GemmKernels::new(ctx);
    let floats = |len: usize, salt: u32| -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i ^ salt).wrapping_mul(0x9e37_79b9) >> 8) as f32 / 16_777_216.0 - 0.5)
            .collect()
    };
    for &(m, n, kk) in &[
        (257usize, 129usize, 65usize),
        (64, 256, 256),
        (33, 300, 1000),
    ] {
        for form in [GemmForm::Nt, GemmForm::Nn] {
            let a = floats(m * kk, 1);
            let b = floats(n * kk, 2);
            let c = vec![0.0; m * n];
            let p = GemmParams {
                m: m as u32,
                n: n as u32,
                k: kk as u32,
                lda: kk as u32,
                ldb: if form == GemmForm::Nt { kk } else { n } as u32,
                ldc: n as u32,
                ..Default::default()
            };
            let run = |v: GemmVariant| -> Vec<u32> {
                kernels
                    .matmul_host(v, form, &p, &a, &b, &c)
                    .expect("matmul")
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            let reference = run(GemmVariant::Tiled64);
            for v in kernels.available() {
                let got = run(v);
                let differ = got.iter().zip(&reference).filter(|(g, r)| g != r).count();
                assert_eq!(differ, 0, "{} {form:?} {m}x{n}x{kk}", v.name());
            }
        }
    }
}

fn run_gpu(g: &Backend, cfg: &NetConfig) -> RunReport {
    experiment::run(g, cfg, true).expect("run")
}

fn assert_matches_cpu(r: &RunReport) {
    assert_eq!(
        r.verdict.cpu_match,
        Some(true),
        "{} / {}: {:?}",
        r.scheme,
        r.activation,
        r.verdict.failures
    );
    let compared = r
        .layers
        .iter()
        .filter(|l| l.cpu_check == CpuStatus::Match)
        .count();
    assert!(
        compared > 0,
        "{} / {}: no layer was compared",
        r.scheme,
        r.activation
    );
    assert_eq!(compared, r.depth, "every layer is compared and equal");
    assert!(r.verdict.compared_words > 0 && r.verdict.first_difference.is_none());
    eprintln!(
        "{} / {}: {} layers bit-identical ({} words, {})",
        r.scheme,
        r.activation,
        compared,
        r.verdict.compared_words,
        r.verdict.arithmetic.as_deref().unwrap_or("?")
    );
}

#[test]
fn gpu_statistics_match_the_cpu_reference_for_every_activation() {
    let Some(ctx) = common::gpu("gpu_statistics_match_the_cpu_reference_for_every_activation")
    else {
        return;
    };
    let g = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
    let acts = [
        "relu",
        "leaky_relu:0.2",
        "tanh",
        "sigmoid",
        "selu",
        "gelu",
        "gelu_erf",
        "linear",
    ];
    for (i, a) in acts.iter().enumerate() {
        let act = Activation::parse(a).expect("activation");
        // Awkward widths (tile +- 1, primes) and a bias on every other run.
        let mut cfg = NetConfig::uniform(Scheme::LECUN, act, 1, 1, 24);
        cfg.widths = vec![65, 97, 63, 64, 129, 33];
        cfg.bias_std = if i % 2 == 0 { 0.1 } else { 0.0 };
        cfg.gain = Some(
            deepinit::init::scheme::gain(if *a == "linear" { "linear" } else { "relu" })
                .expect("gain"),
        );
        cfg.seed = 10 + i as u64;
        let r = run_gpu(&g, &cfg);
        assert_matches_cpu(&r);
        assert_eq!(r.layers.len(), 5);
        if act == Activation::Relu {
            assert!(r
                .layers
                .iter()
                .any(|l| l.dead_frac > 0.0 || l.zero_frac > 0.3));
        }
        if act == Activation::Sigmoid || act == Activation::Tanh {
            assert!(r.layers.iter().all(|l| l.saturated_frac < 1.0));
        }
    }
}

#[test]
fn a_layer_larger_than_one_storage_binding_runs_in_row_blocks() {
    let Some(ctx) = common::gpu("a_layer_larger_than_one_storage_binding_runs_in_row_blocks")
    else {
        return;
    };
    let g = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
    // W_2 is 6000 x 6000 f32 = 144 MB > 128 MiB (lavapipe's binding limit),
    // so the forward pass and the backward pass (delta_1 = delta_2 W_2) both
    // work through row blocks, the backward one accumulating across them.
    let mut cfg = NetConfig::uniform(Scheme::HE, Activation::Relu, 1, 1, 8);
    cfg.widths = vec![64, 6000, 6000];
    let bytes = 4 * 6000u64 * 6000;
    if bytes <= ctx.limits().max_storage_buffer_binding_size.min(256 << 20) {
        eprintln!("note: {} holds W_2 in one binding; the row-block path is exercised only on smaller limits", ctx.adapter().name);
    }
    let r = run_gpu(&g, &cfg);
    assert_matches_cpu(&r);
    assert!(
        r.layers.iter().all(|l| l.cpu_check == CpuStatus::Match),
        "{:?}",
        r.layers.iter().map(|l| l.cpu_check).collect::<Vec<_>>()
    );
}

#[test]
fn relu_he_keeps_the_variance_and_lecun_halves_it() {
    let Some(ctx) = common::gpu("relu_he_keeps_the_variance_and_lecun_halves_it") else {
        return;
    };
    let g = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
    let depth = 24;
    let he = run_gpu(
        &g,
        &NetConfig::uniform(Scheme::HE, Activation::Relu, 256, depth, 64),
    );
    assert!(he.verdict.theory_match, "{:?}", he.verdict.failures);
    // Layers whose finite-width band is narrower than a factor of 10 are
    // checked (and match); deeper ones are "n/a", never claimed.
    let checked = he
        .layers
        .iter()
        .filter(|l| l.theory_check == TheoryStatus::Match)
        .count();
    assert!(checked >= 10, "{checked} layers checked");
    assert!(he
        .layers
        .iter()
        .all(|l| l.theory_check == TheoryStatus::Match
            || l.theory_check == TheoryStatus::NotApplicable));
    assert!(he
        .verdict
        .weight_test
        .is_some_and(|w| w.pass && w.layers == depth));
    // He theory is flat: Var(z_l) = 2 x (the inputs' mean square, ~1) at every layer.
    let q1 = he.layers[0].theory_pre_var;
    assert!((q1 / 2.0 - 1.0).abs() < 0.05, "{q1}");
    assert!(he
        .layers
        .iter()
        .all(|l| (l.theory_pre_var / q1 - 1.0).abs() < 1e-9));
    let lecun = run_gpu(
        &g,
        &NetConfig::uniform(Scheme::LECUN, Activation::Relu, 256, depth, 64),
    );
    assert!(lecun.verdict.theory_match, "{:?}", lecun.verdict.failures);
    // Average halving per layer over the depth: (Var_L / Var_1)^(1/(L-1)). The
    // finite-width spread of ln(Var_L / Var_1) is ~ sqrt(5 L / n) = 0.68 over 23
    // layers, i.e. 0.03 per layer; the 0.1 band is > 3 of those.
    let ratio = (lecun.layers[depth - 1].pre_var / lecun.layers[0].pre_var)
        .powf(1.0 / (depth as f64 - 1.0));
    assert!(
        (ratio.ln() - 0.5f64.ln()).abs() < 0.1,
        "per-layer ratio {ratio}"
    );
}

#[test]
fn tanh_with_a_small_naive_std_vanishes() {
    let Some(ctx) = common::gpu("tanh_with_a_small_naive_std_vanishes") else {
        return;
    };
    let g = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
    let r = run_gpu(
        &g,
        &NetConfig::uniform(
            Scheme::parse("naive:0.01").expect("scheme"),
            Activation::Tanh,
            128,
            20,
            32,
        ),
    );
    assert_matches_cpu(&r);
    assert!(r.verdict.theory_match, "{:?}", r.verdict.failures);
    // sigma_w^2 = 128 * 1e-4: the variance shrinks ~78x per layer.
    assert!(r.layers[19].pre_var < 1e-30 * r.layers[0].pre_var);
    assert!(
        r.layers[0].grad_var < 1e-30 * r.layers[19].grad_var,
        "gradients vanish toward the input"
    );
}

#[test]
fn cpu_backend_runs_the_same_experiment() {
    let r = experiment::run(
        &Backend::Cpu,
        &NetConfig::uniform(Scheme::HE, Activation::Tanh, 64, 8, 16),
        true,
    )
    .expect("cpu run");
    assert!(r.verdict.theory_match, "{:?}", r.verdict.failures);
    assert!(r
        .layers
        .iter()
        .all(|l| l.cpu_check == CpuStatus::NotCompared && l.cpu_pre_var.is_none()));
    // Nothing was compared, and the verdict says so rather than "match".
    assert_eq!(r.verdict.cpu_match, None);
    assert_eq!(
        (r.verdict.compared_words, r.verdict.compared_layers),
        (0, 0)
    );
}

#[test]
fn bad_network_shapes_are_rejected() {
    let base = NetConfig::uniform(Scheme::HE, Activation::Relu, 16, 3, 4);
    let mut c = base.clone();
    c.widths = vec![16];
    assert!(c.validate().unwrap_err().to_string().contains("depth"));
    let mut c = base.clone();
    c.batch = 0;
    assert!(c.validate().unwrap_err().to_string().contains("batch"));
    let mut c = base.clone();
    c.widths[2] = 0;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("width of layer 2 is 0"));
    let mut c = base.clone();
    c.bias_std = f64::NAN;
    assert!(c.validate().is_err());
    let mut c = base;
    c.batch = 1 << 20;
    c.widths = vec![1 << 20; 3];
    assert!(c.validate().unwrap_err().to_string().contains("too large"));
}

#[test]
fn a_network_beyond_the_device_is_refused_with_a_message() {
    let Some(ctx) = common::gpu("a_network_beyond_the_device_is_refused_with_a_message") else {
        return;
    };
    let g = Backend::Gpu(Gpu::new(ctx).expect("gpu"));
    // One activation tensor of batch x width f32 larger than a storage binding.
    let width = ctx
        .limits()
        .max_storage_buffer_binding_size
        .min(ctx.limits().max_buffer_size)
        / 4
        / 64
        + 1;
    let mut cfg = NetConfig::uniform(Scheme::HE, Activation::Relu, 1, 1, 64);
    cfg.widths = vec![8, width.min(u64::from(u32::MAX) / 4 / 64)];
    let err = experiment::run(&g, &cfg, false).expect_err("must not fit");
    let msg = err.to_string();
    assert!(
        msg.contains("too large") && (msg.contains("buffer") || msg.contains("tensor")),
        "{msg}"
    );
}
