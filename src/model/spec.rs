//! Model specs: every named tensor of a model with its shape and rule, read
//! from TOML (or JSON) or built by a [preset](super::preset).
//!
//! ```toml
//! seed = 0
//!
//! [defaults]          # applies to every tensor that does not say otherwise
//! init = "lecun"
//!
//! [[tensor]]
//! name = "h.0.mlp.c_fc.weight"
//! shape = [768, 3072]
//! layout = "in_out"   # stored [in, out] (GPT-2's Conv1D): fans read reversed
//!
//! [[tensor]]
//! name = "h.0.mlp.c_fc.bias"
//! shape = [3072]
//! init = "zeros"
//! ```
//!
//! Keys of a tensor (and of `[defaults]`, except `name` and `shape`):
//! `init` (`he`, `lecun`, `xavier`, `naive:STD`, `zeros`, `ones`, `constant`),
//! `value` (with `constant`), `mode`, `gain`, `multiplier`, `dist`, `groups`,
//! `layout` (`out_in`, the default, or `in_out`), `split` (`rows` or `cols`:
//! the axis tensor parallelism cuts), `split_parts` (the lengths of the blocks
//! a fused tensor concatenates along that axis, each cut separately: GPT-2's
//! `c_attn` is `[768, 768, 768]`, Q|K|V) and `split_unit` (every piece a
//! multiple of it: a head's width). A tensor entry may also have `zero_rows`
//! (rows set to zero after drawing: an embedding's `padding_idx`) and `note`
//! (why it has its rule). A `[tied]` table names weights the model shares
//! instead of storing (`"lm_head.weight" = "transformer.wte.weight"`).
//! Unknown keys, duplicate names, bad shapes and rules that do not apply are
//! refused with the line (TOML) or the tensor's position (JSON).
//!
//! A tensor's Philox id is [`tensor_id`] of its name, so reordering a spec
//! changes no value.

use crate::error::{Error, Result};
use crate::init::scheme::{self, FanMode, InitSpec, Scheme, Shape, Target};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The Philox tensor id of a tensor name: 32-bit FNV-1a of its UTF-8 bytes
/// (offset basis 0x811C9DC5, prime 0x01000193).
pub fn tensor_id(name: &str) -> u32 {
    name.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// How a 2-D weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]` (PyTorch's `nn.Linear`): fan_in is the last dimension.
    OutIn,
    /// `[in, out]` (GPT-2's `Conv1D`, JAX/Flax `Dense`): fan_in is the first.
    InOut,
}

/// Which axis tensor parallelism cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Dimension 0 (column-parallel linear layers, `[out, in]`).
    Rows,
    /// The last dimension (row-parallel linear layers).
    Cols,
}

impl Split {
    /// `rows` or `cols`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Rows => "rows",
            Split::Cols => "cols",
        }
    }
}

/// How a tensor's values are made.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Drawn by a scheme (`init.shape` is the tensor's shape).
    Draw {
        /// Scheme, mode, gain, multiplier, distribution, groups.
        init: InitSpec,
        /// Where the fans are.
        layout: Layout,
    },
    /// Every element equal to this.
    Const(f32),
}

/// How tensor parallelism cuts a tensor (Megatron-LM's layouts): along one
/// axis, into `size` equal pieces of each of `parts` (the blocks a fused
/// tensor concatenates along that axis, e.g. GPT-2's Q|K|V), each piece a
/// whole number of `unit`s (a head's width, so every rank holds whole heads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpSplit {
    /// The axis cut.
    pub axis: Split,
    /// The lengths of the concatenated blocks along the axis (empty: one
    /// block, the whole axis).
    pub parts: Vec<u64>,
    /// Every piece must be a multiple of this (1: any).
    pub unit: u64,
}

impl TpSplit {
    /// A plain cut of `axis`.
    pub fn plain(axis: Split) -> TpSplit {
        TpSplit {
            axis,
            parts: Vec::new(),
            unit: 1,
        }
    }
}

/// One tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Name (the safetensors key).
    pub name: String,
    /// Shape.
    pub shape: Shape,
    /// Values.
    pub rule: Rule,
    /// Tensor-parallel cut, if any.
    pub split: Option<TpSplit>,
    /// Rows (indices along dimension 0) set to zero after drawing, as an
    /// embedding's `padding_idx` is.
    pub zero_rows: Vec<u64>,
    /// Why the tensor has its rule (free text, shown by `--print-spec`).
    pub note: Option<String>,
}

impl TensorSpec {
    /// The Philox tensor id ([`tensor_id`] of the name).
    pub fn id(&self) -> u32 {
        tensor_id(&self.name)
    }

    /// A drawn tensor of `shape` under `init` (normal, multiplier 1).
    pub fn draw(name: impl Into<String>, dims: &[u64], scheme: Scheme, layout: Layout) -> Self {
        let shape = Shape(dims.to_vec());
        TensorSpec {
            name: name.into(),
            shape: shape.clone(),
            rule: Rule::Draw {
                init: InitSpec::new(scheme, shape),
                layout,
            },
            split: None,
            zero_rows: Vec::new(),
            note: None,
        }
    }

    /// A tensor whose every element is `v`.
    pub fn constant(name: impl Into<String>, dims: &[u64], v: f32) -> Self {
        TensorSpec {
            name: name.into(),
            shape: Shape(dims.to_vec()),
            rule: Rule::Const(v),
            split: None,
            zero_rows: Vec::new(),
            note: None,
        }
    }

    /// With a tensor-parallel cut.
    pub fn split(mut self, s: TpSplit) -> Self {
        self.split = Some(s);
        self
    }

    /// With a note.
    pub fn note(mut self, n: impl Into<String>) -> Self {
        self.note = Some(n.into());
        self
    }

    /// Elements set to zero by `zero_rows` (distinct rows only).
    pub fn zeroed_elements(&self) -> u64 {
        let width: u64 = self.shape.0.iter().skip(1).product();
        let mut rows = self.zero_rows.clone();
        rows.sort_unstable();
        rows.dedup();
        rows.len() as u64 * width
    }

    /// Checks the split and the zero rows against the shape.
    fn check_extras(&self) -> Result<()> {
        let dims = &self.shape.0;
        if let Some(s) = &self.split {
            let axis_len = match s.axis {
                Split::Rows => dims[0],
                Split::Cols if dims.len() == 2 => dims[1],
                Split::Cols => {
                    return Err(Error::bad(
                        "split",
                        &self.name,
                        "cols applies to 2-D tensors only",
                    ))
                }
            };
            if !s.parts.is_empty() && s.parts.iter().sum::<u64>() != axis_len {
                return Err(Error::bad(
                    "split_parts",
                    &self.name,
                    format!(
                        "{:?} do not add up to the split axis's length {axis_len}",
                        s.parts
                    ),
                ));
            }
            if s.unit == 0 || s.parts.contains(&0) {
                return Err(Error::bad(
                    "split",
                    &self.name,
                    "split_unit and split_parts must be at least 1",
                ));
            }
        }
        if let Some(&r) = self.zero_rows.iter().find(|&&r| r >= dims[0]) {
            return Err(Error::bad(
                "zero_rows",
                &self.name,
                format!("row {r} is outside the tensor's {} rows", dims[0]),
            ));
        }
        if !self.zero_rows.is_empty() && matches!(self.rule, Rule::Const(_)) {
            return Err(Error::bad(
                "zero_rows",
                &self.name,
                "applies to drawn tensors only",
            ));
        }
        Ok(())
    }

    /// The target of a drawn tensor (its fans read through its layout).
    pub fn target(&self) -> Result<Option<Target>> {
        match &self.rule {
            Rule::Const(_) => Ok(None),
            Rule::Draw { init, layout } => Ok(Some(fan_spec(init, *layout)?.target()?)),
        }
    }
}

/// The spec whose shape gives the fans: `[in, out]` weights are read reversed.
fn fan_spec(init: &InitSpec, layout: Layout) -> Result<InitSpec> {
    if layout != Layout::InOut {
        return Ok(init.clone());
    }
    let [a, b] = init.shape().0[..] else {
        return Err(Error::invalid(
            "layout",
            "in_out applies to 2-D weights only",
        ));
    };
    Ok(init.clone().with_shape(Shape(vec![b, a])))
}

/// The most elements a model may have in all: 2^50 (4 PiB of f32), far
/// beyond any real model, and small enough that every byte count fits in 64 bits.
pub const MAX_ELEMENTS: u64 = 1 << 50;

/// A whole model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSpec {
    /// The model-wide seed.
    pub seed: u64,
    /// Tensors, in the spec's order.
    pub tensors: Vec<TensorSpec>,
    /// Tied weights: a name the model has but no file stores, and the tensor
    /// it shares its values with (`lm_head.weight` -> the token embedding).
    pub tied: BTreeMap<String, String>,
}

impl ModelSpec {
    /// Total elements.
    pub fn elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.shape.numel()).sum()
    }

    /// Checks names (non-empty, unique, distinct ids), every shape and rule,
    /// and the total size (at most [`MAX_ELEMENTS`], so every byte count
    /// derived from it fits in 64 bits).
    pub fn validate(&self) -> Result<()> {
        if self.tensors.is_empty() {
            return Err(Error::invalid("model spec", "no tensors"));
        }
        let mut total = 0u64;
        for t in &self.tensors {
            Shape::new(t.shape.0.clone())
                .map_err(|e| Error::bad("tensor", &t.name, e.to_string()))?;
            total = total
                .checked_add(t.shape.numel())
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| {
                    Error::invalid(
                        "model spec",
                        format!("more than 2^50 elements in all (at '{}')", t.name),
                    )
                })?;
        }
        let mut ids: HashMap<u32, &str> = HashMap::new();
        for t in &self.tensors {
            if t.name.is_empty() || t.name == "__metadata__" {
                return Err(Error::bad(
                    "tensor name",
                    &t.name,
                    "is reserved by the safetensors format (empty or __metadata__)",
                ));
            }
            if let Some(other) = ids.insert(t.id(), &t.name) {
                let problem = if other == t.name {
                    "appears twice".to_string()
                } else {
                    format!(
                        "has the same tensor id ({:#010x}) as '{other}'; rename one",
                        t.id()
                    )
                };
                return Err(Error::bad("tensor name", &t.name, problem));
            }
            t.target()?;
            t.check_extras()?;
        }
        for (target, source) in &self.tied {
            if self.tensors.iter().any(|t| &t.name == target) {
                return Err(Error::bad(
                    "tied",
                    target,
                    "is tied to another tensor, so it cannot also be stored",
                ));
            }
            if !self.tensors.iter().any(|t| &t.name == source) {
                return Err(Error::bad(
                    "tied",
                    target,
                    format!("is tied to '{source}', which the spec does not have"),
                ));
            }
        }
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A value that is a number or a name (`gain = 1.41` or `gain = "relu"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NumOrName {
    Num(f64),
    Name(String),
}

/// The rule keys, as written (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    init: Option<String>,
    value: Option<f64>,
    mode: Option<String>,
    gain: Option<NumOrName>,
    multiplier: Option<f64>,
    dist: Option<String>,
    groups: Option<u64>,
    layout: Option<String>,
    split: Option<String>,
    split_parts: Option<Vec<u64>>,
    split_unit: Option<u64>,
}

/// A tensor entry as written. (serde cannot combine `flatten` with
/// `deny_unknown_fields`, hence the repeated keys.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    name: String,
    shape: Vec<u64>,
    init: Option<String>,
    value: Option<f64>,
    mode: Option<String>,
    gain: Option<NumOrName>,
    multiplier: Option<f64>,
    dist: Option<String>,
    groups: Option<u64>,
    layout: Option<String>,
    split: Option<String>,
    split_parts: Option<Vec<u64>>,
    split_unit: Option<u64>,
    zero_rows: Option<Vec<u64>>,
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec<T> {
    seed: Option<u64>,
    #[serde(default)]
    defaults: RawRule,
    tensor: Vec<T>,
    #[serde(default)]
    tied: BTreeMap<String, String>,
}

impl RawTensor {
    /// This entry's keys over the defaults.
    fn rule(&self, d: &RawRule) -> RawRule {
        RawRule {
            init: self.init.clone().or_else(|| d.init.clone()),
            value: self.value.or(d.value),
            mode: self.mode.clone().or_else(|| d.mode.clone()),
            gain: self.gain.clone().or_else(|| d.gain.clone()),
            multiplier: self.multiplier.or(d.multiplier),
            dist: self.dist.clone().or_else(|| d.dist.clone()),
            groups: self.groups.or(d.groups),
            layout: self.layout.clone().or_else(|| d.layout.clone()),
            split: self.split.clone().or_else(|| d.split.clone()),
            split_parts: self.split_parts.clone().or_else(|| d.split_parts.clone()),
            split_unit: self.split_unit.or(d.split_unit),
        }
    }

    fn resolve(&self, d: &RawRule) -> Result<TensorSpec> {
        let r = self.rule(d);
        let shape = Shape::new(self.shape.clone())?;
        let split = match (r.split.as_deref(), &r.split_parts, r.split_unit) {
            (Some(axis), parts, unit) => Some(TpSplit {
                axis: parse_split(axis)?,
                parts: parts.clone().unwrap_or_default(),
                unit: unit.unwrap_or(1),
            }),
            (None, None, None) => None,
            (None, _, _) => {
                return Err(Error::invalid(
                    "split_parts",
                    "split_parts and split_unit need split = \"rows\" or \"cols\"",
                ))
            }
        };
        let init = r
            .init
            .as_deref()
            .ok_or_else(|| Error::invalid("init", "missing (set it here or in [defaults])"))?;
        let constant = match init.to_ascii_lowercase().as_str() {
            "zeros" | "zero" => Some(0.0),
            "ones" | "one" => Some(1.0),
            "constant" | "const" => Some(
                r.value
                    .ok_or_else(|| Error::invalid("value", "init = \"constant\" needs a value"))?,
            ),
            _ => None,
        };
        let rule = match constant {
            Some(v) => {
                let extra = [
                    ("mode", r.mode.is_some()),
                    ("gain", r.gain.is_some()),
                    ("multiplier", r.multiplier.is_some()),
                    ("dist", r.dist.is_some()),
                    ("groups", r.groups.is_some()),
                    ("layout", r.layout.is_some()),
                ];
                if let Some((key, _)) = extra.iter().find(|(_, set)| *set) {
                    return Err(Error::bad(
                        "rule",
                        key,
                        format!("does not apply to init = \"{init}\" (a constant)"),
                    ));
                }
                if !v.is_finite() || v.abs() > f64::from(f32::MAX) {
                    return Err(Error::bad("value", v, "not a finite f32"));
                }
                Rule::Const(v as f32)
            }
            None => {
                if r.value.is_some() {
                    return Err(Error::invalid(
                        "value",
                        "applies to init = \"constant\" only",
                    ));
                }
                let gain = match &r.gain {
                    None => None,
                    Some(NumOrName::Num(g)) => Some(scheme::gain(&g.to_string())?),
                    Some(NumOrName::Name(n)) => Some(scheme::gain(n)?),
                };
                let mut s = InitSpec::new(Scheme::parse(init)?, shape.clone())
                    .with_mode(r.mode.as_deref().map(FanMode::parse).transpose()?)
                    .with_gain(gain)?
                    .with_multiplier(r.multiplier.unwrap_or(1.0))?
                    .with_groups(r.groups.unwrap_or(1))?;
                if let Some(d) = &r.dist {
                    s = s.with_dist(d.parse()?);
                }
                let layout = match r.layout.as_deref() {
                    None | Some("out_in") => Layout::OutIn,
                    Some("in_out") => Layout::InOut,
                    Some(other) => {
                        return Err(Error::choice("layout", other, &["out_in", "in_out"]))
                    }
                };
                Rule::Draw { init: s, layout }
            }
        };
        let t = TensorSpec {
            name: self.name.clone(),
            shape,
            rule,
            split,
            zero_rows: self.zero_rows.clone().unwrap_or_default(),
            note: self.note.clone(),
        };
        t.target()?;
        t.check_extras()?;
        Ok(t)
    }
}

fn parse_split(s: &str) -> Result<Split> {
    match s {
        "rows" => Ok(Split::Rows),
        "cols" => Ok(Split::Cols),
        _ => Err(Error::choice("split", s, &["rows", "cols"])),
    }
}

/// Byte offsets of the newlines of `text`, for [`line_of`].
#[cfg(feature = "toml")]
fn newlines(text: &str) -> Vec<usize> {
    text.bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'\n').then_some(i))
        .collect()
}

/// 1-based line of byte `offset`, given the text's [`newlines`] (a binary
/// search: a spec of n tensors is located in O(n log n), not O(n^2)).
#[cfg(feature = "toml")]
fn line_of(newlines: &[usize], offset: usize) -> usize {
    newlines.partition_point(|&n| n < offset) + 1
}

/// Reads a spec file: TOML, or JSON when the name ends in `.json` (or the
/// text starts with `{`).
pub fn read(path: &Path) -> Result<ModelSpec> {
    let text = crate::io::read::read_text(path, 64 << 20)?;
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    parse(&text, json).map_err(|e| match e {
        Error::BadPath { problem, .. } => Error::path(path, problem),
        other => Error::path(path, other.to_string()),
    })
}

/// `(seed, tied, entries)` of a TOML spec, each entry with its line.
#[cfg(feature = "toml")]
#[allow(clippy::type_complexity)]
fn toml_entries(
    text: &str,
) -> Result<(
    Option<u64>,
    BTreeMap<String, String>,
    Vec<(String, Result<TensorSpec>)>,
)> {
    let raw: RawSpec<toml::Spanned<RawTensor>> = toml::from_str(text)
        .map_err(|e| Error::invalid("model spec", format!("TOML: {}", e.to_string().trim_end())))?;
    let lines = newlines(text);
    let entries: Vec<_> = raw
        .tensor
        .iter()
        .map(|t| {
            let at = format!("line {}", line_of(&lines, t.span().start));
            (at, t.get_ref().resolve(&raw.defaults))
        })
        .collect();
    Ok((raw.seed, raw.tied, entries))
}

/// Without the `toml` feature, TOML specs are refused (JSON works).
#[cfg(not(feature = "toml"))]
#[allow(clippy::type_complexity)]
fn toml_entries(
    _text: &str,
) -> Result<(
    Option<u64>,
    BTreeMap<String, String>,
    Vec<(String, Result<TensorSpec>)>,
)> {
    Err(Error::invalid(
        "model spec",
        "this build of deepinit reads JSON specs only (TOML needs the `toml` feature)",
    ))
}

/// Parses spec text (TOML, or JSON with `json`); errors name the line (TOML)
/// or the tensor's position (JSON) and the key.
pub fn parse(text: &str, json: bool) -> Result<ModelSpec> {
    let (seed, tied, entries) = if json {
        let raw: RawSpec<RawTensor> = serde_json::from_str(text)
            .map_err(|e| Error::invalid("model spec", format!("JSON: {e}")))?;
        let entries: Vec<_> = raw
            .tensor
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tensor #{}", i + 1), t.resolve(&raw.defaults)))
            .collect();
        (raw.seed, raw.tied, entries)
    } else {
        toml_entries(text)?
    };
    let mut tensors = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (at, t) in entries {
        let t = t.map_err(|e| Error::invalid("model spec", format!("{at}: {e}")))?;
        if let Some(first) = seen.insert(t.name.clone(), at.clone()) {
            return Err(Error::invalid(
                "model spec",
                format!("{at}: tensor '{}' is already defined at {first}", t.name),
            ));
        }
        tensors.push(t);
    }
    let spec = ModelSpec {
        seed: seed.unwrap_or(0),
        tensors,
        tied,
    };
    spec.validate()?;
    Ok(spec)
}

#[cfg(all(test, feature = "toml"))]
mod tests {
    use super::*;
    use crate::model::{emit, preset};

    #[test]
    fn lines_are_located_by_binary_search() {
        let text = "a\nbb\n\nccc";
        let nl = newlines(text);
        let lines: Vec<usize> = (0..text.len()).map(|i| line_of(&nl, i)).collect();
        assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4, 4, 4]);
        // An error in a long spec names the right line.
        let mut spec = String::new();
        for i in 0..2000 {
            spec += &format!("[[tensor]]\nname = \"t{i}\"\nshape = [2]\ninit = \"zeros\"\n");
        }
        spec += "[[tensor]]\nname = \"t7\"\nshape = [2]\ninit = \"zeros\"\n";
        let e = parse(&spec, false).unwrap_err().to_string();
        assert!(e.contains("line 8001") && e.contains("line 29"), "{e}");
    }

    #[test]
    fn tensor_ids_are_fnv1a_of_the_name() {
        // FNV-1a 32-bit known answers.
        assert_eq!(tensor_id(""), 0x811C_9DC5);
        assert_eq!(tensor_id("a"), 0xE40C_292C);
        assert_eq!(tensor_id("foobar"), 0xBF9C_F968);
    }

    #[test]
    fn presets_have_the_published_sizes_and_print_back_to_themselves() {
        for (name, params, tensors) in [
            ("gpt2", 124_439_808u64, 148usize),
            ("llama-7b", 6_738_415_616, 291),
            // zero_rows, [tied], split_parts and split_unit round-trip too.
            ("bert-base", 109_514_298, 202),
            ("mlp:100x3", 3 * (100 * 100 + 100), 6),
        ] {
            let p = preset::preset(name, 9).unwrap();
            assert_eq!((p.elements(), p.tensors.len()), (params, tensors), "{name}");
            let toml = emit::to_toml(&p, "comment\n\nmore");
            assert_eq!(parse(&toml, false).unwrap(), p, "{name} via TOML");
            let json = emit::to_json(&p).to_string();
            assert_eq!(parse(&json, true).unwrap(), p, "{name} via JSON");
        }
        assert!(preset::preset("mlp:0x3", 0).is_err());
        assert!(preset::preset("gpt3", 0)
            .unwrap_err()
            .to_string()
            .contains("gpt2"));
    }

    #[test]
    fn defaults_apply_and_entries_override_them() {
        let s = parse(
            "seed = 3\n[defaults]\ninit = \"he\"\ndist = \"uniform\"\n\
             [[tensor]]\nname = \"w\"\nshape = [4, 8]\n\
             [[tensor]]\nname = \"v\"\nshape = [4, 8]\ninit = \"lecun\"\ndist = \"normal\"\n",
            false,
        )
        .unwrap();
        assert_eq!(s.seed, 3);
        let std = |i: usize| s.tensors[i].target().unwrap().unwrap().std;
        assert!((std(0) - (2.0f64 / 8.0).sqrt()).abs() < 1e-15);
        assert!((std(1) - (1.0f64 / 8.0).sqrt()).abs() < 1e-15);
        let Rule::Draw { init, .. } = &s.tensors[0].rule else {
            panic!()
        };
        assert_eq!(init.dist(), crate::rng::dist::Dist::Uniform);
    }
}
