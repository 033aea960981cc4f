//! Initialization schemes: variance scaling with fans, gains and a tunable
//! variance multiplier.
//!
//! The general form is `Var(W) = multiplier * scale / fan`, with `fan` chosen by
//! the mode (fan_in, fan_out or their average). The presets:
//!
//! | scheme | scale | mode | also known as |
//! |---|---|---|---|
//! | `he` / `kaiming` | 2 | fan_in | Kaiming normal, for ReLU |
//! | `lecun` | 1 | fan_in | LeCun normal, for tanh/SELU |
//! | `xavier` / `glorot` | 1 | fan_avg | Glorot: 2 / (fan_in + fan_out) |
//! | `naive:STD` | - | - | a fixed standard deviation (the failing baselines) |
//!
//! `--gain G` replaces the preset's scale by `G^2`, as PyTorch's `kaiming_*` and
//! `xavier_*` use `calculate_gain`; `G` may be a number or an activation name
//! from [`gain`]. The multiplier multiplies the variance (so the standard
//! deviation by its square root), for every scheme including `naive`.

use crate::error::{Error, Result};
use crate::rng::dist::Dist;
use serde::Serialize;

/// Which fan the variance is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// Number of inputs to each output unit: preserves forward variance.
    FanIn,
    /// Number of outputs each input feeds: preserves backward variance.
    FanOut,
    /// (fan_in + fan_out) / 2: Glorot's compromise.
    FanAvg,
}

impl FanMode {
    /// Parses `fan_in`, `fan_out`, `fan_avg` (also with `-` or without `fan_`).
    pub fn parse(s: &str) -> Result<FanMode> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "fan_in" | "in" => Ok(FanMode::FanIn),
            "fan_out" | "out" => Ok(FanMode::FanOut),
            "fan_avg" | "avg" => Ok(FanMode::FanAvg),
            _ => Err(Error::choice("mode", s, &["fan_in", "fan_out", "fan_avg"])),
        }
    }

    /// The mode's canonical name.
    pub fn name(self) -> &'static str {
        match self {
            FanMode::FanIn => "fan_in",
            FanMode::FanOut => "fan_out",
            FanMode::FanAvg => "fan_avg",
        }
    }
}

/// An initialization scheme.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Scheme {
    /// `Var = scale / fan(mode)`.
    VarianceScaling {
        /// Preset name (`he`, `lecun`, `xavier`).
        #[serde(skip)]
        name: &'static str,
        /// Numerator of the variance.
        scale: f64,
        /// Which fan.
        mode: FanMode,
    },
    /// A fixed standard deviation, independent of the layer's size.
    Naive {
        /// The standard deviation.
        std: f64,
    },
}

impl Scheme {
    /// He / Kaiming: variance 2 / fan_in.
    pub const HE: Scheme = Scheme::VarianceScaling {
        name: "he",
        scale: 2.0,
        mode: FanMode::FanIn,
    };
    /// LeCun: variance 1 / fan_in.
    pub const LECUN: Scheme = Scheme::VarianceScaling {
        name: "lecun",
        scale: 1.0,
        mode: FanMode::FanIn,
    };
    /// Xavier / Glorot: variance 2 / (fan_in + fan_out).
    pub const XAVIER: Scheme = Scheme::VarianceScaling {
        name: "xavier",
        scale: 1.0,
        mode: FanMode::FanAvg,
    };

    /// A fixed standard deviation: positive and finite, else an error.
    ///
    /// ```
    /// use deepinit::Scheme;
    /// assert_eq!(Scheme::naive(0.02)?.name(), "naive:0.02");
    /// assert!(Scheme::naive(-1.0).is_err() && Scheme::naive(f64::NAN).is_err());
    /// # Ok::<(), deepinit::Error>(())
    /// ```
    pub fn naive(std: f64) -> Result<Scheme> {
        check_positive_finite("naive standard deviation", std)?;
        Ok(Scheme::Naive { std })
    }

    /// Parses `he`, `kaiming`, `lecun`, `xavier`, `glorot` or `naive:STD`.
    pub fn parse(s: &str) -> Result<Scheme> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "he" | "kaiming" => return Ok(Scheme::HE),
            "lecun" => return Ok(Scheme::LECUN),
            "xavier" | "glorot" => return Ok(Scheme::XAVIER),
            _ => {}
        }
        if let Some(v) = lower.strip_prefix("naive:") {
            let std: f64 = v
                .parse()
                .map_err(|_| Error::bad("scheme", s, format!("'{v}' is not a number")))?;
            check_positive_finite("naive standard deviation", std)?;
            return Ok(Scheme::Naive { std });
        }
        Err(Error::choice(
            "scheme",
            s,
            &["he", "kaiming", "lecun", "xavier", "glorot", "naive:STD"],
        ))
    }

    /// The scheme's display name (`he`, `naive:0.01`, ...).
    pub fn name(&self) -> String {
        match self {
            Scheme::VarianceScaling { name, .. } => (*name).to_string(),
            Scheme::Naive { std } => format!("naive:{std:?}"),
        }
    }
}

fn check_positive_finite(what: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v <= 0.0 {
        return Err(Error::bad(what, v, "not a finite number greater than 0"));
    }
    Ok(())
}

/// The recommended gain for an activation, as PyTorch's `calculate_gain`:
/// linear/identity/conv and sigmoid 1, tanh 5/3, relu sqrt(2),
/// `leaky_relu[:a]` sqrt(2 / (1 + a^2)) (a = 0.01 by default), selu 3/4.
/// Also accepts a plain positive number.
pub fn gain(s: &str) -> Result<f64> {
    let lower = s.trim().to_ascii_lowercase();
    let g = match lower.as_str() {
        "linear" | "identity" | "conv1d" | "conv2d" | "conv3d" | "sigmoid" => 1.0,
        "tanh" => 5.0 / 3.0,
        "relu" => 2f64.sqrt(),
        "selu" => 0.75,
        "leaky_relu" => (2.0 / (1.0 + 0.01f64 * 0.01)).sqrt(),
        other => {
            if let Some(a) = other.strip_prefix("leaky_relu:") {
                let a: f64 = a.parse().map_err(|_| {
                    Error::bad("gain", s, format!("negative slope '{a}' is not a number"))
                })?;
                if !a.is_finite() {
                    return Err(Error::bad("gain", s, "the slope must be finite"));
                }
                (2.0 / (1.0 + a * a)).sqrt()
            } else {
                let g: f64 = other.parse().map_err(|_| {
                    Error::bad("gain", s, "neither a number nor an activation's name").expecting(
                        "a positive number, linear, sigmoid, tanh, relu, leaky_relu[:a] or selu",
                    )
                })?;
                check_positive_finite("gain", g)?;
                g
            }
        }
    };
    Ok(g)
}

/// A tensor shape (row-major; PyTorch layout `[out, in/groups, k...]`):
/// one to eight dimensions, each at least 1, at most 2^64 elements in all,
/// as [`Shape::new`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shape(pub(crate) Vec<u64>);

impl Shape {
    /// The dimensions.
    pub fn dims(&self) -> &[u64] {
        &self.0
    }

    /// Parses `4096x4096`, `64x3x3x3` (also `,` or `*` as separators).
    pub fn parse(s: &str) -> Result<Shape> {
        let dims: Vec<&str> = s.split(['x', 'X', ',', '*']).map(str::trim).collect();
        if s.trim().is_empty() || dims.is_empty() {
            return Err(Error::invalid(
                "shape",
                "empty shape (expected e.g. 4096x4096)",
            ));
        }
        let mut out = Vec::with_capacity(dims.len());
        for d in dims {
            let v: u64 = d.parse().map_err(|_| {
                Error::bad(
                    "shape",
                    s,
                    format!("'{d}' is not a positive integer (expected e.g. 4096x4096)"),
                )
            })?;
            out.push(v);
        }
        Shape::new(out)
    }

    /// Checks that every dimension is at least 1 and the element count fits in u64.
    pub fn new(dims: Vec<u64>) -> Result<Shape> {
        if dims.is_empty() {
            return Err(Error::invalid(
                "shape",
                "a shape needs at least one dimension",
            ));
        }
        if dims.len() > 8 {
            return Err(Error::invalid(
                "shape",
                format!("{} dimensions (at most 8)", dims.len()),
            ));
        }
        if let Some(i) = dims.iter().position(|&d| d == 0) {
            return Err(Error::invalid(
                "shape",
                format!("dimension {i} is 0; every dimension must be at least 1"),
            ));
        }
        let shape = Shape(dims);
        shape.checked_numel().ok_or_else(|| {
            Error::invalid("shape", format!("{shape} has more than 2^64 elements"))
        })?;
        Ok(shape)
    }

    fn checked_numel(&self) -> Option<u64> {
        self.0.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }

    /// Number of elements (validated at construction).
    pub fn numel(&self) -> u64 {
        self.checked_numel().unwrap_or(u64::MAX)
    }

    /// `(fan_in, fan_out)` for a weight of this shape in `[out, in/groups, k...]`
    /// layout. A 1-D shape `[n]` has fan_in = fan_out = n. For convolutions the
    /// receptive field is the product of the trailing dimensions; each input
    /// channel feeds `out / groups` output channels, so
    /// `fan_out = out / groups * receptive_field` (PyTorch ignores groups there).
    pub fn fans(&self, groups: u64) -> Result<(u64, u64)> {
        if groups == 0 {
            return Err(Error::invalid("groups", "0 (must be at least 1)"));
        }
        let d = &self.0;
        match d.len() {
            0 => Err(Error::invalid(
                "shape",
                "a shape needs at least one dimension",
            )),
            1 => {
                if groups != 1 {
                    return Err(Error::invalid(
                        "groups",
                        "groups need a conv weight (3+ dimensions)",
                    ));
                }
                Ok((d[0], d[0]))
            }
            2 => {
                if groups != 1 {
                    return Err(Error::invalid(
                        "groups",
                        "groups need a conv weight (3+ dimensions)",
                    ));
                }
                Ok((d[1], d[0]))
            }
            _ => {
                if !d[0].is_multiple_of(groups) {
                    return Err(Error::invalid(
                        "groups",
                        format!("{groups} does not divide the {} output channels", d[0]),
                    ));
                }
                let rf: u64 = d[2..].iter().product();
                Ok((d[1] * rf, d[0] / groups * rf))
            }
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("x"))
    }
}

/// Everything needed to draw one weight tensor: a scheme, a shape, and the
/// scheme's adjustments. A value that is wrong on its own (a multiplier or
/// gain that is not positive and finite, zero groups) is refused as it is
/// set; what depends on the combination (a mode or gain with a naive scheme,
/// groups that do not divide the channels, a std that is no normal f32) is
/// refused by [`target`](Self::target), which everything that draws calls.
///
/// ```
/// use deepinit::{Dist, FanMode, InitSpec, Scheme, Shape};
/// let spec = InitSpec::new(Scheme::HE, Shape::new(vec![512, 256])?)
///     .with_mode(FanMode::FanOut)
///     .with_multiplier(0.5)?
///     .with_dist(Dist::Truncated);
/// // Var = 0.5 * 2 / fan_out.
/// assert_eq!(spec.target()?.variance, 0.5 * 2.0 / 512.0);
/// assert!(spec.clone().with_multiplier(-1.0).is_err());
/// # Ok::<(), deepinit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InitSpec {
    scheme: Scheme,
    mode: Option<FanMode>,
    gain: Option<f64>,
    multiplier: f64,
    dist: Dist,
    shape: Shape,
    groups: u64,
}

/// The resolved target of an [`InitSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// fan_in of the shape.
    pub fan_in: u64,
    /// fan_out of the shape.
    pub fan_out: u64,
    /// The mode used (None for naive).
    pub mode: Option<FanMode>,
    /// The fan the variance was divided by (None for naive).
    pub fan: Option<f64>,
    /// Numerator of the variance before the multiplier (None for naive).
    pub scale: Option<f64>,
    /// Target variance.
    pub variance: f64,
    /// Target standard deviation.
    pub std: f64,
}

impl InitSpec {
    /// A spec with the scheme's defaults (multiplier 1, normal, groups 1).
    pub fn new(scheme: Scheme, shape: Shape) -> Self {
        Self {
            scheme,
            mode: None,
            gain: None,
            multiplier: 1.0,
            dist: Dist::Normal,
            shape,
            groups: 1,
        }
    }

    /// Divides by this fan instead of the scheme's (`None`: the scheme's).
    /// Naive schemes have no fan: [`target`](Self::target) refuses a mode
    /// with them.
    pub fn with_mode(mut self, mode: impl Into<Option<FanMode>>) -> Self {
        self.mode = mode.into();
        self
    }

    /// Scales the variance numerator to `gain^2` instead of the scheme's
    /// (`None`: the scheme's). A gain must be positive and finite.
    pub fn with_gain(mut self, gain: impl Into<Option<f64>>) -> Result<Self> {
        let gain = gain.into();
        if let Some(g) = gain {
            check_positive_finite("gain", g)?;
        }
        self.gain = gain;
        Ok(self)
    }

    /// Multiplies the target variance (positive and finite; default 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Result<Self> {
        check_positive_finite("multiplier", multiplier)?;
        self.multiplier = multiplier;
        Ok(self)
    }

    /// The same spec for another shape.
    pub fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// The distribution (default normal).
    pub fn with_dist(mut self, dist: Dist) -> Self {
        self.dist = dist;
        self
    }

    /// Convolution groups (at least 1, default 1); the fans are those of one
    /// group, and [`target`](Self::target) checks they divide the channels.
    pub fn with_groups(mut self, groups: u64) -> Result<Self> {
        if groups == 0 {
            return Err(Error::invalid("groups", "0 (must be at least 1)"));
        }
        self.groups = groups;
        Ok(self)
    }

    /// Sets the multiplier without checking it here: for derived specs
    /// whose multiplier is positive by construction ([`target`](Self::target)
    /// checks it again).
    pub(crate) fn set_multiplier(&mut self, multiplier: f64) {
        self.multiplier = multiplier;
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The fan-mode override, if any.
    pub fn mode(&self) -> Option<FanMode> {
        self.mode
    }

    /// The gain override, if any.
    pub fn gain(&self) -> Option<f64> {
        self.gain
    }

    /// The variance multiplier.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The distribution.
    pub fn dist(&self) -> Dist {
        self.dist
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Convolution groups.
    pub fn groups(&self) -> u64 {
        self.groups
    }

    /// Validates the spec and computes the target variance.
    pub fn target(&self) -> Result<Target> {
        check_positive_finite("multiplier", self.multiplier)?;
        if let Some(g) = self.gain {
            check_positive_finite("gain", g)?;
        }
        let (fan_in, fan_out) = self.shape.fans(self.groups)?;
        let t = match self.scheme {
            Scheme::Naive { std } => {
                check_positive_finite("naive standard deviation", std)?;
                if self.gain.is_some() || self.mode.is_some() {
                    return Err(Error::invalid(
                        "scheme",
                        "--gain and --mode do not apply to naive:STD (a fixed standard deviation)",
                    ));
                }
                let variance = std * std * self.multiplier;
                Target {
                    fan_in,
                    fan_out,
                    mode: None,
                    fan: None,
                    scale: None,
                    variance,
                    std: variance.sqrt(),
                }
            }
            Scheme::VarianceScaling { scale, mode, .. } => {
                let mode = self.mode.unwrap_or(mode);
                let scale = self.gain.map_or(scale, |g| g * g);
                let fan = match mode {
                    FanMode::FanIn => fan_in as f64,
                    FanMode::FanOut => fan_out as f64,
                    FanMode::FanAvg => (fan_in as f64 + fan_out as f64) / 2.0,
                };
                let variance = self.multiplier * scale / fan;
                Target {
                    fan_in,
                    fan_out,
                    mode: Some(mode),
                    fan: Some(fan),
                    scale: Some(scale),
                    variance,
                    std: variance.sqrt(),
                }
            }
        };
        if !(t.std.is_finite() && t.std > 0.0 && (t.std as f32).is_normal()) {
            return Err(Error::invalid(
                "standard deviation",
                format!(
                    "{:e} (from --multiplier {:e}{}{}) is not representable as a normal f32; \
                     choose a multiplier that keeps it between 1.2e-38 and 3.4e38",
                    t.std,
                    self.multiplier,
                    self.gain
                        .map_or(String::new(), |g| format!(", --gain {g:e}")),
                    t.fan.map_or(String::new(), |f| format!(", fan {f}"))
                ),
            ));
        }
        // Every sample must be a finite f32: the largest |value| the mapping
        // can produce is max_abs_in_std() standard deviations.
        let reach = self.dist.max_abs_in_std();
        let max_std = f64::from(f32::MAX) / reach;
        if t.std > max_std {
            return Err(Error::invalid(
                "standard deviation",
                format!(
                    "{:e}: the largest {} samples (+-{:.3e}) would overflow f32; \
                     the standard deviation must be at most {max_std:.4e} (f32::MAX / {reach:.4})",
                    t.std,
                    self.dist.name(),
                    t.std * reach
                ),
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Shape {
        Shape::parse(s).unwrap()
    }

    #[test]
    fn the_builders_refuse_bad_values_at_once_and_none_restores_the_scheme() {
        let he = InitSpec::new(Scheme::HE, shape("64x32"));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(he.clone().with_multiplier(bad).is_err(), "{bad}");
            assert!(he.clone().with_gain(bad).is_err(), "{bad}");
        }
        assert!(he.clone().with_groups(0).is_err());
        // None restores the scheme's own gain and mode.
        let back = he
            .clone()
            .with_gain(2.0)
            .unwrap()
            .with_gain(None)
            .unwrap()
            .with_mode(FanMode::FanOut)
            .with_mode(None);
        assert_eq!(back, he);
        assert_eq!(back.target().unwrap().variance, 2.0 / 32.0);
    }

    #[test]
    fn presets_give_the_textbook_variances() {
        let s = shape("256x512"); // out 256, in 512
        let he = InitSpec::new(Scheme::HE, s.clone()).target().unwrap();
        assert_eq!(he.variance, 2.0 / 512.0);
        let lecun = InitSpec::new(Scheme::LECUN, s.clone()).target().unwrap();
        assert_eq!(lecun.variance, 1.0 / 512.0);
        let xavier = InitSpec::new(Scheme::XAVIER, s.clone()).target().unwrap();
        assert_eq!(xavier.variance, 2.0 / (512.0 + 256.0));
        let mut m = InitSpec::new(Scheme::HE, s.clone());
        m.multiplier = 0.5;
        m.mode = Some(FanMode::FanOut);
        assert_eq!(m.target().unwrap().variance, 0.5 * 2.0 / 256.0);
        let naive = InitSpec::new(Scheme::parse("naive:0.01").unwrap(), s)
            .target()
            .unwrap();
        assert_eq!(naive.std, 0.01);
    }

    #[test]
    fn gains_match_pytorch() {
        assert_eq!(gain("linear").unwrap(), 1.0);
        assert_eq!(gain("sigmoid").unwrap(), 1.0);
        assert_eq!(gain("tanh").unwrap(), 5.0 / 3.0);
        assert_eq!(gain("relu").unwrap(), 2f64.sqrt());
        assert_eq!(gain("selu").unwrap(), 0.75);
        assert!((gain("leaky_relu").unwrap() - 1.414_142_1).abs() < 1e-6);
        assert_eq!(gain("leaky_relu:1").unwrap(), 1.0);
        assert_eq!(gain("2.5").unwrap(), 2.5);
        // gain tanh with lecun: variance (5/3)^2 / fan_in
        let mut s = InitSpec::new(Scheme::LECUN, shape("10x100"));
        s.gain = Some(gain("tanh").unwrap());
        assert!((s.target().unwrap().variance - 25.0 / 9.0 / 100.0).abs() < 1e-15);
    }

    #[test]
    fn conv_fans_use_receptive_field_and_groups() {
        // [out 64, in 3, 5, 7]
        assert_eq!(shape("64x3x5x7").fans(1).unwrap(), (3 * 35, 64 * 35));
        // depthwise-like: 32 groups, [32, 1, 3, 3]
        assert_eq!(shape("32x1x3x3").fans(32).unwrap(), (9, 9));
        assert!(shape("30x1x3x3").fans(4).is_err());
        assert!(shape("30x10").fans(2).is_err());
        assert_eq!(shape("7").fans(1).unwrap(), (7, 7));
    }

    #[test]
    fn bad_input_is_rejected_with_a_message() {
        for bad in [
            "",
            "0x5",
            "4096x",
            "axb",
            "-3x4",
            "4294967296x4294967296",
            "1x2x3x4x5x6x7x8x9",
        ] {
            let e = Shape::parse(bad);
            assert!(e.is_err(), "{bad} accepted");
        }
        for bad in [
            "naive:nan",
            "naive:-1",
            "naive:inf",
            "naive:0",
            "naive:",
            "relu",
            "HeX",
        ] {
            assert!(Scheme::parse(bad).is_err(), "{bad} accepted");
        }
        for bad in ["nan", "-1", "inf", "0", "swish", "leaky_relu:x"] {
            assert!(gain(bad).is_err(), "{bad} accepted");
        }
        assert!(FanMode::parse("fan_sideways").is_err());
        let mut s = InitSpec::new(Scheme::HE, shape("4x4"));
        for m in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
            s.multiplier = m;
            let err = s.target().unwrap_err().to_string();
            assert!(err.contains("multiplier"), "{err}");
        }
        let mut n = InitSpec::new(Scheme::Naive { std: 1.0 }, shape("4x4"));
        n.gain = Some(2.0);
        assert!(n.target().is_err());
    }
}
