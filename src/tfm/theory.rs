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
//! **Residual recursion.** `Var(x + b) = Var(x) + Var(b) + 2 Cov(x, b)`:
//! the stream's growth is its branches' variances unless a branch correlates
//! with the stream. The measured covariance term (from the three measured
//! variances) is reported, as a share of the stream's increase; at init it
//! is small for the MLP and not for attention (each position's value vector
//! is computed from the stream itself).

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
pub fn loss_check(s: &TfmStats, vocab: u64) -> Option<LossCheck> {
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

/// Every residual addition of a pass.
pub fn recursion(s: &TfmStats) -> Vec<Recursion> {
    let mut v = Vec::new();
    let mut before = s.embed.var;
    for b in &s.blocks {
        for (branch, bv, after) in [("attn", &b.attn, &b.mid), ("mlp", &b.mlp, &b.out)] {
            v.push(Recursion {
                block: b.block,
                branch,
                before,
                branch_var: bv.var,
                after: after.var,
                cov2: after.var - before - bv.var,
            });
            before = after.var;
        }
    }
    v
}
