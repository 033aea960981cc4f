//! Histograms of a layer's activations on an axis a whole figure shares:
//! the data behind the sweep's Glorot-and-Bengio picture.

/// A histogram of one layer's activations on an axis shared by a whole
/// figure. Every value is counted exactly once: in a bin, as an exact zero
/// (when zeros are split out, for ReLU's spike), below or above the axis, or
/// as non-finite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Histogram {
    /// Layer.
    pub layer: usize,
    /// The network's multiplier.
    pub multiplier: f64,
    /// Lower end of the shared axis.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Counts per bin of the values inside [lo, hi] (exact zeros excluded
    /// when `zeros` is counted separately).
    pub counts: Vec<u64>,
    /// Exact zeros, when split out (ReLU-like activations), else 0.
    pub zeros: u64,
    /// Finite values below `lo`.
    pub below: u64,
    /// Finite values above `hi`.
    pub above: u64,
    /// NaN / Inf values.
    pub nonfinite: u64,
}

/// Bins of every histogram.
pub(crate) const HISTOGRAM_BINS: usize = 60;

impl Histogram {
    /// Bins `a` on [lo, hi]; with `split_zeros`, exact zeros are counted apart.
    pub(crate) fn of(
        a: &[f32],
        layer: usize,
        multiplier: f64,
        (lo, hi): (f64, f64),
        split_zeros: bool,
    ) -> Histogram {
        let mut h = Histogram {
            layer,
            multiplier,
            lo,
            hi,
            counts: vec![0; HISTOGRAM_BINS],
            zeros: 0,
            below: 0,
            above: 0,
            nonfinite: 0,
        };
        let bins = HISTOGRAM_BINS as f64;
        for &v in a {
            let v = f64::from(v);
            if !v.is_finite() {
                h.nonfinite += 1;
            } else if split_zeros && v == 0.0 {
                h.zeros += 1;
            } else if v < lo {
                h.below += 1;
            } else if v > hi {
                h.above += 1;
            } else {
                h.counts[(((v - lo) / (hi - lo)) * bins)
                    .floor()
                    .clamp(0.0, bins - 1.0) as usize] += 1;
            }
        }
        h
    }

    /// Values counted in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.zeros + self.below + self.above + self.nonfinite
    }

    /// Density of bin `i`: its fraction of all values over the bin width, so
    /// the curve's area is the fraction of values drawn (inside the axis, not
    /// an exact zero when zeros are split out).
    pub(crate) fn density(&self, i: usize) -> f64 {
        let width = (self.hi - self.lo) / self.counts.len().max(1) as f64;
        self.counts[i] as f64 / (self.total().max(1) as f64 * width)
    }
}
