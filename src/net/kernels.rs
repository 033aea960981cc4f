//! Pipelines of the network kernels (`gemm.wgsl`, `net/network.wgsl`,
//! `net/reduce.wgsl`, `net/dead.wgsl`) and how to record each on an encoder.

use crate::act::Activation;
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::launch::{Batch, Launch};
use crate::gpu::shaders;

pub use crate::gpu::gemm::GemmForm;
use crate::gpu::tune::Tuner;
use std::sync::Arc;

use crate::gpu::layout::{DeadParams, EwParams, RedParams, EW_WORKGROUP};
pub use crate::gpu::layout::{GemmParams, RECORD_ELEMS, RECORD_WORDS};

/// The compiled network kernels for one activation.
pub struct NetKernels {
    ctx: GpuContext,
    act: Activation,
    gemm: Arc<Tuner>,
    bias_act: wgpu::ComputePipeline,
    grad_mul: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    dead: wgpu::ComputePipeline,
}

impl NetKernels {
    /// Compiles the kernels; the activation is a pipeline constant. The
    /// matrix multiplies use the default variant ([`Tuner::new`]).
    pub fn new(ctx: &GpuContext, act: Activation) -> Result<Self> {
        Self::with_gemm(ctx, act, Arc::new(Tuner::new(ctx)))
    }

    /// Like [`NetKernels::new`], with the matrix multiplies dispatched by
    /// `gemm` (shared, e.g. one tuner per device).
    pub fn with_gemm(ctx: &GpuContext, act: Activation, gemm: Arc<Tuner>) -> Result<Self> {
        let net = shaders::network_module();
        let act_consts = [
            ("ACT", f64::from(crate::gpu::layout::activation_id(act))),
            ("SLOPE", act.slope()),
        ];
        Ok(Self {
            ctx: ctx.clone(),
            act,
            gemm,
            bias_act: ctx.compute_pipeline(&net, "bias_act", &act_consts)?,
            grad_mul: ctx.compute_pipeline(&net, "grad_mul", &act_consts)?,
            reduce: ctx.compute_pipeline(&shaders::reduce_module(), "partial_stats", &[])?,
            dead: ctx.compute_pipeline(&shaders::dead_module(), "dead_units", &[])?,
        })
    }

    /// The device these kernels run on.
    pub(crate) fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The activation these kernels were compiled for.
    pub(crate) fn activation(&self) -> Activation {
        self.act
    }

    /// The GEMM dispatcher.
    pub(crate) fn tuner(&self) -> &Tuner {
        &self.gemm
    }

    /// Queues `C (+)= A * op(B)` with the variant the tuner chooses.
    pub fn gemm(
        &self,
        batch: &mut Batch,
        form: GemmForm,
        p: &GemmParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<()> {
        self.gemm.record(batch, form, p, a, b, c)
    }

    fn launch(
        batch: &mut Batch,
        pipe: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) {
        batch.push(Launch {
            pipeline: pipe.clone(),
            layout: None,
            params: params.to_vec(),
            buffers: buffers.iter().map(|&b| b.into()).collect(),
            groups,
        });
    }

    fn ew_groups(&self, n: u64) -> Result<(u32, u32)> {
        self.ctx.dispatch_2d(n.div_ceil(u64::from(EW_WORKGROUP)))
    }

    /// Queues `z += bias (if `has_bias`); a = act(z)` over `n` elements of rows of `width`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bias_act(
        &self,
        batch: &mut Batch,
        n: u64,
        width: u64,
        has_bias: bool,
        bias: &wgpu::Buffer,
        z: &wgpu::Buffer,
        a: &wgpu::Buffer,
    ) -> Result<()> {
        self.bias_act_flipping(batch, n, width, has_bias, bias, z, a, None)
    }

    /// [`NetKernels::bias_act`], adding one ULP to output element `flip` (an
    /// injected defect, for tests).
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub(crate) fn bias_act_flipping(
        &self,
        batch: &mut Batch,
        n: u64,
        width: u64,
        has_bias: bool,
        bias: &wgpu::Buffer,
        z: &wgpu::Buffer,
        a: &wgpu::Buffer,
        flip: Option<u64>,
    ) -> Result<()> {
        let p = EwParams {
            n: n as u32,
            width: width as u32,
            has_bias: u32::from(has_bias),
            zero: 0,
            flip: flip.and_then(|f| u32::try_from(f).ok()).unwrap_or(u32::MAX),
            ..EwParams::default()
        };
        let g = self.ew_groups(n)?;
        Self::launch(
            batch,
            &self.bias_act,
            bytemuck::bytes_of(&p),
            &[z, a, bias],
            g,
        );
        Ok(())
    }

    /// Queues `delta *= act'(z)` over `n` elements.
    pub(crate) fn grad_mul(
        &self,
        batch: &mut Batch,
        n: u64,
        z: &wgpu::Buffer,
        delta: &wgpu::Buffer,
    ) -> Result<()> {
        let p = EwParams {
            n: n as u32,
            width: 1,
            has_bias: 0,
            zero: 0,
            flip: u32::MAX,
            ..EwParams::default()
        };
        let g = self.ew_groups(n)?;
        // grad_mul's derived layout has no bias binding.
        Self::launch(
            batch,
            &self.grad_mul,
            bytemuck::bytes_of(&p),
            &[z, delta],
            g,
        );
        Ok(())
    }

    /// Number of reduction records for a tensor of `n` elements.
    pub(crate) fn records(n: u64) -> u64 {
        n.div_ceil(RECORD_ELEMS)
    }

    /// Queues the partial statistics of `x` (`n` elements) into records
    /// `rec ..` of `recs`.
    pub(crate) fn reduce(
        &self,
        batch: &mut Batch,
        x: &wgpu::Buffer,
        n: u64,
        rec: u64,
        saturation: Option<(f32, f32)>,
        recs: &wgpu::Buffer,
    ) -> Result<()> {
        let (lo, hi) = saturation.unwrap_or((0.0, 0.0));
        let p = RedParams {
            n: n as u32,
            rec: rec as u32,
            sat_enabled: u32::from(saturation.is_some()),
            _pad0: 0,
            sat_lo: lo,
            sat_hi: hi,
            _pad1: [0; 2],
        };
        let g = self.ctx.dispatch_2d(Self::records(n))?;
        Self::launch(batch, &self.reduce, bytemuck::bytes_of(&p), &[x, recs], g);
        Ok(())
    }

    /// Queues the dead-unit count of `x` (`rows x cols`) into counter `slot`.
    pub(crate) fn dead(
        &self,
        batch: &mut Batch,
        x: &wgpu::Buffer,
        rows: u64,
        cols: u64,
        slot: u32,
        counters: &wgpu::Buffer,
    ) -> Result<()> {
        let p = DeadParams {
            rows: rows as u32,
            cols: cols as u32,
            slot,
            _pad: 0,
        };
        let groups = cols.div_ceil(u64::from(EW_WORKGROUP));
        if groups > u64::from(self.ctx.limits().max_compute_workgroups_per_dimension) {
            return Err(Error::LimitExceeded {
                what: "layer width for the dead-unit count".into(),
                got: cols,
                max: u64::from(self.ctx.limits().max_compute_workgroups_per_dimension)
                    * u64::from(EW_WORKGROUP),
                hint: String::new(),
            });
        }
        Self::launch(
            batch,
            &self.dead,
            bytemuck::bytes_of(&p),
            &[x, counters],
            (groups as u32, 1),
        );
        Ok(())
    }
}

/// Folds reduction records `[rec, rec + count)` into tensor statistics in f64.
pub(crate) fn fold_records(words: &[u32], rec: u64, count: u64) -> Result<crate::net::TensorStats> {
    let (mut sum, mut sq) = (0.0f64, 0.0f64);
    let (mut n, mut zeros, mut sat, mut nonfinite) = (0u64, 0u64, 0u64, 0u64);
    for r in rec..rec + count {
        let w = words
            .get((r * RECORD_WORDS) as usize..((r + 1) * RECORD_WORDS) as usize)
            .ok_or_else(|| {
                Error::internal("statistics records", "read-back shorter than expected")
            })?;
        let s = f64::from(f32::from_bits(w[0]));
        sum += s * f64::from(f32::from_bits(w[1]));
        sq += s * s * f64::from(f32::from_bits(w[2]));
        n += u64::from(w[3]);
        zeros += u64::from(w[4]);
        sat += u64::from(w[5]);
        nonfinite += u64::from(w[6]);
    }
    Ok(crate::net::TensorStats::from_sums(
        n, sum, sq, zeros, sat, nonfinite,
    ))
}
