//! One transformer pass on a backend, judged: the device's raw results
//! against the CPU mirror (word for word), and the loss at init against its
//! band ([`super::theory`]).

use super::theory::{self, LossCheck, MlpCheck, NormCheck, Recursion};
use super::{Comparison, Model, PassLayout, TfmStats, Tokens};
use crate::backend::{Backend, DeviceInfo};
use crate::error::Result;
use crate::gpu::probe::FmaMode;
use serde::Serialize;
use std::time::Instant;

/// How the device's results compare with the CPU mirror.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The arithmetic class mirrored.
    pub class: &'static str,
    /// The word-for-word comparison.
    pub comparison: Comparison,
}

/// A judged pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TfmReport {
    /// The transformers class.
    pub class: String,
    /// Where the config came from.
    pub source: String,
    /// The init rule.
    pub init: String,
    /// Seed.
    pub seed: u64,
    /// Where the backward pass started (a model without a head from the
    /// random direction whatever was asked); None: no backward pass.
    pub direction: Option<super::Direction>,
    /// Sequences.
    pub batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
    /// Vocabulary.
    pub vocab: u64,
    /// Width.
    pub hidden: u64,
    /// Blocks.
    pub layers: u64,
    /// Where it ran.
    pub device: DeviceInfo,
    /// Measurements.
    pub stats: TfmStats,
    /// The loss at init against ln V + s^2 / 2.
    pub loss_check: Option<LossCheck>,
    /// The residual recursion's terms.
    pub recursion: Vec<Recursion>,
    /// Each block's MLP branch against its mean-field prediction.
    pub mlp_checks: Vec<MlpCheck>,
    /// Each norm's output against its input rows' variances.
    pub norm_checks: Vec<NormCheck>,
    /// The device against the CPU mirror (None: not compared, see `not_compared`).
    pub verify: Option<Verification>,
    /// Why it was not compared.
    pub not_compared: Option<String>,
    /// Seconds on the backend.
    pub seconds: f64,
    /// Seconds of the CPU mirror.
    pub mirror_seconds: f64,
}

impl TfmReport {
    /// Whether every check that ran passed (the comparison, the MLP branches'
    /// and the norms' bands, and the loss band where it applies).
    pub fn pass(&self) -> bool {
        self.verify
            .as_ref()
            .is_none_or(|v| v.comparison.identical())
            && self
                .loss_check
                .as_ref()
                .is_none_or(|l| !l.applies || l.pass)
            && self.mlp_checks.iter().all(|c| c.pass)
            && self.norm_checks.iter().all(|c| c.pass)
    }
}

/// Runs `m` on `tokens` on `backend` (the CPU backend runs the mirror in the
/// fused class, its own arithmetic); with `verify` and a GPU, the mirror of
/// the device's arithmetic class checks it word for word.
pub fn run(
    backend: &Backend,
    m: &Model,
    source: &str,
    tokens: &Tokens,
    verify: bool,
    backward: bool,
    progress: Option<&crate::progress::Progress>,
) -> Result<TfmReport> {
    tokens.check(&m.cfg)?;
    let start = Instant::now();
    let (raw, layout, verification, not_compared, mirror_seconds) = match backend {
        Backend::Gpu(g) => {
            let (raw, layout) = super::device::run(g, m, tokens, backward, progress)?;
            let class = g.context().float_model()?.class();
            match (verify, class) {
                (false, _) => (raw, layout, None, Some("--no-verify".to_string()), 0.0),
                (true, None) => (
                    raw,
                    layout,
                    None,
                    Some("the device conforms to no arithmetic class the CPU can mirror".into()),
                    0.0,
                ),
                (true, Some(class)) => {
                    let t = Instant::now();
                    let cpu = super::mirror::run_in(class, m, tokens, &layout)?;
                    let v = Verification {
                        class: crate::net::mirror::class_name(class),
                        comparison: super::compare(&raw, &cpu),
                    };
                    (raw, layout, Some(v), None, t.elapsed().as_secs_f64())
                }
            }
        }
        Backend::Cpu => {
            // Logits a block of rows at a time, at most 2^26 values (256 MiB).
            let logit_rows = ((1u64 << 26) / m.cfg.vocab.max(1)).max(1);
            let layout = PassLayout::new(m, tokens, logit_rows, u64::MAX / 8, backward);
            let raw = super::mirror::run_in(FmaMode::Fused, m, tokens, &layout)?;
            (
                raw,
                layout,
                None,
                Some("the CPU backend is the reference".into()),
                0.0,
            )
        }
    };
    let seconds = start.elapsed().as_secs_f64() - mirror_seconds;
    let stats = super::fold(&m.cfg, tokens, &layout, &raw)?;
    Ok(TfmReport {
        class: m.cfg.class.to_string(),
        source: source.to_string(),
        init: m.init.clone(),
        seed: m.seed,
        direction: if layout.from_loss {
            Some(super::Direction::Loss)
        } else if layout.backward {
            Some(super::Direction::Random)
        } else {
            None
        },
        batch: tokens.batch,
        seq: tokens.seq,
        vocab: m.cfg.vocab,
        hidden: m.cfg.hidden,
        layers: m.cfg.layers,
        device: backend.info(),
        loss_check: theory::loss_check(&stats, m.cfg.vocab),
        recursion: theory::recursion(&stats, m.cfg.post_norm),
        norm_checks: theory::norm_checks(m, &stats),
        mlp_checks: if m.drawn {
            theory::mlp_checks(m, &stats, tokens.rows())
        } else {
            Vec::new()
        },
        stats,
        verify: verification,
        not_compared,
        seconds,
        mirror_seconds,
    })
}
