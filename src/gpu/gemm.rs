//! The matrix-multiply variants: one parameter layout ([`GemmParams`]), one
//! binding layout, several ways of staging the operands. Which one is fastest
//! depends on the device and the shape, so [`crate::gpu::tune`] times them;
//! all of them compute every element of C as the same ascending-k chain of
//! `fma`s, so on devices with an exact fma (Vulkan, Metal) the choice never
//! changes a result bit (tested on every variant at awkward sizes).

use super::context::GpuContext;
use super::launch::{Batch, Launch};
use super::layout::GemmParams;
use super::shaders::{self, Module};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// Which operand form of the matrix multiply.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GemmForm {
    /// C = A * B^T, B stored n x k (forward pass, Gram matrices).
    Nt,
    /// C = A * B, B stored k x n (backward pass).
    Nn,
}

impl GemmForm {
    /// `nt` or `nn`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GemmForm::Nt => "nt",
            GemmForm::Nn => "nn",
        }
    }
}

/// A GEMM kernel design, with its tile sizes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GemmVariant {
    /// 64x64 workgroup tile, 4x4 per invocation, double-buffered workgroup
    /// memory, BK 16.
    Tiled64,
    /// 128x128 tile, 8x8 per invocation, BK 8.
    Tiled128,
    /// 128x128 tile, 16x16 per invocation (8x8 invocations), BK 8: the most
    /// arithmetic per workgroup-memory load, for devices where such loads
    /// are dear (llvmpipe) and registers plentiful.
    Tiled128Wide,
    /// 64x128 tile, 16x16 per invocation (8x4 invocations), BK 8: the wide
    /// register tile for products of 64 rows (a batch of 64).
    Tiled64Wide,
    /// No workgroup memory, no barriers: 4x4 per invocation straight from
    /// global memory, 4 values of k at a time; 32x32 per workgroup.
    Direct,
    /// No workgroup memory, no barriers: rows of A shared through
    /// `subgroupBroadcast` at constant lanes; 32 rows x 4 columns per
    /// invocation, 32 x 256 per workgroup of 64, BK 8. Only where every
    /// subgroup has 8 to 64 lanes.
    Subgroup,
}

/// The compile-time shape of a variant (the constants of its WGSL header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileShape {
    /// Invocations per workgroup, x (columns) and y (rows).
    pub wg: (u32, u32),
    /// Rows and columns of C per invocation.
    pub per_invocation: (u32, u32),
    /// Depth of one k-step.
    pub bk: u32,
}

impl TileShape {
    /// Rows and columns of C per workgroup.
    pub(crate) fn block(&self) -> (u32, u32) {
        (
            self.wg.1 * self.per_invocation.0,
            self.wg.0 * self.per_invocation.1,
        )
    }
}

impl std::fmt::Display for GemmVariant {
    /// Its name (`tiled64`, `direct`, ...).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl GemmVariant {
    /// Every variant, the default ([`GemmVariant::Tiled64`]) first.
    pub const ALL: [GemmVariant; 6] = [
        GemmVariant::Tiled64,
        GemmVariant::Tiled128,
        GemmVariant::Tiled128Wide,
        GemmVariant::Tiled64Wide,
        GemmVariant::Direct,
        GemmVariant::Subgroup,
    ];

    /// The name used in the tuning cache, `bench` and `adapters`.
    pub fn name(self) -> &'static str {
        match self {
            GemmVariant::Tiled64 => "tiled64",
            GemmVariant::Tiled128 => "tiled128",
            GemmVariant::Tiled128Wide => "tiled128wide",
            GemmVariant::Tiled64Wide => "tiled64wide",
            GemmVariant::Direct => "direct",
            GemmVariant::Subgroup => "subgroup",
        }
    }

    /// The variant called `name`.
    pub fn from_name(name: &str) -> Option<GemmVariant> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Its tile constants.
    pub(crate) fn shape(self) -> TileShape {
        let (wg, per_invocation, bk) = match self {
            GemmVariant::Tiled64 => ((16, 16), (4, 4), 16),
            GemmVariant::Tiled128 => ((16, 16), (8, 8), 8),
            GemmVariant::Tiled128Wide => ((8, 8), (16, 16), 8),
            GemmVariant::Tiled64Wide => ((8, 4), (16, 16), 8),
            GemmVariant::Direct => ((8, 8), (4, 4), 4),
            GemmVariant::Subgroup => ((64, 1), (32, 4), 8),
        };
        TileShape {
            wg,
            per_invocation,
            bk,
        }
    }

    /// Bytes of workgroup memory it declares.
    pub(crate) fn workgroup_bytes(self) -> u32 {
        if !self.is_tiled() {
            return 0;
        }
        let s = self.shape();
        let (bm, bn) = s.block();
        // Two buffers of each operand slice, 4 bytes per element.
        2 * s.bk * (bm + bn) * 4
    }

    /// Whether it is one of the workgroup-tiled variants (`gemm/tiled.wgsl`).
    pub(crate) fn is_tiled(self) -> bool {
        matches!(
            self,
            GemmVariant::Tiled64
                | GemmVariant::Tiled128
                | GemmVariant::Tiled128Wide
                | GemmVariant::Tiled64Wide
        )
    }

    /// The composed WGSL module: prelude, the variant's constants, the shared
    /// GEMM part, the kernel.
    pub fn module(self) -> Module {
        let s = self.shape();
        let (bm, bn) = s.block();
        let (tm, tn) = s.per_invocation;
        let mut header = format!("// Tile constants of GEMM variant {}.\n", self.name());
        for (name, v) in [
            ("WG_X", s.wg.0),
            ("WG_Y", s.wg.1),
            ("TM", s.per_invocation.0),
            ("TN", s.per_invocation.1),
            ("BM", bm),
            ("BN", bn),
            ("BK", s.bk),
        ] {
            header.push_str(&format!("const {name}: u32 = {v}u;\n"));
        }
        let kernel = match self {
            GemmVariant::Direct => "gemm/direct.wgsl",
            GemmVariant::Subgroup => {
                header.push_str(&register_tile(tm, tn));
                header.push_str(&subgroup_step(tm, tn, s.bk));
                "gemm/subgroup.wgsl"
            }
            _ => {
                header.push_str(&register_tile(tm, tn));
                header.push_str(&tile_step(tm, tn));
                "gemm/tiled.wgsl"
            }
        };
        shaders::gemm_module(self.name(), header, kernel)
    }

    /// Whether `ctx`'s device can run it (workgroup memory, subgroups).
    pub(crate) fn available(self, ctx: &GpuContext) -> bool {
        let l = ctx.limits();
        let (wx, wy) = self.shape().wg;
        let fits = self.workgroup_bytes() <= l.max_compute_workgroup_storage_size
            && wx * wy <= l.max_compute_invocations_per_workgroup
            && wx <= l.max_compute_workgroup_size_x
            && wy <= l.max_compute_workgroup_size_y;
        match self {
            GemmVariant::Subgroup => {
                // Every subgroup must hold lanes 0 .. BK (the broadcasts read
                // them) and be full: at least BK lanes, at most the
                // workgroup (whose size, a power of two, they then divide).
                let (min, max) = ctx.adapter().subgroup_sizes;
                let bk = self.shape().bk;
                fits && ctx.subgroups() && min >= bk && max <= wx * wy && max.is_power_of_two()
            }
            _ => fits,
        }
    }
}

/// WGSL for a `tm` x `tn` register tile held in named private variables
/// (`acc_<row>_<column vec4>`), with straight-line code to clear it
/// (`acc_clear`) and to store it (`acc_store`): no dynamically indexed
/// arrays, which some compilers (llvmpipe among them) keep in memory rather
/// than in registers. The variant adds the code that accumulates into it
/// ([`tile_step`], [`subgroup_step`]).
fn register_tile(tm: u32, tn: u32) -> String {
    use std::fmt::Write;
    let mut w = String::from("// Generated register tile (src/gpu/gemm.rs).\n");
    let (rows, vecs) = (0..tm, 0..tn / 4);
    for r in rows.clone() {
        for j in vecs.clone() {
            let _ = writeln!(w, "var<private> acc_{r}_{j}: vec4<f32>;");
        }
    }
    w.push_str("fn acc_clear() {\n");
    for r in rows.clone() {
        for j in vecs.clone() {
            let _ = writeln!(w, "    acc_{r}_{j} = vec4<f32>(0.0);");
        }
    }
    w.push_str("}\nfn acc_store(row: u32, col: u32, checked: bool) {\n");
    for r in rows {
        for j in vecs.clone() {
            for (c, lane) in LANES.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "    store_c(row + {r}u, col + {}u, acc_{r}_{j}.{lane}, checked);",
                    4 * j + c as u32
                );
            }
        }
    }
    w.push_str("}\n");
    w
}

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// The tiled variants' k-step (`acc_step(a, b)`): rows from `tile_a[a + 0 ..]`
/// and columns from `tile_b[b + 0 ..]` of workgroup memory, as vec4 loads.
fn tile_step(tm: u32, tn: u32) -> String {
    use std::fmt::Write;
    let mut w =
        String::from("// Generated k-step (src/gpu/gemm.rs).\nfn acc_step(a: u32, b: u32) {\n");
    for i in 0..tm / 4 {
        let _ = writeln!(w, "    let a{i} = tile_a[a + {i}u];");
    }
    for j in 0..tn / 4 {
        let _ = writeln!(w, "    let b{j} = tile_b[b + {j}u];");
    }
    for r in 0..tm {
        for j in 0..tn / 4 {
            let _ = writeln!(
                w,
                "    acc_{r}_{j} = fma(vec4<f32>(a{}.{}), b{j}, acc_{r}_{j});",
                r / 4,
                LANES[(r % 4) as usize]
            );
        }
    }
    w.push_str("}\n");
    w
}

/// The subgroup variant's `bk`-deep step, twice: `sg_step_fast` (unchecked
/// loads) and `sg_step_edge` (checked). First the invocation's own columns
/// of op(B) rows k0 .. k0 + bk are loaded; then row by row, `lane` (already
/// reduced mod `bk`) loads A[row0 + r][k0 + lane], each kk takes the value
/// of lane kk through `subgroupBroadcast` at a constant lane, and the row's
/// accumulators take all `bk` fmas in a row (ascending k, as every variant),
/// so a compiler can keep them in registers for the whole step instead of
/// reloading them per k (measured 1.15-1.2x faster on llvmpipe than k-major
/// order).
fn subgroup_step(tm: u32, tn: u32, bk: u32) -> String {
    use std::fmt::Write;
    let mut w = String::from("// Generated subgroup k-steps (src/gpu/gemm.rs).\n");
    for (name, a, b) in [("fast", "a_fast", "b4_fast"), ("edge", "load_a", "b4_edge")] {
        let _ = writeln!(
            w,
            "fn sg_step_{name}(row0: u32, col: u32, k0: u32, lane: u32) {{"
        );
        for kk in 0..bk {
            for j in 0..tn / 4 {
                let _ = writeln!(w, "    let b{kk}_{j} = {b}(col + {}u, k0 + {kk}u);", 4 * j);
            }
        }
        for r in 0..tm {
            let _ = writeln!(w, "    let a{r} = {a}(row0 + {r}u, k0 + lane);");
            for kk in 0..bk {
                let _ = writeln!(
                    w,
                    "    let s{kk}_{r} = vec4<f32>(subgroupBroadcast(a{r}, {kk}u));"
                );
                for j in 0..tn / 4 {
                    let _ = writeln!(
                        w,
                        "    acc_{r}_{j} = fma(s{kk}_{r}, b{kk}_{j}, acc_{r}_{j});"
                    );
                }
            }
        }
        w.push_str("}\n");
    }
    w
}

/// The GEMM pipelines of one device, compiled on first use: at most one per
/// (variant, form), so the cache is bounded by 10 entries.
pub struct GemmKernels {
    ctx: GpuContext,
    pipelines: Mutex<HashMap<(GemmVariant, GemmForm), wgpu::ComputePipeline>>,
}

impl GemmKernels {
    /// No pipeline is built until one is used.
    pub fn new(ctx: &GpuContext) -> GemmKernels {
        GemmKernels {
            ctx: ctx.clone(),
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    /// The device.
    pub(crate) fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The variants this device can run.
    pub fn available(&self) -> Vec<GemmVariant> {
        GemmVariant::ALL
            .into_iter()
            .filter(|v| v.available(&self.ctx))
            .collect()
    }

    fn pipeline(&self, v: GemmVariant, form: GemmForm) -> Result<wgpu::ComputePipeline> {
        let mut map = self
            .pipelines
            .lock()
            .map_err(|_| Error::internal("GEMM pipelines", "cache lock poisoned"))?;
        if let Some(p) = map.get(&(v, form)) {
            return Ok(p.clone());
        }
        if !v.available(&self.ctx) {
            return Err(Error::internal(
                "GEMM pipelines",
                format!("variant {} is not available on this device", v.name()),
            ));
        }
        let trans = if form == GemmForm::Nt { 1.0 } else { 0.0 };
        let p = self
            .ctx
            .compute_pipeline(&v.module(), "gemm", &[("TRANS_B", trans)])?;
        map.insert((v, form), p.clone());
        Ok(p)
    }

    /// Queues `C (+)= A * op(B)` with variant `v`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        batch: &mut Batch,
        v: GemmVariant,
        form: GemmForm,
        p: &GemmParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<()> {
        if p.m == 0 || p.n == 0 {
            return Ok(());
        }
        let (bm, bn) = v.shape().block();
        let max = self.ctx.limits().max_compute_workgroups_per_dimension;
        let (gx, gy) = (p.n.div_ceil(bn), p.m.div_ceil(bm));
        if gx > max || gy > max {
            return Err(Error::LimitExceeded {
                what: format!("matrix multiply ({bm}x{bn} tiles per dimension)"),
                got: u64::from(gx.max(gy)),
                max: u64::from(max),
                hint: String::new(),
            });
        }
        batch.push(Launch {
            pipeline: self.pipeline(v, form)?,
            layout: None,
            params: bytemuck::bytes_of(p).to_vec(),
            buffers: vec![a.into(), b.into(), c.into()],
            groups: (gx, gy),
        });
        Ok(())
    }
}

impl GemmKernels {
    /// Runs one matrix multiply with variant `v` on host data: uploads `a`,
    /// `b` and the initial `c`, records `record` with `p`, and
    /// returns the whole of C. For tests and benchmarks; the network keeps
    /// everything on the device.
    pub fn matmul_host(
        &self,
        v: GemmVariant,
        form: GemmForm,
        p: &GemmParams,
        a: &[f32],
        b: &[f32],
        c: &[f32],
    ) -> Result<Vec<f32>> {
        let ctx = &self.ctx;
        let (ab, bb, cb) = ctx.scoped("uploading matrices", || {
            (
                ctx.storage_from("A", a),
                ctx.storage_from("B", b),
                ctx.storage_from("C", c),
            )
        })?;
        let mut batch = Batch::default();
        self.record(&mut batch, v, form, p, &ab, &bb, &cb)?;
        batch.submit(ctx)?;
        let words = ctx.read_words(&cb, c.len().max(1) as u64)?;
        Ok(words
            .into_iter()
            .take(c.len())
            .map(f32::from_bits)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_shapes_divide_evenly_and_fit_webgpu_minimums() {
        for v in GemmVariant::ALL {
            let s = v.shape();
            let (bm, bn) = s.block();
            let inv = s.wg.0 * s.wg.1;
            assert_eq!(s.per_invocation.1 % 4, 0, "{}: TN is whole vec4s", v.name());
            assert!(inv <= 256, "{}: at most 256 invocations", v.name());
            // WebGPU guarantees 16 KiB of workgroup memory.
            assert!(v.workgroup_bytes() <= 16384, "{}", v.name());
            if v.workgroup_bytes() > 0 {
                // Each invocation loads whole quads (4 rows or columns) per k-step.
                assert_eq!((bm * s.bk) % (4 * inv), 0, "{}", v.name());
                assert_eq!((bn * s.bk) % (4 * inv), 0, "{}", v.name());
                assert_eq!(s.per_invocation.0 % 4, 0, "{}", v.name());
            }
            assert_eq!(GemmVariant::from_name(v.name()), Some(v));
        }
    }

    #[test]
    fn the_register_tile_is_straight_line_code() {
        let w = register_tile(8, 8) + &tile_step(8, 8);
        assert_eq!(w.matches("var<private> acc_").count(), 16);
        assert_eq!(w.matches("= fma(").count(), 16);
        assert_eq!(w.matches("store_c(").count(), 64);
        assert!(!w.contains("for "));
        // The subgroup step: both copies, bk broadcasts per row, each lane
        // index a constant.
        let w = subgroup_step(32, 4, 8);
        assert_eq!(w.matches("= fma(").count(), 2 * 8 * 32);
        assert_eq!(w.matches("subgroupBroadcast(").count(), 2 * 8 * 32);
        assert!(w.contains("subgroupBroadcast(a31, 7u)"));
        assert!(!w.contains("for "));
    }
}
