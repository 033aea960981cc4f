//! The WGSL sources, loaded from `shaders/` at compile time, and how they are
//! composed into modules. WGSL has no `#include`, so a file declares what it
//! needs on its first lines, `// import rng/philox.wgsl` (another file) or
//! `// import @mulhilo` (a slot the module's builder fills: a file variant
//! or generated text), and `compose` joins the generated prelude of shared
//! constants with every file a module's roots reach, each once. WGSL's
//! module-scope declarations may come in any order, so the order of the
//! pieces is only for reading.
//!
//! `shaders/` holds one folder per role: `rng` (Philox, the integer program
//! of the mappings, generation and its known-answer kernels), `gemm` (the
//! matrix-multiply variants), `net` (activations, the MLP and transformer
//! passes, their reductions), `bench` (roofline kernels), `io` (checkpoint
//! packing) and `device` (the float-behaviour probe).

use std::borrow::Cow;

macro_rules! shader_files {
    ($($path:literal),* $(,)?) => {
        /// Every file under `shaders/`, by its path there; a test checks this
        /// list against the directory so no file escapes validation.
        pub const FILES: &[(&str, &str)] = &[
            $(($path, include_str!(concat!("../../shaders/", $path)))),*
        ];
    };
}

shader_files!(
    "rng/philox.wgsl",
    "rng/mulhilo_u32.wgsl",
    "rng/mulhilo_u64.wgsl",
    "rng/fixed.wgsl",
    "rng/init.wgsl",
    "rng/init_store_scalar.wgsl",
    "rng/init_store_vec4.wgsl",
    "rng/kat.wgsl",
    "gemm/common.wgsl",
    "gemm/tiled.wgsl",
    "gemm/direct.wgsl",
    "gemm/subgroup.wgsl",
    "net/activation.wgsl",
    "net/network.wgsl",
    "net/transformer.wgsl",
    "net/transformer_bwd.wgsl",
    "net/reduce.wgsl",
    "net/dead.wgsl",
    "bench/common.wgsl",
    "bench/roofline.wgsl",
    "bench/roofline_vec4.wgsl",
    "io/pack.wgsl",
    "device/probe.wgsl",
);

/// The source of the file at `path` under `shaders/`.
pub(crate) fn file(path: &str) -> Option<&'static str> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// The imports a source declares: its leading `// import X` lines, in order.
pub fn imports(source: &str) -> Vec<&str> {
    source
        .lines()
        .map_while(|l| l.strip_prefix("// import "))
        .map(str::trim)
        .collect()
}

/// What fills a slot (`@name`) of a module.
#[derive(Debug, Clone)]
pub(crate) enum Fill {
    /// A file under `shaders/` (its own imports are followed).
    File(&'static str),
    /// Generated text.
    Text(String),
}

/// A module's source: the prelude, then every file reachable from `roots`
/// through the imports (each file once, however it is reached, its imports
/// first), with `slots` filling the `@name` imports. What does not compose
/// is listed in [`Module::unresolved`]: an import that names no file, a slot
/// imported but not filled, filled twice, or filled but never imported. The
/// device refuses such a module, and a test composes every module and
/// requires none.
fn compose(roots: &[&'static str], slots: &[(&str, Fill)]) -> (String, Vec<String>) {
    struct Walk<'a> {
        slots: &'a [(&'a str, Fill)],
        /// What was placed: a file's path, or a text slot's name.
        seen: Vec<String>,
        used: Vec<&'a str>,
        parts: Vec<Cow<'static, str>>,
        unresolved: Vec<String>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, name: &'a str) {
            // A slot resolves to a file (placed under the file's path, so a
            // file reached both ways is placed once) or to text.
            let (key, source): (String, Option<Cow<'static, str>>) = if name.starts_with('@') {
                self.used.push(name);
                match self.slots.iter().find(|(n, _)| *n == name) {
                    Some((_, Fill::File(path))) => {
                        (path.to_string(), file(path).map(Cow::Borrowed))
                    }
                    Some((_, Fill::Text(t))) => (name.to_string(), Some(Cow::Owned(t.clone()))),
                    None => (name.to_string(), None),
                }
            } else {
                (name.to_string(), file(name).map(Cow::Borrowed))
            };
            if self.seen.contains(&key) {
                return;
            }
            self.seen.push(key);
            let Some(source) = source else {
                self.unresolved
                    .push(format!("{name} (no such file or slot)"));
                return;
            };
            if let Cow::Borrowed(text) = source {
                for i in imports(text) {
                    self.visit(i);
                }
            }
            self.parts.push(source);
        }
    }
    let mut w = Walk {
        slots,
        seen: Vec::new(),
        used: Vec::new(),
        parts: vec![Cow::Owned(crate::gpu::layout::prelude())],
        unresolved: Vec::new(),
    };
    for r in roots {
        w.visit(r);
    }
    for (k, (name, _)) in slots.iter().enumerate() {
        if slots[..k].iter().any(|(n, _)| n == name) {
            w.unresolved.push(format!("{name} (filled twice)"));
        } else if !w.used.contains(name) {
            w.unresolved
                .push(format!("{name} (filled, never imported)"));
        }
    }
    (w.parts.join("\n"), w.unresolved)
}

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
    /// Its file under `shaders/`.
    fn source(self) -> &'static str {
        match self {
            MulHi::Emulated => "rng/mulhilo_u32.wgsl",
            MulHi::Int64 => "rng/mulhilo_u64.wgsl",
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
    /// Imports that named no file, or slots left unfilled: a module with
    /// any is not built.
    pub unresolved: Vec<String>,
}

impl Module {
    /// The module of `roots` and what they import, `slots` filling `@name`s.
    fn new(name: &'static str, roots: &[&'static str], slots: &[(&str, Fill)]) -> Module {
        let (source, unresolved) = compose(roots, slots);
        Module {
            name,
            needs_int64: false,
            needs_subgroups: false,
            source,
            unresolved,
        }
    }
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

    /// Its file under `shaders/`.
    fn source(self) -> &'static str {
        match self {
            Store::Scalar => "rng/init_store_scalar.wgsl",
            Store::Vec4 => "rng/init_store_vec4.wgsl",
        }
    }
}

/// The slots of the generation and known-answer modules: the multiply and
/// the integer program's generated constants.
fn rng_slots(mulhi: MulHi) -> Vec<(&'static str, Fill)> {
    vec![
        ("@mulhilo", Fill::File(mulhi.source())),
        (
            "@fixed_constants",
            Fill::Text(crate::rng::fixed::wgsl_constants()),
        ),
    ]
}

/// The weight generation module (entry points `gen_bits`, `gen_normal`,
/// `gen_uniform`, `gen_truncated`) with the given multiply and store.
pub fn init_module(mulhi: MulHi, store: Store) -> Module {
    let name = match (mulhi, store) {
        (MulHi::Emulated, Store::Scalar) => "init",
        (MulHi::Int64, Store::Scalar) => "init_int64",
        (MulHi::Emulated, Store::Vec4) => "init_vec4",
        (MulHi::Int64, Store::Vec4) => "init_int64_vec4",
    };
    let mut slots = rng_slots(mulhi);
    slots.push(("@store", Fill::File(store.source())));
    let mut m = Module::new(name, &["rng/init.wgsl"], &slots);
    m.needs_int64 = mulhi == MulHi::Int64;
    m
}

/// The known-answer module (entry points `philox_kat` and `unit_kat`).
pub(crate) fn kat_module(mulhi: MulHi) -> Module {
    let name = match mulhi {
        MulHi::Emulated => "kat",
        MulHi::Int64 => "kat_int64",
    };
    let mut m = Module::new(name, &["rng/kat.wgsl"], &rng_slots(mulhi));
    m.needs_int64 = mulhi == MulHi::Int64;
    m
}

/// A matrix-multiply variant (entry point `gemm`; override `TRANS_B`) from
/// its kernel file (`gemm/tiled.wgsl`, `gemm/direct.wgsl`,
/// `gemm/subgroup.wgsl`): `tile` holds its tile constants
/// ([`crate::gpu::gemm::GemmVariant::module`]).
pub(crate) fn gemm_module(name: &'static str, tile: String, kernel: &'static str) -> Module {
    let mut m = Module::new(name, &[kernel], &[("@gemm_tile", Fill::Text(tile))]);
    m.needs_subgroups = kernel == "gemm/subgroup.wgsl";
    m
}

/// The activations' generated constants, for the modules that import
/// `net/activation.wgsl`.
fn act_slots() -> [(&'static str, Fill); 1] {
    [(
        "@act_constants",
        Fill::Text(crate::act::arith::wgsl_constants()),
    )]
}

/// The float-behaviour probe (entry point `float_probe`).
pub(crate) fn probe_module() -> Module {
    Module::new("probe", &["device/probe.wgsl"], &[])
}

/// The checkpoint packing kernels (`pack_bf16`, `pack_f16`; override
/// `WORKGROUP_SIZE`).
pub(crate) fn pack_module() -> Module {
    Module::new("pack", &["io/pack.wgsl"], &[])
}

/// The element-wise network kernels (`bias_act`, `grad_mul`).
pub(crate) fn network_module() -> Module {
    Module::new("network", &["net/network.wgsl"], &act_slots())
}

/// The transformer kernels, forward (`embed`, `norm`, `add_bias`,
/// `residual`, `gelu_to`, `swiglu_to`, `rope`, `att_softmax`, `lm_loss`) and
/// backward (`copy`, `hadamard`, `same_key`, `tied_gather`, `dlogits`,
/// `norm_bwd`, `swiglu_bwd`, `att_dot`, `att_tile`, `group_sum`; the
/// backward rotation is `rope` with the sines negated; attention's products
/// are the GEMM variants'); `ACT` is GELU.
pub(crate) fn transformer_module() -> Module {
    Module::new("transformer", &["net/transformer_bwd.wgsl"], &act_slots())
}

/// The statistics reduction (`partial_stats`).
pub(crate) fn reduce_module() -> Module {
    Module::new("reduce", &["net/reduce.wgsl"], &[])
}

/// The dead-unit counter (`dead_units`).
pub(crate) fn dead_module() -> Module {
    Module::new("dead", &["net/dead.wgsl"], &[])
}

/// The benchmark's roofline kernels (`fill`, `fill_coalesced`, `fma_peak`,
/// `fma_peak4`; override `WORKGROUP_SIZE`).
pub(crate) fn bench_module() -> Module {
    Module::new("bench", &["bench/roofline.wgsl"], &[])
}

/// The vec4-store fill roofline (`fill_vec4`; override `WORKGROUP_SIZE`).
pub(crate) fn bench_vec4_module() -> Module {
    Module::new("bench_vec4", &["bench/roofline_vec4.wgsl"], &[])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &'static str, path: &'static str) -> (&'static str, Fill) {
        (name, Fill::File(path))
    }

    #[test]
    fn each_file_is_placed_once_and_what_does_not_compose_is_named() {
        let mulhi = "rng/mulhilo_u32.wgsl";
        let text = file(mulhi).unwrap();
        // Reached through the slot and by its path: placed once.
        let (src, bad) = compose(&["rng/philox.wgsl", mulhi], &[slot("@mulhilo", mulhi)]);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(src.matches(text).count(), 1);
        // Imports come before their importer.
        assert!(src.find(text) < src.find(file("rng/philox.wgsl").unwrap()));
        // An unfilled slot, a missing file, a slot filled twice, one unused.
        let (_, bad) = compose(&["rng/philox.wgsl", "rng/nope.wgsl"], &[]);
        assert_eq!(
            bad,
            [
                "@mulhilo (no such file or slot)",
                "rng/nope.wgsl (no such file or slot)"
            ]
        );
        let (_, bad) = compose(
            &["rng/philox.wgsl"],
            &[
                slot("@mulhilo", mulhi),
                slot("@mulhilo", "rng/mulhilo_u64.wgsl"),
                slot("@store", "rng/init_store_vec4.wgsl"),
            ],
        );
        assert_eq!(
            bad,
            ["@mulhilo (filled twice)", "@store (filled, never imported)"]
        );
    }
}
