//! The deep pass on the device against the CPU mirror of its arithmetic: every
//! statistics record, dead-unit counter and Gram entry equal bit for bit, for
//! every activation, awkward sizes, networks that vanish and overflow, and
//! injected one-ULP defects that must be caught and located.

mod common;

use deepinit::act::arith::{Fused, Unfused};
use deepinit::act::Activation;
use deepinit::backend::Gpu;
use deepinit::gpu::probe::FmaMode;
use deepinit::init::scheme::Scheme;
use deepinit::net::mirror;
use deepinit::net::{Fault, NetConfig};

/// The device's arithmetic class, or `None` (and a SKIPPED line) where it has
/// none; CI's device must have one.
fn conforming_class(ctx: &deepinit::gpu::GpuContext) -> Option<FmaMode> {
    let class = ctx.float_model().expect("probe").class();
    if class.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "CI's device must conform to an arithmetic class"
        );
        eprintln!(
            "SKIPPED: {} conforms to no arithmetic class",
            ctx.adapter().name
        );
    }
    class
}

const ALL: [Activation; 8] = [
    Activation::Relu,
    Activation::LeakyRelu(0.01),
    Activation::Gelu,
    Activation::GeluErf,
    Activation::Selu,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Linear,
];

#[test]
fn device_passes_equal_the_cpu_mirror_bit_for_bit() {
    let Some(ctx) = common::gpu("device_passes_equal_the_cpu_mirror_bit_for_bit") else {
        return;
    };
    let Some(mode) = conforming_class(ctx) else {
        return;
    };
    let gpu = Gpu::new(ctx).expect("gpu");
    // (width, depth, batch, multiplier, bias): batches 1, 2, 3 and one larger
    // than the width; multipliers that vanish (0.25; 0.01, into f32's
    // subnormals and to zero) and overflow (64).
    let grid: &[(u64, usize, u64, f64, f64)] = &[
        (33, 4, 1, 1.0, 0.0),
        (40, 6, 2, 1.0, 0.1),
        (65, 5, 3, 1.0, 0.0),
        (24, 3, 50, 1.0, 0.05),
        (48, 40, 8, 0.25, 0.0),
        (48, 40, 8, 0.01, 0.0),
        (48, 30, 8, 64.0, 0.0),
        (130, 8, 16, 1.0, 0.0),
    ];
    let mut runs = 0;
    for act in ALL {
        for (i, &(width, depth, batch, mult, bias)) in grid.iter().enumerate() {
            let mut cfg = NetConfig::uniform(Scheme::HE, act, width, depth, batch);
            cfg.multiplier = mult;
            cfg.bias_std = bias;
            cfg.seed = 11 + i as u64;
            let kern = gpu.kernels(act).expect("kernels");
            let (_, dev, layout) = deepinit::net::device::run_raw(
                gpu.generator(),
                &kern,
                &cfg,
                None,
                &Fault::default(),
                None,
            )
            .expect("device pass");
            let cpu = mirror::run_in(mode, &cfg, None, &layout).expect("mirror");
            let c = mirror::compare(&cfg, &layout, &dev, &cpu);
            assert!(
                c.first_difference.is_none(),
                "{} width {width} depth {depth} batch {batch} x{mult}: {:?}",
                act.name(),
                c.first_difference
            );
            assert!(c.words > 0 && c.layers == depth);
            runs += 1;
        }
    }
    eprintln!("{runs} passes equal bit for bit ({mode:?} class)");
}

/// Inputs where activations are delicate: zeros of both signs, subnormals,
/// the series thresholds, the exp clamp, huge values, infinities and NaN,
/// plus a dense sweep of [-12, 12].
fn activation_grid() -> Vec<f32> {
    let mut v: Vec<f32> = (-240_000..=240_000).map(|i| i as f32 * 5e-5).collect();
    for x in [
        0.0f32,
        -0.0,
        1e-45,
        -1e-45,
        1e-40,
        1.1754942e-38,
        0.25,
        -0.25,
        0.031_25,
        -0.031_25,
        52.0,
        -52.0,
        103.9,
        -104.0,
        -150.0,
        1e30,
        -1e30,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ] {
        v.push(x);
        v.push(f32::from_bits(x.to_bits().wrapping_add(1)));
        v.push(f32::from_bits(x.to_bits().wrapping_sub(1)));
    }
    v
}

#[test]
fn device_activations_equal_the_cpu_mirror_bit_for_bit() {
    let Some(ctx) = common::gpu("device_activations_equal_the_cpu_mirror_bit_for_bit") else {
        return;
    };
    let Some(mode) = conforming_class(ctx) else {
        return;
    };
    let gpu = Gpu::new(ctx).expect("gpu");
    let xs = activation_grid();
    for act in ALL {
        let kern = gpu.kernels(act).expect("kernels");
        let (a, d) = deepinit::net::device::activation_values(&kern, &xs).expect("device");
        let (mut bad_a, mut bad_d) = (0usize, 0usize);
        let same = |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
        for (i, &x) in xs.iter().enumerate() {
            let (wa, wd) = match mode {
                FmaMode::Fused => (
                    deepinit::act::arith::act::<Fused>(act, x),
                    deepinit::act::arith::dact::<Fused>(act, x),
                ),
                _ => (
                    deepinit::act::arith::act::<Unfused>(act, x),
                    deepinit::act::arith::dact::<Unfused>(act, x),
                ),
            };
            if !same(a[i], wa) {
                if bad_a < 3 || (x.abs() < 3.0 && bad_a < 400 && bad_a % 50 == 0) {
                    eprintln!(
                        "{} phi({x:e}): device {:e}, mirror {wa:e}",
                        act.name(),
                        a[i]
                    );
                }
                bad_a += 1;
            }
            if !same(d[i], wd) {
                if bad_d < 3 {
                    eprintln!(
                        "{} phi'({x:e}): device {:e}, mirror {wd:e}",
                        act.name(),
                        d[i]
                    );
                }
                bad_d += 1;
            }
        }
        assert_eq!(
            (bad_a, bad_d),
            (0, 0),
            "{}: of {} inputs",
            act.name(),
            xs.len()
        );
    }
}
