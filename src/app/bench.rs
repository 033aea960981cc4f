//! `deepinit bench`: throughput of every kernel next to the same device's own
//! ceilings (a plain fill kernel for memory, an FMA kernel for arithmetic),
//! the whole deep pass on GPU and CPU, and the CPU baselines — ratios measured
//! in one run, which mean something across machines where absolute times
//! do not.
//!
//! Timing: a warm-up run, then `repeats` runs; min / median / max. On the GPU
//! each run is one submission bracketed by timestamps written into the
//! command encoder where the adapter supports them (`gpu-timestamps`), else
//! the wall clock from submission to completion (`wall-clock`, which includes
//! the submission overhead). Every benchmark reads part of its result back and
//! checks it, so nothing is optimized away or left unread.

use super::roofline::Roofline;
use crate::backend::Gpu;
use crate::error::{Error, Result};
use crate::gpu::launch::Batch;
pub(crate) use crate::gpu::timer::Timing;
pub(crate) use crate::gpu::timer::{time_cpu, GpuTimer};
use crate::gpu::{GenOptions, GenRequest, Generator, GpuContext, Kernel};
use crate::net::kernels::{GemmForm, GemmParams, NetKernels};
use crate::rng::dist::Dist;
use serde::Serialize;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// `generation`, `gemm`, `network`, `cpu`.
    pub group: &'static str,
    /// What ran.
    pub name: String,
    /// Problem size.
    pub size: String,
    /// Times.
    pub time: Timing,
    /// Rate at the median time.
    pub rate: f64,
    /// Unit of `rate` (`GB/s`, `GFLOP/s`, `Msamples/s`, `ms/layer`).
    pub unit: &'static str,
    /// Rate relative to the reference named in `ratio_to` (same run, same device).
    pub ratio: Option<f64>,
    /// What `ratio` compares with.
    pub ratio_to: Option<String>,
    /// The rows other rows compare with, named by type (not in the JSON).
    #[serde(skip)]
    pub key: Option<RowKey>,
}

/// The rows that other rows of the same run are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKey {
    /// The CPU backend's normal generation on all threads.
    CpuNormal,
    /// The gemm crate's sgemm on all threads.
    CpuGemm,
    /// The CPU backend's deep pass.
    CpuPass,
    /// `deepinit model` writing the benchmark's checkpoint in f32.
    CheckpointF32,
}

/// The row of `rows` with `key`.
pub(crate) fn keyed(rows: &[Row], key: RowKey) -> Option<&Row> {
    rows.iter().find(|r| r.key == Some(key))
}

/// One roofline's search: every variant timed (JSON: `tuning.roofline`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RooflineSearch {
    /// `fill` (memory) or `fma` (arithmetic).
    pub roofline: &'static str,
    /// Elements each fill variant wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elements: Option<u64>,
    /// FMA iterations per invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// Every variant and its time.
    pub candidates: Vec<super::roofline::Candidate>,
}

/// What a GPU run chose, as the tuner chose it: handed to `report` as is,
/// and the JSON's `tuning`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tuning {
    /// Each generation kernel's store and workgroup size.
    pub generation: Vec<crate::gpu::gen_tune::GenChoice>,
    /// Each GEMM shape class's variant.
    pub gemm: Vec<crate::gpu::tune::Choice>,
    /// The rooflines' searches.
    pub roofline: Vec<RooflineSearch>,
}

/// Options of [`gpu`] and [`cpu`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BenchOptions {
    /// Small sizes, few repeats: a smoke run (under a minute on lavapipe).
    pub quick: bool,
    /// Runs after the warm-up.
    pub repeats: usize,
}

pub(crate) fn storage(ctx: &GpuContext, bytes: u64) -> Result<wgpu::Buffer> {
    ctx.scoped("allocating benchmark buffers", || {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

/// Runs the GPU benchmarks.
pub(crate) fn gpu(
    gpu: &Gpu,
    opts: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<(Vec<Row>, Tuning)> {
    let (gen, ctx) = (gpu.generator(), gpu.context());
    let b = GpuBench {
        gen,
        tuner: gpu.gemm(),
        ctx,
        timer: GpuTimer::new(ctx),
        roof: Roofline::new(ctx)?,
        roofline_log: std::cell::RefCell::new(Vec::new()),
        reps: opts.repeats,
        quick: opts.quick,
    };
    let max_elems = gen.chunk_limit(&GenOptions::default())?;
    let mut sizes: Vec<u64> = if opts.quick {
        vec![1 << 20, 1 << 24]
    } else {
        vec![1 << 20, 1 << 24, 1 << 26, 1 << 28]
    };
    sizes.retain(|&n| n <= max_elems);
    if sizes.is_empty() {
        sizes.push(max_elems);
    }
    let out = storage(ctx, 4 * sizes.iter().max().copied().unwrap_or(1))?;
    progress("generation settings (tuned once per device)");
    for kernel in Kernel::ALL {
        b.tuner.generation(gen, kernel)?;
    }
    let mut rows = Vec::new();
    for &n in &sizes {
        progress(&format!("generation, {n} elements"));
        rows.extend(b.generation_rows(n, &out)?);
    }
    progress("FMA peak");
    let kern = gpu.kernels(crate::act::Activation::Relu)?;
    let fma = b.fma_row()?;
    let peak = fma.rate;
    rows.push(fma);
    let shapes: Vec<(u64, u64, u64)> = if opts.quick {
        vec![(256, 256, 256), (64, 1024, 1024)]
    } else {
        vec![
            (1024, 1024, 1024),
            (2048, 2048, 2048),
            (64, 4096, 4096),
            (256, 4096, 4096),
        ]
    };
    for (m, n, k) in shapes {
        progress(&format!("gemm {m}x{n}x{k} (tuning its shape class if new)"));
        rows.push(b.gemm_row(&kern, (m, n, k), peak)?);
    }
    let (width, depth, batch) = if opts.quick {
        (256, 10, 64)
    } else {
        (2048, 20, 128)
    };
    progress(&format!("network {width}x{depth}, batch {batch}"));
    rows.extend(b.network_rows(&kern, width, depth, batch)?);
    progress("big layer on the GPU");
    let mut big = big_layer_row("network", "GPU", opts.quick, |c| {
        crate::net::device::run(gen, &kern, c, None)
    })?;
    big.ratio = Some(big.rate / peak);
    big.ratio_to = Some("fma".into());
    rows.push(big);
    let tuning = Tuning {
        generation: b.tuner.generation_choices()?,
        gemm: kern.tuner().choices()?,
        roofline: b.roofline_log.take(),
    };
    Ok((rows, tuning))
}

/// One GPU benchmark run's shared state: the device, its timer and rooflines.
struct GpuBench<'a> {
    gen: &'a Generator,
    /// The device's tuner: GEMM variants and generation settings.
    tuner: &'a crate::gpu::tune::Tuner,
    ctx: &'a GpuContext,
    timer: GpuTimer<'a>,
    roof: Roofline,
    reps: usize,
    quick: bool,
    /// Every roofline variant timed, for the JSON's `tuning.roofline`.
    roofline_log: std::cell::RefCell<Vec<RooflineSearch>>,
}

impl GpuBench<'_> {
    /// The fill roofline at `n` elements and each generation kernel against it.
    fn generation_rows(&self, n: u64, out: &wgpu::Buffer) -> Result<Vec<Row>> {
        let (ctx, gen, timer, roof, reps) =
            (self.ctx, self.gen, &self.timer, &self.roof, self.reps);
        let mut rows = Vec::new();
        let bytes = 4.0 * n as f64;
        let fill = roof.best_fill(ctx, timer, reps, n, out)?;
        let fill_rate = bytes / fill.time.median_s / 1e9;
        rows.push(Row {
            group: "generation",
            name: format!("fill (memory roofline; {})", fill.label),
            size: human(n),
            rate: fill_rate,
            unit: "GB/s",
            time: fill.time,
            ratio: None,
            ratio_to: None,
            key: None,
        });
        self.roofline_log.borrow_mut().push(RooflineSearch {
            roofline: "fill",
            elements: Some(n),
            iterations: None,
            candidates: fill.candidates,
        });
        for kernel in Kernel::ALL {
            let req = GenRequest {
                kernel,
                seed: 7,
                tensor_id: 1,
                start: 0,
                count: n,
                scale: 1.0,
            };
            let choice = self.tuner.generation(gen, kernel)?;
            let go = choice.apply(GenOptions::default());
            let t = timer.time(reps, gen.launch(&req, out, &go)?)?;
            // The first Philox block, checked against the CPU reference.
            let got = ctx.read_words(out, 4)?;
            let want: Vec<u32> = match kernel {
                Kernel::Bits => crate::rng::philox::block_words(7, 1, 0).to_vec(),
                Kernel::Dist(d) => {
                    let mut v = [0f32; 4];
                    crate::rng::dist::fill_reference(d, 1.0, 7, 1, 0, &mut v);
                    v.iter().map(|x| x.to_bits()).collect()
                }
            };
            if got != want {
                return Err(Error::internal(
                    "benchmark",
                    format!("{kernel:?} produced wrong values: {got:08x?} vs {want:08x?}"),
                ));
            }
            let rate = bytes / t.median_s / 1e9;
            let name = format!(
                "{} ({})",
                match kernel {
                    Kernel::Bits => "philox bits",
                    Kernel::Dist(d) => d.name(),
                },
                choice.setting
            );
            rows.push(Row {
                group: "generation",
                name,
                size: format!(
                    "{} ({:.2} Gsamples/s)",
                    human(n),
                    n as f64 / t.median_s / 1e9
                ),
                rate,
                unit: "GB/s",
                time: t,
                ratio: Some(rate / fill_rate),
                ratio_to: Some("fill".into()),
                key: None,
            });
        }
        Ok(rows)
    }

    /// The FMA roofline (its rate is the peak the GEMM is compared with).
    fn fma_row(&self) -> Result<Row> {
        let (ctx, timer, roof, reps, quick) =
            (self.ctx, &self.timer, &self.roof, self.reps, self.quick);
        // 2048 x 256 invocations fill every SM of the largest GPUs several times over.
        let fma_groups: u64 = if quick { 64 } else { 2048 };
        let iters: u32 = if quick { 1024 } else { 4096 };
        let invocations = fma_groups * 256;
        let best = roof.best_fma(ctx, timer, reps, iters, invocations)?;
        let peak =
            invocations as f64 * f64::from(iters) * best.flops_per_iter / best.time.median_s / 1e9;
        self.roofline_log.borrow_mut().push(RooflineSearch {
            roofline: "fma",
            elements: None,
            iterations: Some(iters),
            candidates: best.candidates,
        });
        Ok(Row {
            group: "gemm",
            name: format!("fma (arithmetic roofline; {})", best.label),
            size: format!("{invocations} invocations x {iters}"),
            rate: peak,
            unit: "GFLOP/s",
            time: best.time,
            ratio: None,
            ratio_to: None,
            key: None,
        })
    }

    /// One GEMM shape on generated operands, its C[0][0] checked against the
    /// CPU, against the FMA peak.
    fn gemm_row(&self, kern: &NetKernels, (m, n, k): (u64, u64, u64), peak: f64) -> Result<Row> {
        let (ctx, gen, timer, reps) = (self.ctx, self.gen, &self.timer, self.reps);
        let a = storage(ctx, 4 * m * k)?;
        let b = storage(ctx, 4 * n * k)?;
        let c = storage(ctx, 4 * m * n)?;
        // Fill A and B with the generator so the products are real numbers.
        let mut fill = Batch::default();
        for (buf, count, t) in [(&a, m * k, 1u32), (&b, n * k, 2)] {
            let req = GenRequest {
                kernel: Kernel::Dist(Dist::Uniform),
                seed: 3,
                tensor_id: t,
                start: 0,
                count,
                scale: 1.0,
            };
            gen.encode_into(&mut fill, &req, buf, &GenOptions::default())?;
        }
        fill.submit(ctx)?;
        let p = GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            lda: k as u32,
            ldb: k as u32,
            ldc: n as u32,
            ..Default::default()
        };
        let choice = kern.tuner().choose(GemmForm::Nt, p.m, p.n, p.k)?;
        let mut work = Batch::default();
        kern.gemm(&mut work, GemmForm::Nt, &p, &a, &b, &c)?;
        let t = timer.time(reps, work)?;
        // C[0][0] against the CPU: the dot product of row 0 of A and row 0 of B.
        let mut ra = vec![0f32; k as usize];
        let mut rb = vec![0f32; k as usize];
        crate::rng::dist::fill_reference(Dist::Uniform, 1.0, 3, 1, 0, &mut ra);
        crate::rng::dist::fill_reference(Dist::Uniform, 1.0, 3, 2, 0, &mut rb);
        let want: f64 = ra
            .iter()
            .zip(&rb)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let got = f64::from(f32::from_bits(ctx.read_words(&c, 1)?[0]));
        if (got - want).abs() > 1e-4 * k as f64 {
            return Err(Error::internal(
                "benchmark",
                format!("gemm result {got} differs from the CPU's {want}"),
            ));
        }
        let rate = 2.0 * (m * n * k) as f64 / t.median_s / 1e9;
        Ok(Row {
            group: "gemm",
            name: format!("gemm A*B^T ({}, {})", choice.variant, choice.source),
            size: format!("{m}x{n}x{k}"),
            rate,
            unit: "GFLOP/s",
            time: t,
            ratio: Some(rate / peak),
            ratio_to: Some("fma".into()),
            key: None,
        })
    }

    /// The whole deep pass on the GPU and on the CPU reference (their last
    /// layer's variances must agree).
    fn network_rows(
        &self,
        kern: &NetKernels,
        width: u64,
        depth: usize,
        batch: u64,
    ) -> Result<Vec<Row>> {
        let (gen, reps) = (self.gen, self.reps);
        let cfg = he_relu(width, depth, batch);
        let mut gpu_check = 0.0;
        let tg = time_cpu(reps.min(3), || {
            gpu_check = crate::net::device::run(gen, kern, &cfg, None)?.layers[depth - 1]
                .pre
                .var;
            Ok(())
        })?;
        let mut cpu_check = 0.0;
        let tc = time_cpu(reps.min(3), || {
            cpu_check = crate::net::reference::run(&cfg, None)?.layers[depth - 1]
                .pre
                .var;
            Ok(())
        })?;
        if (gpu_check / cpu_check - 1.0).abs() > 1e-3 {
            return Err(Error::internal(
                "benchmark",
                "GPU and CPU networks disagree",
            ));
        }
        // The verification mirror in this device's arithmetic, timed once,
        // and its raw results checked equal to the device's.
        let (_, raw, layout) = crate::net::device::run_raw(
            gen,
            kern,
            &cfg,
            None,
            &crate::net::Fault::default(),
            None,
        )?;
        let mut mirror_raw = crate::net::mirror::RawPass::default();
        let class = gen.context().float_model()?.class();
        let tm = time_cpu(1, || {
            // A device of no class is still mirrored (two roundings) for the timing.
            let mode = class.unwrap_or(crate::gpu::probe::FmaMode::Unfused);
            mirror_raw = crate::net::mirror::run_in(mode, &cfg, None, &layout)?;
            Ok(())
        })?;
        let equal = crate::net::mirror::compare(&cfg, &layout, &raw, &mirror_raw)
            .first_difference
            .is_none();
        if class.is_some() && !equal {
            return Err(Error::internal(
                "benchmark",
                "the device pass differs from the CPU mirror",
            ));
        }
        let size = format!("width {width}, depth {depth}, batch {batch}, fwd+bwd");
        let (g_ms, c_ms, m_ms) = (
            tg.median_s * 1e3 / depth as f64,
            tc.median_s * 1e3 / depth as f64,
            tm.median_s * 1e3 / depth as f64,
        );
        Ok(vec![
            Row {
                group: "network",
                name: format!(
                    "CPU mirror of the GPU pass ({})",
                    if class.is_some() && equal {
                        "bit-identical"
                    } else {
                        "device of no class: not comparable"
                    }
                ),
                size: size.clone(),
                rate: m_ms,
                unit: "ms/layer",
                time: tm,
                ratio: Some(m_ms / g_ms),
                ratio_to: Some("of the GPU pass's time".into()),
                key: None,
            },
            Row {
                group: "network",
                name: "deep pass on the GPU (incl. read-back)".into(),
                size: size.clone(),
                rate: g_ms,
                unit: "ms/layer",
                time: tg,
                ratio: Some(c_ms / g_ms),
                ratio_to: Some("speed-up over the CPU reference".into()),
                key: None,
            },
            Row {
                group: "network",
                name: "deep pass on the CPU reference".into(),
                size,
                rate: c_ms,
                unit: "ms/layer",
                time: tc,
                ratio: None,
                ratio_to: None,
                key: None,
            },
        ])
    }
}

/// Runs the CPU benchmarks: the CPU backend's generation (all cores), a
/// single-threaded rand_distr baseline, and the CPU GEMM.
pub(crate) fn cpu(opts: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<Vec<Row>> {
    use rand::{RngExt, SeedableRng};
    let reps = opts.repeats;
    let n: u64 = if opts.quick { 1 << 22 } else { 1 << 24 };
    let mut rows = Vec::new();
    progress("CPU generation");
    let mut v = crate::io::host::host_vec::<f32>(n)?;
    let t = time_cpu(reps, || {
        crate::rng::cpu::fill(Dist::Normal, 1.0, 5, 0, 0, &mut v);
        Ok(())
    })?;
    let ours = n as f64 / t.median_s / 1e6;
    rows.push(Row {
        group: "cpu",
        name: format!(
            "deepinit normal, exact integer mapping ({} threads)",
            crate::rng::cpu::threads()
        ),
        size: human(n),
        rate: ours,
        unit: "Msamples/s",
        time: t,
        ratio: None,
        ratio_to: None,
        key: Some(RowKey::CpuNormal),
    });
    // Self-check: the lanes equal the scalar definition, bit for bit.
    let mut head = [0f32; 4096];
    crate::rng::dist::fill_reference(Dist::Normal, 1.0, 5, 0, 0, &mut head);
    if head.iter().zip(&v).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err(Error::internal(
            "benchmark",
            "CPU normals differ from the scalar reference",
        ));
    }
    progress("CPU generation, 1 thread");
    let t = time_cpu(reps, || {
        crate::rng::fast::fill(Dist::Normal, 1.0, 5, 0, 0, &mut v);
        Ok(())
    })?;
    let single = n as f64 / t.median_s / 1e6;
    rows.push(Row {
        group: "cpu",
        name: "deepinit normal, exact integer mapping (1 thread)".into(),
        size: human(n),
        rate: single,
        unit: "Msamples/s",
        time: t,
        ratio: Some(single / ours),
        ratio_to: Some("all threads".into()),
        key: None,
    });
    let m = (n / 4) as usize;
    let mut sink = 0f32;
    let t = time_cpu(reps, || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..m {
            sink += rng.sample::<f32, _>(rand_distr::StandardNormal);
        }
        Ok(())
    })?;
    if !sink.is_finite() {
        return Err(Error::internal(
            "benchmark",
            "rand_distr baseline produced a non-finite sum",
        ));
    }
    let base = m as f64 / t.median_s / 1e6;
    rows.push(Row {
        group: "cpu",
        name: "rand_distr StandardNormal f32, 1 thread".into(),
        size: human(m as u64),
        rate: base,
        unit: "Msamples/s",
        time: t,
        ratio: None,
        ratio_to: None,
        key: None,
    });
    if let Some(r) = rows.first_mut() {
        r.ratio = Some(ours / base);
        r.ratio_to = Some("rand_distr, 1 thread".into());
    }
    progress("CPU gemm");
    rows.push(cpu_gemm_row(opts)?);
    progress("CPU deep pass");
    rows.push(cpu_pass_row(opts)?);
    progress("CPU big layer");
    let gemm_rate = keyed(&rows, RowKey::CpuGemm).map(|r| r.rate);
    let mut big = big_layer_row("cpu", "CPU backend", opts.quick, |c| {
        crate::net::reference::run(c, None)
    })?;
    big.ratio = gemm_rate.map(|g| big.rate / g);
    big.ratio_to = Some("gemm crate sgemm".into());
    rows.push(big);
    Ok(rows)
}

/// The CPU GEMM (the `gemm` crate, as the CPU backend uses it).
fn cpu_gemm_row(opts: &BenchOptions) -> Result<Row> {
    let reps = opts.repeats;
    let (gm, gn, gk) = cpu_gemm_shape(opts.quick);
    let a: Vec<f32> = (0..gm * gk).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..gk * gn).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; gm * gn];
    let t = time_cpu(reps, || {
        crate::net::reference::sgemm(gm, gn, gk, &mut c, &a, &b, gn, 1, false)
    })?;
    let want: f32 = (0..gk).map(|p| a[p] * b[p * gn]).sum();
    if (c[0] - want).abs() > 1e-3 * want.abs().max(1.0) {
        return Err(Error::internal("benchmark", "CPU gemm result is wrong"));
    }
    Ok(Row {
        group: "cpu",
        name: format!("gemm crate sgemm ({} threads)", crate::rng::cpu::threads()),
        size: format!("{gm}x{gn}x{gk}"),
        rate: 2.0 * (gm * gn * gk) as f64 / t.median_s / 1e9,
        unit: "GFLOP/s",
        time: t,
        ratio: None,
        ratio_to: None,
        key: Some(RowKey::CpuGemm),
    })
}

/// The CPU backend's deep pass shape (width, depth, batch); numpy's and
/// PyTorch's MLP rows use the same.
pub(crate) fn cpu_pass_shape(quick: bool) -> (u64, usize, u64) {
    if quick {
        (256, 10, 64)
    } else {
        (1024, 50, 256)
    }
}

/// The network every deep-pass row runs: He init, ReLU, uniform widths.
fn he_relu(width: u64, depth: usize, batch: u64) -> crate::net::NetConfig {
    crate::net::NetConfig::uniform(
        crate::init::scheme::Scheme::HE,
        crate::act::Activation::Relu,
        width,
        depth,
        batch,
    )
}

/// The CPU backend's whole deep pass (exact draws, He init, ReLU): what
/// `deepinit forward --backend cpu` runs. Self-check: layer 1's
/// pre-activations z = x W^T, with N(0, 1) inputs and N(0, 2/n) weights,
/// have variance 2; the check allows 10%, over 9 standard errors even at the
/// quick size (64 x 256 samples, relative error about 1%).
fn cpu_pass_row(opts: &BenchOptions) -> Result<Row> {
    let (width, depth, batch) = cpu_pass_shape(opts.quick);
    let cfg = he_relu(width, depth, batch);
    let t = timed_pass(&cfg, opts.repeats.min(3), |c| {
        crate::net::reference::run(c, None)
    })?;
    Ok(Row {
        group: "cpu",
        name: "deep pass on the CPU backend (exact draws)".into(),
        size: format!("width {width}, depth {depth}, batch {batch}, fwd+bwd"),
        rate: t.median_s * 1e3 / depth as f64,
        unit: "ms/layer",
        time: t,
        ratio: None,
        ratio_to: None,
        key: Some(RowKey::CpuPass),
    })
}

/// Times `pass` on `cfg` (a [`he_relu`] network), checking each run: layer
/// 1's pre-activations z = x W^T, with N(0, 1) inputs and N(0, 2/n)
/// weights, have variance 2; 10% is over 9 standard errors even at the
/// smallest size benched (64 x 256 samples, relative error about 1%).
fn timed_pass(
    cfg: &crate::net::NetConfig,
    repeats: usize,
    mut pass: impl FnMut(&crate::net::NetConfig) -> Result<crate::net::NetStats>,
) -> Result<Timing> {
    time_cpu(repeats, || {
        let first = pass(cfg)?.layers[0].pre.var;
        if (first / 2.0 - 1.0).abs() > 0.1 {
            return Err(Error::internal(
                "benchmark",
                format!("a deep pass's first layer has variance {first}, not about 2"),
            ));
        }
        Ok(())
    })
}

/// The big-layer rows' network (width, depth, batch).
pub(crate) fn big_layer_shape(quick: bool) -> (u64, usize, u64) {
    if quick {
        (2048, 2, 64)
    } else {
        (8192, 2, 128)
    }
}

/// Flops of one forward + backward pass as deepinit runs it: per layer the
/// forward product, the backward product (not for layer 1), and the Gram
/// matrices of its input and of its gradient.
pub(crate) fn pass_flops(cfg: &crate::net::NetConfig) -> f64 {
    let b = cfg.batch as f64;
    cfg.widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (n_in, n_out) = (w[0] as f64, w[1] as f64);
            let bwd = if i > 0 { 2.0 * b * n_in * n_out } else { 0.0 };
            2.0 * b * n_in * n_out + bwd + 2.0 * b * b * (n_in + n_out)
        })
        .sum()
}

/// The big-layer row of `what` (one run after a warm-up: a layer of width
/// 8192 takes seconds on a software device): seconds per layer in the
/// size column, effective GFLOP/s as the rate.
pub(crate) fn big_layer_row(
    group: &'static str,
    what: &str,
    quick: bool,
    pass: impl FnMut(&crate::net::NetConfig) -> Result<crate::net::NetStats>,
) -> Result<Row> {
    let (width, depth, batch) = big_layer_shape(quick);
    let cfg = he_relu(width, depth, batch);
    let t = timed_pass(&cfg, 1, pass)?;
    Ok(Row {
        group,
        name: format!("big layer, {what}"),
        size: format!(
            "width {width}, depth {depth}, batch {batch}, fwd+bwd: {:.2} s/layer",
            t.median_s / depth as f64
        ),
        rate: pass_flops(&cfg) / t.median_s / 1e9,
        unit: "GFLOP/s",
        time: t,
        ratio: None,
        ratio_to: None,
        key: None,
    })
}

/// The CPU GEMM's shape (m, n, k): the numpy comparison uses the same.
pub(crate) fn cpu_gemm_shape(quick: bool) -> (usize, usize, usize) {
    if quick {
        (1024, 1024, 256)
    } else {
        (4096, 4096, 256)
    }
}

/// numpy's rows, each with the ratio of the matching row of [`cpu`] (the
/// normal generation on all threads, and its last, the GEMM) to numpy; `None`
/// when python3 with numpy is not available.
pub(crate) fn numpy_rows(cpu_rows: &[Row], quick: bool) -> Option<Vec<Row>> {
    let (m, n, k) = cpu_gemm_shape(quick);
    let (np_rng, np_gemm, version) = numpy(m, n, k)?;
    let ours_gen = keyed(cpu_rows, RowKey::CpuNormal).map_or(f64::NAN, |r| r.rate);
    let ours_gemm = keyed(cpu_rows, RowKey::CpuGemm).map_or(f64::NAN, |r| r.rate);
    let row =
        |name: String, size: String, rate: f64, unit: &'static str, ours: f64, what: &str| Row {
            group: "numpy",
            name,
            size,
            time: Timing {
                min_s: f64::NAN,
                median_s: f64::NAN,
                max_s: f64::NAN,
                repeats: 3,
                method: "cpu-wall-clock",
            },
            rate,
            unit,
            ratio: Some(ours / rate),
            ratio_to: Some(format!("deepinit {what} / numpy")),
            key: None,
        };
    Some(vec![
        row(
            format!("numpy {version} standard_normal f32, 1 thread"),
            "16M".into(),
            np_rng,
            "Msamples/s",
            ours_gen,
            "exact CPU normals",
        ),
        row(
            format!("numpy {version} float32 matmul (its BLAS)"),
            format!("{m}x{n}x{k}"),
            np_gemm,
            "GFLOP/s",
            ours_gemm,
            "CPU gemm",
        ),
    ])
}

/// The same MLP as the CPU deep pass row in numpy and PyTorch
/// (`benches/mlp_numpy.py`, run by `python3` where numpy exists), each with
/// deepinit's speed-up over it; `None` without python3 and numpy.
pub(crate) fn mlp_rows(cpu_rows: &[Row], quick: bool) -> Option<Vec<Row>> {
    let (width, depth, batch) = cpu_pass_shape(quick);
    let ours = keyed(cpu_rows, RowKey::CpuPass)?;
    let out = std::process::Command::new("python3")
        .args(["-c", include_str!("../../benches/mlp_numpy.py")])
        .args([width.to_string(), depth.to_string(), batch.to_string()])
        .arg(if quick { "2" } else { "3" })
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Row> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["what"].as_str()?.to_string(), v["seconds"].as_f64()?)))
        .map(|(what, secs)| {
            let ms = secs * 1e3 / depth as f64;
            Row {
                group: "numpy",
                name: what,
                size: ours.size.clone(),
                time: Timing::of(vec![secs], "cpu-wall-clock"),
                rate: ms,
                unit: "ms/layer",
                ratio: Some(ms / ours.rate),
                ratio_to: Some("deepinit CPU deep pass speed-up over it".into()),
                key: None,
            }
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// numpy's single-threaded `default_rng().standard_normal(dtype=float32)` rate
/// (Msamples/s) and its sgemm GFLOP/s for `m x n x k`, if `python3` with numpy
/// is available; measured with the same min-of-repeats policy.
pub(crate) fn numpy(m: usize, n: usize, k: usize) -> Option<(f64, f64, String)> {
    let script = format!(
        "import time, numpy as np\n\
         g = np.random.default_rng(0); N = 1 << 24\n\
         g.standard_normal(N, dtype=np.float32)\n\
         t = min((lambda s: (g.standard_normal(N, dtype=np.float32), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))\n\
         a = np.ones(({m}, {k}), np.float32); b = np.ones(({k}, {n}), np.float32); a @ b\n\
         tg = min((lambda s: (a @ b, time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(3))\n\
         print(N / t / 1e6, 2 * {m} * {n} * {k} / tg / 1e9, np.__version__)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.to_string(),
    ))
}

/// `n` as `16M` when it is a whole number of 2^20, else in full.
pub(crate) fn human(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else {
        n.to_string()
    }
}
