//! What is exact enough to predict about a transformer at init.
//!
//! **Loss at init.** Row r's loss is `LSE(l_r) - l_r[target]`. When the
//! logits of a row are spread as N(mu_r, s^2) over a vocabulary of V,
//! `LSE(l_r) = mu_r + ln V + ln mean_j e^(l_j - mu_r)`, and the last term is
//! `s^2 / 2` up to a fluctuation of standard deviation about `s / sqrt(V)`
//! (a mean of V log-normal terms). The target's logit is `mu_r + eps_r`,
//! eps_r ~ N(0, s^2), independent across rows whose targets are random.
//! So the mean loss over N rows is `ln V + s^2 / 2` with standard deviation
//! `s / sqrt(N)`, plus at most `s / sqrt(V)` per row, which averages no
//! lower. The band is six of the first and two of the second:
//! `6 s / sqrt(N) + 2 s / sqrt(V)`, a false alarm under 1e-8 where the
//! Gaussian picture holds. It holds for small logits only: with `s >= 1`
//! the sum is dominated by its largest terms and no verdict is given. `s^2`
//! is the logits' overall variance, an upper bound on the within-row one (the
//! rows' means differ by the dot product of a unit-variance vector with the
//! mean of the head's rows, tiny at init).
//!
//! **Norm outputs.** At init a norm's gain is 1 and its bias 0, so a row
//! of variance v (LayerNorm: about the row's mean; RMSNorm: its mean square)
//! leaves with mean square exactly `v / (v + eps)`: near 1 however the
//! stream has grown, short of it by `eps / (v + eps)` where the stream is as
//! small as eps. The prediction is the mean of that over the rows entering
//! the norm, measured on the device; the band is the f32 rounding of the two
//! sides ([`NormCheck`]), so the check is exact up to rounding.
//!
//! **Residual recursion.** `Var(x + b) = Var(x) + Var(b) + 2 Cov(x, b)`:
//! the stream's growth is its branches' variances unless a branch correlates
//! with the stream. The measured covariance term (from the three measured
//! variances) is reported. Averaged over the output projection's draw it is
//! zero for either branch; its fluctuation is not derived, so it has no band.

use super::TfmStats;
use serde::Serialize;

/// The loss at init against its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossCheck {
    /// ln(vocab): the loss of uniform predictions.
    pub ln_vocab: f64,
    /// ln V + s^2 / 2.
    pub predicted: f64,
    /// The half-width of the band.
    pub band: f64,
    /// The measured mean loss.
    pub measured: f64,
    /// Whether the prediction applies (logits' std below 1).
    pub applies: bool,
    /// Inside the band (false where it does not apply).
    pub pass: bool,
}

/// [`LossCheck`] of a pass with `vocab` entries.
pub(crate) fn loss_check(s: &TfmStats, vocab: u64) -> Option<LossCheck> {
    let measured = s.loss?;
    let var = s.logits.as_ref()?.var;
    let sd = var.sqrt();
    let ln_vocab = (vocab as f64).ln();
    let n = s.loss_rows.max(1) as f64;
    let band = 6.0 * sd / n.sqrt() + 2.0 * sd / (vocab as f64).sqrt();
    let predicted = ln_vocab + var / 2.0;
    let applies = sd < 1.0;
    Some(LossCheck {
        ln_vocab,
        predicted,
        band,
        measured,
        applies,
        pass: applies && (measured - predicted).abs() <= band,
    })
}

/// One residual addition's terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recursion {
    /// Block.
    pub block: u64,
    /// `attn` or `mlp`.
    pub branch: &'static str,
    /// Var(stream) before.
    pub before: f64,
    /// Var(branch).
    pub branch_var: f64,
    /// Var(stream) after.
    pub after: f64,
    /// 2 Cov = after - before - branch.
    pub cov2: f64,
}

/// Every residual addition of a pass. Post-norm (BERT), each addition's
/// stream is the previous norm's output and `mid`, `out` are the sums.
pub(crate) fn recursion(s: &TfmStats, post_norm: bool) -> Vec<Recursion> {
    let mut v = Vec::new();
    let mut before = s.embed.var;
    for b in &s.blocks {
        for (branch, bv, after, next) in [
            ("attn", &b.attn, &b.mid, &b.norm),
            ("mlp", &b.mlp, &b.out, &b.norm2),
        ] {
            v.push(Recursion {
                block: b.block,
                branch,
                before,
                branch_var: bv.var,
                after: after.var,
                cov2: after.var - before - bv.var,
            });
            before = if post_norm { next.var } else { after.var };
        }
    }
    v
}

/// One block's MLP branch against its mean-field prediction.
///
/// The branch is `y = phi(h W1) W2` (zero biases, as every init rule here
/// sets them), with h the second norm's output (post-norm: the first's): E[h^2] = q is measured
/// (`norm2`), W1's and W2's entries are N(0, s1^2), N(0, s2^2) by the rule.
/// Each hidden pre-activation is then N(0, q E s1^2) (E the width), so
/// `E[y^2] = I s2^2 E[phi(z)^2]` (I the MLP width); for SwiGLU,
/// `phi = silu(g) u` with g and u independent, `E[phi^2] = E[silu(g)^2] E[u^2]`.
///
/// The measured mean square fluctuates with the draw of W2's E columns (each
/// column's mean square has relative variance `2 tr(M^2) / tr(M)^2`, M the
/// hidden features' second-moment matrix: a spike of `I m1^2` from their mean
/// m1 = E(phi) plus a bulk of I eigenvalues near `m2 - m1^2`, inflated by
/// `1 + I/N` for N rows) and with W1's I columns (relative variance at most
/// `(E[phi^4] / E[phi^2]^2 - 1) / I`). The band is six standard deviations of
/// their sum: a false alarm under 2e-9 per block where the Gaussian picture
/// holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MlpCheck {
    /// Block.
    pub block: u64,
    /// Predicted E[y^2].
    pub predicted: f64,
    /// Measured mean square of the branch.
    pub measured: f64,
    /// Half-width of the band.
    pub band: f64,
    /// Inside the band.
    pub pass: bool,
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// [`MlpCheck`] of every block (none where a projection is not drawn).
pub(crate) fn mlp_checks(m: &super::Model, s: &TfmStats, rows: u64) -> Vec<MlpCheck> {
    let quad = crate::net::theory::Quadrature::new();
    let (e, i, n) = (m.cfg.hidden as f64, m.cfg.inter as f64, rows.max(1) as f64);
    let mut v = Vec::new();
    for (b, names) in s.blocks.iter().zip(&m.names.blocks) {
        let std = |l: &super::Linear| m.weights.std(&l.weight);
        let (Some(s1), Some(s2)) = (std(&names.mlp_in[0]), std(&names.mlp_out)) else {
            continue;
        };
        // The MLP's input: the second norm's output, or post-norm the
        // first's (the stream).
        let q = if m.cfg.post_norm {
            b.norm.mean_sq
        } else {
            b.norm2.mean_sq
        };
        let z = q * e * s1 * s1;
        let (m1, m2, m4) = match m.cfg.mlp {
            super::MlpKind::Gelu => {
                let g = |x: f64| m.cfg.gelu.f(x);
                (
                    quad.expect(z, g),
                    quad.expect(z, |x| g(x).powi(2)),
                    quad.expect(z, |x| g(x).powi(4)),
                )
            }
            super::MlpKind::SwiGlu => {
                let Some(su) = names.mlp_in.get(1).and_then(std) else {
                    continue;
                };
                let u = q * e * su * su;
                (
                    0.0,
                    quad.expect(z, |x| silu(x).powi(2)) * u,
                    quad.expect(z, |x| silu(x).powi(4)) * 3.0 * u * u,
                )
            }
        };
        if m2 <= 0.0 || !m2.is_finite() {
            continue;
        }
        let ratio = m1.powi(4) / (m2 * m2) + (m2 - m1 * m1).powi(2) * (1.0 + i / n) / (i * m2 * m2);
        let rel_var = 2.0 * ratio / e + (m4 / (m2 * m2) - 1.0).max(0.0) / i;
        let predicted = i * s2 * s2 * m2;
        let band = 6.0 * rel_var.sqrt() * predicted;
        let measured = b.mlp.mean_sq;
        v.push(MlpCheck {
            block: b.block,
            predicted,
            measured,
            band,
            pass: (measured - predicted).abs() <= band,
        });
    }
    v
}

/// A norm's output mean square against `mean_r v_r / (v_r + eps)`, the
/// value of unit gain and zero bias on rows of variances v_r.
///
/// Both sides come from the same centred values d_c = x_c - mean (the
/// kernel's, recomputed to the same bits), so their rounding is all there
/// is between them, relative to the prediction (first order in u = 2^-24,
/// every term a sum of positive squares), counted for an `fma` that rounds
/// once, and {in braces} for one that rounds the product and the sum: the
/// row's sum of d_c^2 as an `fma` chain of k = ceil(width / 256) terms per
/// lane and an 8-level tree (k + 8 {k + 9: each term's product rounds once
/// more}); 1/width rounded (1); v's product by it (1); `v + eps` in the
/// inverse root's `fma` (1 {2}); the inverse root's last Newton step (2.5:
/// its square's rounding halved, the `fma`'s and the product's {3}; doubled
/// for the square, 5 {6}); each output's rounding (1, so 2 squared); the
/// statistics reduction's chain of 16 `fma`s and 8-level tree (24 {25}).
/// That is k + 42 {k + 46}; with one more for second-order terms the band
/// is `(k + 47) u` times the prediction in either class: no false alarm
/// where the kernel normalizes as specified, while a wrong epsilon,
/// 1/(width - 1) or a missing centring moves the measured value by far more
/// than that wherever eps / v or 1/width exceeds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormCheck {
    /// The norm's statistics record (`3.ln1`, `3.ln2`, `ln_f`).
    pub norm: String,
    /// Mean over rows of v / (v + eps).
    pub predicted: f64,
    /// Mean square of the norm's output.
    pub measured: f64,
    /// Half-width of the band.
    pub band: f64,
    /// The rows' smallest and largest variance.
    pub row_var: (f64, f64),
    /// Inside the band.
    pub pass: bool,
}

/// [`NormCheck`] of every norm whose gain is all 1 and bias all 0 (every
/// drawn model's; a checkpoint's where it kept them), and whose input and
/// output are finite.
pub(crate) fn norm_checks(m: &super::Model, s: &TfmStats) -> Vec<NormCheck> {
    let k = m
        .cfg
        .hidden
        .div_ceil(u64::from(crate::gpu::layout::RED_WORKGROUP)) as f64;
    let rel = (k + 47.0) * f64::from(f32::EPSILON) / 2.0;
    let unit = |(w, b): &(String, Option<String>)| {
        let ones = m.weights.get(w).is_ok_and(|w| w.iter().all(|&g| g == 1.0));
        let zeros = b
            .as_ref()
            .is_none_or(|b| m.weights.get(b).is_ok_and(|b| b.iter().all(|&z| z == 0.0)));
        ones && zeros
    };
    let norms = s
        .blocks
        .iter()
        .zip(&m.names.blocks)
        .flat_map(|(b, n)| {
            [
                (format!("{}.ln1", b.block), &n.ln1, &b.norm_in, &b.norm),
                (format!("{}.ln2", b.block), &n.ln2, &b.norm2_in, &b.norm2),
            ]
        })
        .chain(std::iter::once((
            "ln_f".to_string(),
            &m.names.ln_f,
            &s.final_norm_in,
            &s.final_norm,
        )));
    norms
        .filter(|(_, w, input, out)| {
            input.nonfinite == 0 && out.nonfinite == 0 && input.min.is_finite() && unit(w)
        })
        .map(|(norm, _, input, out)| {
            let band = rel * input.unit_ms;
            NormCheck {
                norm,
                predicted: input.unit_ms,
                measured: out.mean_sq,
                band,
                row_var: (input.min, input.max),
                pass: (out.mean_sq - input.unit_ms).abs() <= band,
            }
        })
        .collect()
}
