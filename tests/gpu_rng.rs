//! The WGSL Philox and generation kernels against the CPU reference: exact
//! equality of raw words and of values, for awkward sizes, offsets beyond
//! 2^32, chunkings, workgroup sizes, both multiplies and both stores.

mod common;

use deepinit::gpu::kat::philox_blocks;
use deepinit::gpu::shaders::{MulHi, Store};
use deepinit::gpu::{GenOptions, GenRequest, Generator, Kernel};
use deepinit::rng::cpu;
use deepinit::rng::dist::{self, Dist};
use deepinit::rng::philox::{philox4x32_10, KNOWN_ANSWERS as KAT};

fn variants(ctx: &deepinit::gpu::GpuContext) -> Vec<MulHi> {
    let mut v = vec![MulHi::Emulated];
    if ctx.int64() {
        v.push(MulHi::Int64);
    } else {
        eprintln!(
            "int64 Philox path UNSUPPORTED on {}: only the emulated path is tested",
            ctx.adapter().name
        );
    }
    v
}

#[test]
fn random123_known_answers_on_the_device() {
    let Some(ctx) = common::gpu("random123_known_answers_on_the_device") else {
        return;
    };
    let inputs: Vec<_> = KAT.iter().map(|(c, k, _)| (*c, *k)).collect();
    for m in variants(ctx) {
        let got = philox_blocks(ctx, m, &inputs).expect("kat kernel");
        for ((_, _, want), got) in KAT.iter().zip(&got) {
            assert_eq!(got, want, "{m:?}");
        }
    }
}

#[test]
fn device_philox_matches_cpu_on_random_inputs() {
    let Some(ctx) = common::gpu("device_philox_matches_cpu_on_random_inputs") else {
        return;
    };
    // Inputs from the CPU Philox itself: 4096 pseudo-random (ctr, key) pairs,
    // which exercise every carry in the 16-bit-halves multiply.
    let mut inputs = Vec::new();
    for i in 0..4096u64 {
        let a = deepinit::rng::philox::block_words(99, 1, i);
        let b = deepinit::rng::philox::block_words(99, 2, i);
        inputs.push((a, [b[0], b[1]]));
    }
    for m in variants(ctx) {
        let got = philox_blocks(ctx, m, &inputs).expect("kat kernel");
        for ((c, k), g) in inputs.iter().zip(&got) {
            assert_eq!(*g, philox4x32_10(*c, *k), "{m:?} ctr {c:08x?} key {k:08x?}");
        }
    }
}

fn bits(
    g: &Generator,
    seed: u64,
    tensor: u32,
    start: u64,
    count: u64,
    opts: &GenOptions,
) -> Vec<u32> {
    let req = GenRequest {
        kernel: Kernel::Bits,
        seed,
        tensor_id: tensor,
        start,
        count,
        scale: 1.0,
    };
    g.generate_words(&req, opts).expect("generate bits")
}

fn cpu_bits(seed: u64, tensor: u32, start: u64, count: usize) -> Vec<u32> {
    let mut v = vec![0u32; count];
    cpu::fill_words(seed, tensor, start, &mut v);
    v
}

#[test]
fn uniform_bits_equal_cpu_for_awkward_sizes_seeds_and_offsets() {
    let Some(ctx) = common::gpu("uniform_bits_equal_cpu_for_awkward_sizes_seeds_and_offsets")
    else {
        return;
    };
    let g = Generator::new(ctx).expect("generator");
    let wg = 256u64; // threads per workgroup; each thread makes 4 elements
    let sizes = [
        0u64,
        1,
        3,
        4,
        5,
        wg - 1,
        wg + 1,
        4 * wg - 1,
        4 * wg + 1,
        65_537,
        1_000_003,
    ];
    let starts = [
        0u64,
        1,
        2,
        3,
        1_021,
        (1 << 32) - 3,
        (1 << 34) - 6,
        5 * (1 << 32) + 1,
        u64::MAX - 1_000_010,
    ];
    for (k, seed) in [0u64, 1, 0xDEAD_BEEF_CAFE_F00D].into_iter().enumerate() {
        for m in variants(ctx) {
            for store in Store::ALL {
                let opts = GenOptions {
                    mulhi: Some(m),
                    store,
                    ..Default::default()
                };
                for &n in &sizes {
                    let start = starts[(k + n as usize) % starts.len()];
                    let got = bits(&g, seed, k as u32, start, n, &opts);
                    assert_eq!(got.len() as u64, n);
                    assert!(
                        got == cpu_bits(seed, k as u32, start, n as usize),
                        "seed {seed} {m:?} {store:?} n {n} start {start}"
                    );
                }
            }
        }
    }
    // Block-aligned requests (start and count multiples of 4, including a
    // 64-bit block index) take the vec4 store; the loop above mostly falls
    // back to the scalar one.
    for m in variants(ctx) {
        let opts = GenOptions {
            mulhi: Some(m),
            store: Store::Vec4,
            ..Default::default()
        };
        for (start, n) in [
            (0u64, 4u64),
            (8, 4 * wg),
            (1_024, 12 * wg + 4),
            ((1 << 32) - 4, 65_536),
            ((1 << 34) + 4, 4),
        ] {
            let got = bits(&g, 5, 2, start, n, &opts);
            assert!(
                got == cpu_bits(5, 2, start, n as usize),
                "{m:?} vec4 n {n} start {start}"
            );
        }
    }
    // The pipeline cache holds one entry per (kernel, variant, store,
    // workgroup size).
    assert_eq!(g.cached_pipelines(), 2 * variants(ctx).len());
}

#[test]
fn output_is_independent_of_chunking_workgroup_size_and_sharding() {
    let Some(ctx) = common::gpu("output_is_independent_of_chunking_workgroup_size_and_sharding")
    else {
        return;
    };
    let g = Generator::new(ctx).expect("generator");
    let n = 300_007u64;
    for kernel in Kernel::ALL {
        let req = GenRequest {
            kernel,
            seed: 7,
            tensor_id: 3,
            start: 0,
            count: n,
            scale: 0.37,
        };
        let reference = g
            .generate_words(&req, &GenOptions::default())
            .expect("reference");
        // Chunks of whole blocks run the vec4 store where asked; 4_093 and
        // the last chunk of each (n is odd) fall back to the scalar one.
        for (chunk, wg, store) in [
            (Some(1_000), 64, Store::Scalar),
            (Some(1_000), 64, Store::Vec4),
            (Some(4_093), 1024, Store::Vec4),
            (Some(65_536), 32, Store::Vec4),
            (None, 128, Store::Vec4),
            (None, 512, Store::Scalar),
        ] {
            let opts = GenOptions {
                chunk_elems: chunk,
                workgroup_size: wg,
                mulhi: None,
                store,
            };
            let got = g.generate_words(&req, &opts).expect("chunked");
            assert!(
                got == reference,
                "{kernel:?} chunk {chunk:?} wg {wg} {store:?}"
            );
        }
        // A shard [a, b) equals the slice of the whole, for odd boundaries.
        for (a, b) in [(0u64, 1u64), (1, 6), (4_095, 70_001), (299_999, n)] {
            let shard = GenRequest {
                start: a,
                count: b - a,
                ..req
            };
            let got = g
                .generate_words(
                    &shard,
                    &GenOptions {
                        chunk_elems: Some(997),
                        store: Store::Vec4,
                        ..Default::default()
                    },
                )
                .expect("shard");
            assert!(
                got[..] == reference[a as usize..b as usize],
                "{kernel:?} shard {a}..{b}"
            );
        }
    }
}

#[test]
fn int64_and_emulated_paths_are_bit_identical_for_every_kernel() {
    let Some(ctx) = common::gpu("int64_and_emulated_paths_are_bit_identical_for_every_kernel")
    else {
        return;
    };
    if !ctx.int64() {
        eprintln!("UNSUPPORTED int64_and_emulated_paths_are_bit_identical_for_every_kernel: no SHADER_INT64 on {}", ctx.adapter().name);
        return;
    }
    let g = Generator::new(ctx).expect("generator");
    for kernel in Kernel::ALL {
        let req = GenRequest {
            kernel,
            seed: 12345,
            tensor_id: 9,
            start: (1 << 33) + 3,
            count: 100_003,
            scale: 1.5,
        };
        let a = g
            .generate_words(
                &req,
                &GenOptions {
                    mulhi: Some(MulHi::Emulated),
                    ..Default::default()
                },
            )
            .expect("emulated");
        let b = g
            .generate_words(
                &req,
                &GenOptions {
                    mulhi: Some(MulHi::Int64),
                    ..Default::default()
                },
            )
            .expect("int64");
        assert!(a == b, "{kernel:?}");
    }
}

/// Every distribution's values equal the CPU reference bit for bit, with both
/// multiplies and both stores, at awkward sizes and at offsets beyond 2^32.
#[test]
fn values_equal_the_cpu_reference_bit_for_bit() {
    let Some(ctx) = common::gpu("values_equal_the_cpu_reference_bit_for_bit") else {
        return;
    };
    let g = Generator::new(ctx).expect("generator");
    for dist in Dist::ALL {
        for (seed, start, n, std) in [
            (0u64, 0u64, 262_147u64, 1.0f64),
            (42, (1 << 32) + 1, 65_539, 0.02),
            (7, 3, 1, 1e-3),
            (u64::MAX, (1 << 40) + 4, 4100, 3.5),
        ] {
            let scale = dist.kernel_scale(std);
            let req = GenRequest {
                kernel: Kernel::Dist(dist),
                seed,
                tensor_id: 1,
                start,
                count: n,
                scale,
            };
            for mulhi in variants(ctx) {
                for store in Store::ALL {
                    let opts = GenOptions {
                        mulhi: Some(mulhi),
                        store,
                        ..GenOptions::default()
                    };
                    let got = g.generate_f32(&req, &opts).expect("generate");
                    let c = cpu::compare(dist, scale, seed, 1, start, &got);
                    assert_eq!(c.compared, n);
                    assert!(
                        c.identical(),
                        "{dist:?} {mulhi:?} {store:?} at {start}: {c:?}"
                    );
                }
            }
        }
    }
}

/// The unit values of the whole domain: every 24-bit input of the radius, the
/// angle (permuted against the radius's) and the truncated map on the device,
/// equal to the CPU's integer program.
#[test]
fn every_24_bit_input_maps_to_the_cpu_bits_on_the_device() {
    let Some(ctx) = common::gpu("every_24_bit_input_maps_to_the_cpu_bits_on_the_device") else {
        return;
    };
    for m in variants(ctx) {
        let got = deepinit::gpu::kat::unit_values(ctx, m).expect("unit kernel");
        let mut wrong = 0u64;
        for (k, g) in got.iter().enumerate() {
            let w = (k as u32) << 8;
            let angle = (k as u32).wrapping_mul(deepinit::gpu::kat::UNIT_KAT_PERMUTE) << 8;
            let (c, s) = deepinit::rng::fixed::normal_pair_bits(w, angle);
            let want = [c, s, deepinit::rng::fixed::truncated_bits(w)];
            if *g != want {
                if wrong < 5 {
                    eprintln!("{m:?} k {k}: device {g:08x?}, cpu {want:08x?}");
                }
                wrong += 1;
            }
        }
        assert_eq!(wrong, 0, "{m:?}: {wrong} of 2^24 inputs differ");
    }
}

#[test]
fn truncated_values_stay_inside_two_sigma() {
    let Some(ctx) = common::gpu("truncated_values_stay_inside_two_sigma") else {
        return;
    };
    let g = Generator::new(ctx).expect("generator");
    let std = 0.5f64;
    let scale = Dist::Truncated.kernel_scale(std);
    let req = GenRequest {
        kernel: Kernel::Dist(Dist::Truncated),
        seed: 5,
        tensor_id: 0,
        start: 0,
        count: 1 << 20,
        scale,
    };
    let v = g
        .generate_f32(&req, &GenOptions::default())
        .expect("generate");
    // 2 sigma of the untruncated normal: the unit values are below 2 (the
    // CPU's integer program, tested over its whole domain), times the scale.
    let limit = f64::from(2.0f32 * scale);
    let worst = v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
    assert!(worst <= limit, "{worst} > {limit}");
    // And the extremes are approached: with 2^20 draws the largest |value| is
    // within 0.1% of the bound (the density at the edges puts 2.3e-4 of the mass
    // there, so P(miss) = (1 - 2.3e-4)^(2^20) ~ e^-237).
    assert!(worst > 0.999 * 2.0 * std / dist::TRUNC_STD, "{worst}");
}

/// Every 65537th f32 bit pattern plus the rounding edges of bf16 and f16
/// (ties, overflow to inf, subnormals, NaN), an odd count so the last word
/// is half used.
fn pack_patterns() -> Vec<u32> {
    let mut v: Vec<u32> = (0..=u32::MAX / 65537)
        .map(|i| i.wrapping_mul(65537))
        .collect();
    v.extend(deepinit::io::dtype::ROUNDING_EDGES);
    if v.len().is_multiple_of(2) {
        v.push(0x3F80_1000);
    }
    v
}

#[test]
fn device_packing_rounds_exactly_like_the_host() {
    let Some(ctx) = common::gpu("device_packing_rounds_exactly_like_the_host") else {
        return;
    };
    use deepinit::io::dtype::{f32_to_bf16, f32_to_f16, DType};
    use wgpu::util::DeviceExt;
    let src_words = pack_patterns();
    let n = src_words.len() as u64;
    let src = ctx
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("pack src"),
            contents: bytemuck::cast_slice(&src_words),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let packer = deepinit::gpu::pack::Packer::new(ctx).expect("packer");
    for dtype in [DType::Bf16, DType::F16] {
        let dst = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("pack dst"),
            size: n.div_ceil(2) * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        deepinit::gpu::launch::Batch::from(packer.launch(dtype, n, &src, &dst).expect("launch"))
            .record(ctx, &mut enc)
            .expect("record");
        let got = ctx
            .read_back(enc, &[(&dst, n.div_ceil(2) * 4)])
            .expect("read")
            .remove(0);
        for (i, &x) in src_words.iter().enumerate() {
            let h = u16::from_le_bytes([got[2 * i], got[2 * i + 1]]);
            let want = if dtype == DType::Bf16 {
                f32_to_bf16(x)
            } else {
                f32_to_f16(x)
            };
            assert_eq!(h, want, "{dtype:?} of {x:#010x}");
        }
    }
}

#[test]
fn encoded_generation_equals_host_rounding_of_the_same_values() {
    let Some(ctx) = common::gpu("encoded_generation_equals_host_rounding_of_the_same_values")
    else {
        return;
    };
    use deepinit::io::dtype::DType;
    let gen = Generator::new(ctx).expect("generator");
    // Uniform values are bit-identical to the CPU's, so their packed forms
    // must be too; odd chunk sizes check the half-word seams between chunks.
    for (count, chunk) in [(1u64, None), (4099, Some(1000)), (70_001, Some(4097))] {
        let req = GenRequest {
            kernel: Kernel::Dist(Dist::Uniform),
            seed: 11,
            tensor_id: 3,
            start: 5,
            count,
            scale: 0.25,
        };
        let mut f32s = vec![0f32; count as usize];
        cpu::fill(Dist::Uniform, 0.25, 11, 3, 5, &mut f32s);
        let opts = GenOptions {
            chunk_elems: chunk,
            ..GenOptions::default()
        };
        for dtype in [DType::F32, DType::Bf16, DType::F16] {
            let mut got = Vec::new();
            gen.generate_encoded(&req, &opts, dtype, |off, b| {
                assert_eq!(off * dtype.size(), got.len() as u64);
                got.extend_from_slice(b);
                Ok(())
            })
            .expect("generate");
            let mut want = Vec::new();
            dtype.encode(&f32s, &mut want);
            assert!(got == want, "{dtype:?}, {count} elements, chunk {chunk:?}");
        }
    }
}

/// The float probe's answer on this device; on lavapipe (what CI runs) it must
/// be the two-rounding class with subnormals kept, so a driver change that
/// alters the arithmetic is noticed.
#[test]
fn the_float_probe_classifies_the_device() {
    let Some(ctx) = common::gpu("the_float_probe_classifies_the_device") else {
        return;
    };
    let m = ctx.float_model().expect("probe");
    eprintln!("{}: {}", ctx.adapter().name, m.describe());
    assert!(!m.mul_add_contracted || m.class().is_none());
    if ctx.adapter().name.contains("llvmpipe") {
        use deepinit::gpu::probe::{FmaMode, NanMinMax};
        assert_eq!(m.fma, FmaMode::Unfused, "{}", m.describe());
        assert!(
            m.subnormal_inputs && m.subnormal_results,
            "{}",
            m.describe()
        );
        assert!(!m.mul_add_contracted && m.floor_exact, "{}", m.describe());
        assert_eq!(m.nan_min_max, NanMinMax::Number);
        assert_eq!(m.class(), Some(FmaMode::Unfused));
    }
}
