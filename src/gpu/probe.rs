//! The device's float arithmetic, probed once per device
//! (`shaders/device/probe.wgsl`): whether `fma` is fused or rounds twice, whether the
//! compiler contracts `a * b + c`, whether subnormal inputs and results are
//! kept or flushed to zero, and what `min`/`max` do with NaN. The answers are
//! compared with the CPU evaluating each candidate behaviour, so every field
//! is a fact about this device, not a guess.

use super::context::GpuContext;
use super::launch::{Batch, Launch};
use crate::error::{Error, Result};
use serde::Serialize;
use wgpu::util::DeviceExt;

/// How the device evaluates `fma(a, b, c)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FmaMode {
    /// One rounding of the exact `a b + c` (IEEE fusedMultiplyAdd).
    Fused,
    /// `a * b` rounded, then `+ c` rounded (lavapipe).
    Unfused,
    /// Neither (the probe's answer matched no IEEE evaluation).
    Other,
}

/// What `max(NaN, x)` and `min(NaN, x)` return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NanMinMax {
    /// The other operand (IEEE maxNum / minNum).
    Number,
    /// NaN.
    Nan,
    /// One of each, or anything else.
    Mixed,
}

/// The device's f32 behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FloatModel {
    /// How `fma` rounds.
    pub fma: FmaMode,
    /// Whether a plain `a * b + c` came back as one fused operation.
    pub mul_add_contracted: bool,
    /// Whether a subnormal operand is kept (`false`: flushed to zero).
    pub subnormal_inputs: bool,
    /// Whether a subnormal result is kept (`false`: flushed to zero).
    pub subnormal_results: bool,
    /// What `min`/`max` do with one NaN operand.
    pub nan_min_max: NanMinMax,
    /// Whether `floor` is exact on the probe value.
    pub floor_exact: bool,
    /// Whether `frexp` gives a subnormal's exponent (information only:
    /// deepinit's kernels take exponents from the bits; lavapipe's is wrong).
    pub frexp_subnormal: bool,
}

impl FloatModel {
    /// The arithmetic class this device conforms to, for a CPU mirror of its
    /// results: IEEE `+ - *` with subnormals kept, an `fma` that is fused or
    /// rounds twice, no contraction of plain `a * b + c`, and an exact
    /// `floor`. `None`: the device conforms to neither class.
    pub fn class(&self) -> Option<FmaMode> {
        let ieee = self.subnormal_inputs
            && self.subnormal_results
            && !self.mul_add_contracted
            && self.floor_exact;
        match self.fma {
            FmaMode::Fused | FmaMode::Unfused if ieee => Some(self.fma),
            _ => None,
        }
    }

    /// One line for people: `fma unfused (two roundings), subnormals kept, ...`.
    pub fn describe(&self) -> String {
        let fma = match self.fma {
            FmaMode::Fused => "fma fused (one rounding)",
            FmaMode::Unfused => "fma unfused (two roundings)",
            FmaMode::Other => "fma matches no IEEE evaluation",
        };
        let sub = match (self.subnormal_inputs, self.subnormal_results) {
            (true, true) => "subnormals kept",
            (false, false) => "subnormals flushed to zero",
            (true, false) => "subnormal results flushed",
            (false, true) => "subnormal inputs flushed",
        };
        let nan = match self.nan_min_max {
            NanMinMax::Number => "min/max(NaN, x) = x",
            NanMinMax::Nan => "min/max(NaN, x) = NaN",
            NanMinMax::Mixed => "min/max with NaN mixed",
        };
        let mut s = format!("{fma}, {sub}, {nan}");
        if self.mul_add_contracted {
            s.push_str(", a * b + c contracted to fma");
        }
        if !self.floor_exact {
            s.push_str(", floor inexact");
        }
        if !self.frexp_subnormal {
            s.push_str(", frexp wrong on subnormals");
        }
        s
    }
}

/// The probe's inputs: `a = b = 1 + 2^-23` and `c = -(1 + 2^-22)`, so the
/// exact `a b + c` is 2^-46 (fused) while `a * b` rounds to `1 + 2^-22`
/// (unfused: 0); a subnormal 2^-143 and 1; `p = q = 2^-70`, whose product
/// 2^-140 is subnormal; a quiet NaN; `h = 3 - 2^-22`.
const INPUTS: [u32; 9] = [
    0x3F80_0001,
    0x3F80_0001,
    0xBF80_0002,
    0x0000_0040,
    0x3F80_0000,
    0x1C80_0000,
    0x1C80_0000,
    0x7FC0_0000,
    0x403F_FFFF,
];

/// The probe's answers.
pub(crate) const ANSWERS: usize = 9;

/// `frexp(2^-143).exp`: 2^-143 = 0.5 * 2^-142.
const TINY_FREXP_EXP: i32 = -142;

/// Interprets the probe's answers.
pub(crate) fn classify(out: &[u32; ANSWERS]) -> FloatModel {
    let f = |i: usize| f32::from_bits(INPUTS[i]);
    let (a, b, c) = (f(0), f(1), f(2));
    let fused = a.mul_add(b, c).to_bits();
    let unfused = (a * b + c).to_bits();
    let fma = if out[0] == fused {
        FmaMode::Fused
    } else if out[0] == unfused {
        FmaMode::Unfused
    } else {
        FmaMode::Other
    };
    let one = f(4);
    let nan_side = |v: u32| {
        if f32::from_bits(v).is_nan() {
            NanMinMax::Nan
        } else if v == one.to_bits() {
            NanMinMax::Number
        } else {
            NanMinMax::Mixed
        }
    };
    let (mx, mn) = (nan_side(out[4]), nan_side(out[5]));
    FloatModel {
        fma,
        mul_add_contracted: out[1] == fused && fused != unfused,
        subnormal_inputs: out[2] == INPUTS[3] && out[6] == 2 * INPUTS[3],
        subnormal_results: out[3] == (f(5) * f(6)).to_bits(),
        nan_min_max: if mx == mn { mx } else { NanMinMax::Mixed },
        floor_exact: out[7] == 2f32.to_bits(),
        frexp_subnormal: out[8] as i32 == TINY_FREXP_EXP,
    }
}

/// Runs the probe on the device.
pub(crate) fn probe(ctx: &GpuContext) -> Result<FloatModel> {
    let m = super::shaders::probe_module();
    let pipeline = ctx.compute_pipeline(&m, "float_probe", &[])?;
    let (input, output) = ctx.scoped("setting up the float probe", || {
        let input = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("probe in"),
                contents: bytemuck::cast_slice(&INPUTS),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let output = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("probe out"),
            size: 4 * ANSWERS as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        (input, output)
    })?;
    let mut enc = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("float probe"),
        });
    Batch::from(Launch {
        pipeline,
        layout: None,
        params: Vec::new(),
        buffers: vec![(&input).into(), (&output).into()],
        groups: (1, 1),
    })
    .record(ctx, &mut enc)?;
    ctx.queue().submit([enc.finish()]);
    let words = ctx.read_words(&output, ANSWERS as u64)?;
    let out: [u32; ANSWERS] = words
        .try_into()
        .map_err(|_| Error::internal("float probe", "short read-back"))?;
    Ok(classify(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_separate_every_behaviour() {
        let f = |i: usize| f32::from_bits(INPUTS[i]);
        assert_eq!(f(0).mul_add(f(1), f(2)), 2f32.powi(-46));
        assert_eq!(f(0) * f(1) + f(2), 0.0);
        assert!(f(3).is_subnormal() && (f(5) * f(6)).is_subnormal());
        assert!(f(7).is_nan());
        assert_eq!(f(8).floor(), 2.0);
        assert_eq!(f(3), 2f32.powi(-143));
        assert_eq!(f64::from(f(3)) / 2f64.powi(TINY_FREXP_EXP), 0.5);
    }

    #[test]
    fn classify_names_ieee_classes_and_the_rest() {
        let f = |i: usize| f32::from_bits(INPUTS[i]);
        let ieee = |fma: f32, mul_add: f32| {
            [
                fma.to_bits(),
                mul_add.to_bits(),
                INPUTS[3],
                (f(5) * f(6)).to_bits(),
                1f32.to_bits(),
                1f32.to_bits(),
                2 * INPUTS[3],
                2f32.to_bits(),
                TINY_FREXP_EXP as u32,
            ]
        };
        let fused = f(0).mul_add(f(1), f(2));
        let unfused = f(0) * f(1) + f(2);
        let lavapipe = classify(&ieee(unfused, unfused));
        assert_eq!(lavapipe.class(), Some(FmaMode::Unfused));
        assert_eq!(lavapipe.nan_min_max, NanMinMax::Number);
        assert_eq!(
            classify(&ieee(fused, unfused)).class(),
            Some(FmaMode::Fused)
        );
        // A compiler that contracts a * b + c conforms to neither class.
        let contracted = classify(&ieee(fused, fused));
        assert!(contracted.mul_add_contracted && contracted.class().is_none());
        // Flushed subnormals conform to neither class.
        let mut ftz = ieee(unfused, unfused);
        ftz[2] = 0;
        ftz[3] = 0;
        ftz[6] = 0;
        let m = classify(&ftz);
        assert!(!m.subnormal_inputs && !m.subnormal_results && m.class().is_none());
        assert!(m.describe().contains("flushed"), "{}", m.describe());
        // An fma that matches neither evaluation.
        let mut odd = ieee(unfused, unfused);
        odd[0] = 0x3F80_0000;
        assert_eq!(classify(&odd).fma, FmaMode::Other);
        // frexp on a subnormal is reported, not required.
        let mut fr = ieee(unfused, unfused);
        fr[8] = 0;
        assert!(!classify(&fr).frexp_subnormal && classify(&fr).class().is_some());
    }
}
