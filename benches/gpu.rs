//! GPU kernel micro-benchmarks: `cargo bench --bench gpu`. Each iteration is one
//! submission waited for to completion (wall clock, submission included); the
//! `deepinit bench` command reports GPU-timestamp times and roofline ratios.
//! Without an adapter this prints why and measures nothing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deepinit::gpu::launch::Batch;
use deepinit::gpu::shaders::Store;
use deepinit::gpu::{AdapterRequest, GenOptions, GenRequest, Generator, GpuContext, Kernel};
use deepinit::net::kernels::{GemmForm, GemmParams, NetKernels};
use deepinit::rng::dist::Dist;

fn buffer(ctx: &GpuContext, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn kernels(c: &mut Criterion) {
    let ctx = match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("gpu benches skipped: {e}");
            return;
        }
    };
    let gen = Generator::new(&ctx).expect("generator");
    let n: u64 = 1 << 22;
    let out = buffer(&ctx, 4 * n);
    let mut g = c.benchmark_group(format!("generation on {}", ctx.adapter().name));
    g.throughput(Throughput::Bytes(4 * n));
    for d in Dist::ALL {
        let req = GenRequest {
            kernel: Kernel::Dist(d),
            seed: 1,
            tensor_id: 0,
            start: 0,
            count: n,
            scale: 1.0,
        };
        for store in Store::ALL {
            let opts = GenOptions {
                store,
                ..GenOptions::default()
            };
            let mut work = Batch::default();
            gen.encode_into(&mut work, &req, &out, &opts)
                .expect("encode");
            let work = work.build(&ctx).expect("build");
            g.bench_function(format!("{} ({} stores)", d.name(), store.name()), |b| {
                b.iter(|| {
                    let mut enc = ctx.device().create_command_encoder(&Default::default());
                    work.record(&mut enc);
                    ctx.queue().submit([enc.finish()]);
                    ctx.wait_idle("bench").expect("wait");
                })
            });
        }
    }
    g.finish();
    let k = NetKernels::new(&ctx, deepinit::act::Activation::Relu).expect("kernels");
    let (m, nn, kk) = (64u64, 1024u64, 1024u64);
    let (a, bm, cm) = (
        buffer(&ctx, 4 * m * kk),
        buffer(&ctx, 4 * nn * kk),
        buffer(&ctx, 4 * m * nn),
    );
    let p = GemmParams {
        m: m as u32,
        n: nn as u32,
        k: kk as u32,
        lda: kk as u32,
        ldb: kk as u32,
        ldc: nn as u32,
        ..Default::default()
    };
    let mut g = c.benchmark_group(format!("gemm on {}", ctx.adapter().name));
    g.throughput(Throughput::Elements(2 * m * nn * kk));
    let mut work = Batch::default();
    k.gemm(&mut work, GemmForm::Nt, &p, &a, &bm, &cm)
        .expect("gemm");
    let work = work.build(&ctx).expect("build");
    g.bench_function("64x1024x1024 (flops)", |b| {
        b.iter(|| {
            let mut enc = ctx.device().create_command_encoder(&Default::default());
            work.record(&mut enc);
            ctx.queue().submit([enc.finish()]);
            ctx.wait_idle("bench").expect("wait");
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = kernels
}
criterion_main!(benches);
