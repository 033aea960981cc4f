//! CPU reference micro-benchmarks: `cargo bench --bench cpu`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deepinit::rng::dist::{self, Dist};
use std::hint::black_box;

fn philox(c: &mut Criterion) {
    let mut g = c.benchmark_group("philox");
    g.throughput(Throughput::Elements(4 * 4096));
    g.bench_function("block_words x4096", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for i in 0..4096u64 {
                acc ^= deepinit::rng::philox::block_words(black_box(7), 0, i)[0];
            }
            acc
        })
    });
    g.finish();
}

fn distributions(c: &mut Criterion) {
    let mut g = c.benchmark_group("fill (1 thread)");
    let n = 1 << 16;
    g.throughput(Throughput::Elements(n as u64));
    let mut out = vec![0f32; n];
    for d in Dist::ALL {
        g.bench_function(format!("{} (scalar definition)", d.name()), |b| {
            b.iter(|| dist::fill_reference(d, 1.0, black_box(1), 0, 0, &mut out))
        });
        g.bench_function(format!("{} (SIMD lanes)", d.name()), |b| {
            b.iter(|| deepinit::rng::fast::fill(d, 1.0, black_box(1), 0, 0, &mut out))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("cpu backend fill (all threads)");
    let n = 1 << 22;
    g.throughput(Throughput::Elements(n as u64));
    let mut out = vec![0f32; n];
    for d in Dist::ALL {
        g.bench_function(d.name(), |b| {
            b.iter(|| deepinit::rng::cpu::fill(d, 1.0, black_box(1), 0, 0, &mut out))
        });
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu sgemm");
    for &(m, n, k) in &[(64usize, 1024usize, 1024usize), (1024, 1024, 256)] {
        let a = vec![0.5f32; m * k];
        let bm = vec![0.25f32; k * n];
        let mut cm = vec![0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_function(format!("{m}x{n}x{k} (flops)"), |b| {
            b.iter(|| deepinit::net::reference::sgemm(m, n, k, &mut cm, &a, &bm, n, 1, false))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = philox, distributions, gemm
}
criterion_main!(benches);
