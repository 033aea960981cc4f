//! The WGSL sources, loaded from `shaders/` at compile time, and how they are
//! composed into modules (WGSL has no `#include`; a module is a concatenation
//! of the generated prelude of shared constants, then library files, then the
//! kernels).

/// Philox4x32-10 block function and counter helpers (needs a `mulhilo`).
pub(crate) const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
/// `mulhilo` from 16-bit halves: portable.
pub(crate) const MULHILO_U32: &str = include_str!("../../shaders/mulhilo_u32.wgsl");
/// `mulhilo` through `u64`: needs `wgpu::Features::SHADER_INT64`.
pub(crate) const MULHILO_U64: &str = include_str!("../../shaders/mulhilo_u64.wgsl");
/// The integer program of the normal and truncated mappings (needs a `mulhilo`
/// and [`crate::rng::fixed::wgsl_constants`]).
pub(crate) const FIXED: &str = include_str!("../../shaders/fixed.wgsl");
/// Weight generation entry points.
pub(crate) const INIT: &str = include_str!("../../shaders/init.wgsl");
/// Generation output one word at a time (any chunk).
pub(crate) const INIT_STORE_SCALAR: &str = include_str!("../../shaders/init_store_scalar.wgsl");
/// Generation output one vec4 per Philox block (block-aligned chunks).
pub(crate) const INIT_STORE_VEC4: &str = include_str!("../../shaders/init_store_vec4.wgsl");

/// f32 -> bf16 / f16 packing.
pub(crate) const PACK: &str = include_str!("../../shaders/pack.wgsl");

/// The float-behaviour probe (fma fusion, subnormals, NaN in min/max).
pub(crate) const PROBE: &str = include_str!("../../shaders/probe.wgsl");

/// Philox known-answer test kernel.
pub(crate) const KAT: &str = include_str!("../../shaders/kat.wgsl");

/// What every GEMM variant shares: parameters, bindings, checked loads.
pub(crate) const GEMM_COMMON: &str = include_str!("../../shaders/gemm_common.wgsl");
/// Workgroup-tiled GEMM (variants `tiled64`, `tiled128`, `tiled128wide`,
/// `tiled64wide`).
pub(crate) const GEMM_TILED: &str = include_str!("../../shaders/gemm_tiled.wgsl");
/// Barrier-free GEMM (variant `direct`).
pub(crate) const GEMM_DIRECT: &str = include_str!("../../shaders/gemm_direct.wgsl");
/// Subgroup-broadcast GEMM (variant `subgroup`).
pub(crate) const GEMM_SUBGROUP: &str = include_str!("../../shaders/gemm_subgroup.wgsl");
/// Activations and their derivatives (library).
pub(crate) const ACTIVATION: &str = include_str!("../../shaders/activation.wgsl");
/// Bias + activation and gradient kernels.
pub(crate) const NETWORK: &str = include_str!("../../shaders/network.wgsl");
/// A transformer's element-wise, norm, attention and loss kernels.
pub(crate) const TRANSFORMER: &str = include_str!("../../shaders/transformer.wgsl");
/// The transformer's backward kernels (needs [`TRANSFORMER`]).
pub(crate) const TRANSFORMER_BWD: &str = include_str!("../../shaders/transformer_bwd.wgsl");
/// Per-workgroup partial statistics.
pub(crate) const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
/// Dead-unit counter.
pub(crate) const DEAD: &str = include_str!("../../shaders/dead.wgsl");

/// Roofline kernels of the benchmark (fill variants, FMA peaks).
pub(crate) const BENCH: &str = include_str!("../../shaders/bench.wgsl");
/// The benchmark kernels' shared parameter struct.
pub(crate) const BENCH_COMMON: &str = include_str!("../../shaders/bench_common.wgsl");
/// The vec4-store fill roofline.
pub(crate) const BENCH_VEC4: &str = include_str!("../../shaders/bench_vec4.wgsl");

/// Every file in `shaders/`, by name; a test checks this list against the
/// directory so no file escapes validation.
pub const FILES: &[(&str, &str)] = &[
    ("philox.wgsl", PHILOX),
    ("mulhilo_u32.wgsl", MULHILO_U32),
    ("mulhilo_u64.wgsl", MULHILO_U64),
    ("fixed.wgsl", FIXED),
    ("init.wgsl", INIT),
    ("init_store_scalar.wgsl", INIT_STORE_SCALAR),
    ("init_store_vec4.wgsl", INIT_STORE_VEC4),
    ("pack.wgsl", PACK),
    ("kat.wgsl", KAT),
    ("probe.wgsl", PROBE),
    ("gemm_common.wgsl", GEMM_COMMON),
    ("gemm_tiled.wgsl", GEMM_TILED),
    ("gemm_direct.wgsl", GEMM_DIRECT),
    ("gemm_subgroup.wgsl", GEMM_SUBGROUP),
    ("activation.wgsl", ACTIVATION),
    ("network.wgsl", NETWORK),
    ("transformer.wgsl", TRANSFORMER),
    ("transformer_bwd.wgsl", TRANSFORMER_BWD),
    ("reduce.wgsl", REDUCE),
    ("dead.wgsl", DEAD),
    ("bench.wgsl", BENCH),
    ("bench_common.wgsl", BENCH_COMMON),
    ("bench_vec4.wgsl", BENCH_VEC4),
];

/// Which 32x32 -> 64 multiply the Philox rounds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MulHi {
    /// 16-bit halves, works everywhere.
    Emulated,
    /// Native 64-bit integers (`SHADER_INT64`).
    Int64,
}

impl MulHi {
    fn source(self) -> &'static str {
        match self {
            MulHi::Emulated => MULHILO_U32,
            MulHi::Int64 => MULHILO_U64,
        }
    }
}

/// A composed WGSL module: the files it is made of, in order.
#[derive(Debug, Clone)]
pub struct Module {
    /// Name for labels and error messages.
    pub name: &'static str,
    /// Whether the module needs `SHADER_INT64`.
    pub needs_int64: bool,
    /// Whether the module needs `SUBGROUP`.
    pub needs_subgroups: bool,
    /// The concatenated source.
    pub source: String,
}

/// How the generation kernels store a Philox block's four values. Both give
/// the same words (tested); which is faster depends on the device.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// One checked 32-bit store per element: any chunk.
    #[default]
    Scalar,
    /// One 16-byte store per block, for chunks that start on a block and
    /// hold whole blocks (the driver falls back to `Scalar` for others).
    Vec4,
}

impl Store {
    /// Both, the default first.
    pub const ALL: [Store; 2] = [Store::Scalar, Store::Vec4];

    /// `scalar` or `vec4`.
    pub fn name(self) -> &'static str {
        match self {
            Store::Scalar => "scalar",
            Store::Vec4 => "vec4",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Store::Scalar => INIT_STORE_SCALAR,
            Store::Vec4 => INIT_STORE_VEC4,
        }
    }
}

/// What the generation and known-answer modules share: the prelude, the
/// multiply, Philox, and the integer program with its generated constants.
fn rng_library(mulhi: MulHi) -> String {
    [
        &prelude(),
        mulhi.source(),
        PHILOX,
        &crate::rng::fixed::wgsl_constants(),
        FIXED,
    ]
    .join("\n")
}

/// The weight generation module (entry points `gen_bits`, `gen_normal`,
/// `gen_uniform`, `gen_truncated`) with the given multiply and store.
pub fn init_module(mulhi: MulHi, store: Store) -> Module {
    Module {
        name: match (mulhi, store) {
            (MulHi::Emulated, Store::Scalar) => "init",
            (MulHi::Int64, Store::Scalar) => "init_int64",
            (MulHi::Emulated, Store::Vec4) => "init_vec4",
            (MulHi::Int64, Store::Vec4) => "init_int64_vec4",
        },
        needs_int64: mulhi == MulHi::Int64,
        needs_subgroups: false,
        source: [&rng_library(mulhi), INIT, store.source()].join("\n"),
    }
}

/// The known-answer module (entry points `philox_kat` and `unit_kat`).
pub(crate) fn kat_module(mulhi: MulHi) -> Module {
    Module {
        name: match mulhi {
            MulHi::Emulated => "kat",
            MulHi::Int64 => "kat_int64",
        },
        needs_int64: mulhi == MulHi::Int64,
        needs_subgroups: false,
        source: [&rng_library(mulhi), KAT].join("\n"),
    }
}

fn plain(name: &'static str, parts: &[&str]) -> Module {
    let prelude = prelude();
    Module {
        name,
        needs_int64: false,
        needs_subgroups: false,
        source: std::iter::once(prelude.as_str())
            .chain(parts.iter().copied())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The generated constants every module starts with ([`crate::gpu::layout::prelude`]).
fn prelude() -> String {
    crate::gpu::layout::prelude()
}

/// A matrix-multiply variant (entry point `gemm`; override `TRANS_B`):
/// `header` holds its tile constants ([`crate::gpu::gemm::GemmVariant::module`]).
pub(crate) fn gemm_module(name: &'static str, header: &str, kernel: &str) -> Module {
    let mut m = plain(name, &[header, GEMM_COMMON, kernel]);
    m.needs_subgroups = kernel == GEMM_SUBGROUP;
    m
}

/// The float-behaviour probe (entry point `float_probe`).
pub(crate) fn probe_module() -> Module {
    plain("probe", &[PROBE])
}

/// The checkpoint packing kernels (`pack_bf16`, `pack_f16`; override
/// `WORKGROUP_SIZE`).
pub(crate) fn pack_module() -> Module {
    plain("pack", &[PACK])
}

/// The element-wise network kernels (`bias_act`, `grad_mul`).
pub(crate) fn network_module() -> Module {
    plain(
        "network",
        &[&crate::act::arith::wgsl_constants(), ACTIVATION, NETWORK],
    )
}

/// The transformer kernels, forward (`embed`, `norm`, `add_bias`,
/// `residual`, `gelu_to`, `swiglu_to`, `rope`, `attention`, `lm_loss`) and
/// backward (`copy`, `hadamard`, `dlogits`, `norm_bwd`, `swiglu_bwd`,
/// `att_dot`, `att_dq`, `att_dkv`, `group_sum`; the backward rotation is
/// `rope` with the sines negated); `ACT` is GELU.
pub(crate) fn transformer_module() -> Module {
    plain(
        "transformer",
        &[
            &crate::act::arith::wgsl_constants(),
            ACTIVATION,
            TRANSFORMER,
            TRANSFORMER_BWD,
        ],
    )
}

/// The statistics reduction (`partial_stats`).
pub(crate) fn reduce_module() -> Module {
    plain("reduce", &[REDUCE])
}

/// The dead-unit counter (`dead_units`).
pub(crate) fn dead_module() -> Module {
    plain("dead", &[DEAD])
}

/// The benchmark's roofline kernels (`fill`, `fill_coalesced`, `fma_peak`,
/// `fma_peak4`; override `WORKGROUP_SIZE`).
pub(crate) fn bench_module() -> Module {
    plain("bench", &[BENCH_COMMON, BENCH])
}

/// The vec4-store fill roofline (`fill_vec4`; override `WORKGROUP_SIZE`).
pub(crate) fn bench_vec4_module() -> Module {
    plain("bench_vec4", &[BENCH_COMMON, BENCH_VEC4])
}

/// Every module deepinit builds, for validation.
pub fn all_modules() -> Vec<Module> {
    let mut v: Vec<Module> = crate::gpu::gemm::GemmVariant::ALL
        .into_iter()
        .map(|g| g.module())
        .collect();
    v.extend([
        network_module(),
        transformer_module(),
        reduce_module(),
        dead_module(),
        bench_module(),
        bench_vec4_module(),
        pack_module(),
        probe_module(),
    ]);
    for m in [MulHi::Emulated, MulHi::Int64] {
        for s in Store::ALL {
            v.push(init_module(m, s));
        }
        v.push(kat_module(m));
    }
    v
}
