//! `deepinit inspect`: the lecture's question ("is this layer's variance
//! right?") asked of a real checkpoint. Any safetensors file or sharded
//! directory: per tensor the shape, dtype, mean and standard deviation, the
//! standard deviations He, LeCun and Xavier give for its fans, and a verdict:
//! against a spec (given, or the one a deepinit checkpoint records), or else
//! the closest standard rule.
//!
//! Checks of a drawn tensor, each at false-alarm rate `alpha`: the mean's
//! z-test against 0 and the target variance inside the variance's confidence
//! interval (chi-square for normal data, kurtosis-adjusted otherwise), as
//! `deepinit init` does; values rounded to bf16/f16 keep them (rounding adds
//! a relative variance of at most 2^-18, far inside the interval for any
//! tensor under 10^10 elements). A constant must hold its value, rounded to
//! the file's dtype, in every element.

use super::plan::INDEX;
use super::spec::{ModelSpec, Rule};
use crate::error::{Error, Result};
use crate::init::scheme::Shape;
use crate::io::dtype::DType;
use crate::io::safetensors::{read_header, Entry, Float};
use crate::progress::Progress;
use crate::stats::{normal_quantile, variance_interval, Moments};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A tensor's verdict (JSON: `PASS`, `FAIL`, `INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TensorVerdict {
    /// Within the reference's bands.
    Pass,
    /// Outside them, or not what the reference says (shape, values).
    Fail,
    /// Not judged: no reference, or the reference does not draw it.
    Info,
}

/// What one tensor holds and how it compares.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Name.
    pub name: String,
    /// The file holding it.
    pub file: PathBuf,
    /// safetensors dtype.
    pub dtype: crate::io::safetensors::Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Mean (null for non-float dtypes).
    pub mean: Option<f64>,
    /// Standard deviation (unbiased).
    pub std: Option<f64>,
    /// Smallest and largest values.
    pub range: Option<[f64; 2]>,
    /// NaN/Inf count.
    pub nonfinite: u64,
    /// The standard deviations He, LeCun and Xavier give for the shape's fans
    /// (`[out, in, ...]` layout; null for 1-D tensors).
    pub rule_std: Option<RuleStd>,
    /// The reference's rule and target std (with a spec).
    pub expected: Option<String>,
    /// Without a reference: the closest rule and std / that rule's std.
    pub closest: Option<(String, f64)>,
    /// Judged against the reference, or not judged.
    pub verdict: TensorVerdict,
    /// Why, in words.
    pub note: String,
}

/// He, LeCun, Xavier standard deviations.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RuleStd {
    /// sqrt(2 / fan_in).
    pub he: f64,
    /// sqrt(1 / fan_in).
    pub lecun: f64,
    /// sqrt(2 / (fan_in + fan_out)).
    pub xavier: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Where the reference came from: "--spec FILE", "the checkpoint's
    /// deepinit.spec", or null.
    pub reference: Option<String>,
    /// Why a `config.json` beside the checkpoint was not used, if it was not.
    pub config_note: Option<String>,
    /// False-alarm rate of each test.
    pub alpha: f64,
    /// Per tensor, in file order.
    pub tensors: Vec<TensorReport>,
    /// Tensors the reference lists that no file holds.
    pub missing: Vec<String>,
    /// Whether every judged tensor passed and none is missing.
    pub pass: bool,
}

/// An index's weight map: tensor name -> file name.
pub(crate) type WeightMap = BTreeMap<String, String>;

/// The files of `path`: itself, or a directory's index's shards, or its
/// `*.safetensors` files; with an index, also its weight map (tensor name ->
/// file name).
pub(crate) fn files_of(path: &Path) -> Result<(Vec<PathBuf>, Option<WeightMap>)> {
    if !path.is_dir() {
        return Ok((vec![path.to_path_buf()], None));
    }
    let index = path.join(INDEX);
    let mut weight_map = None;
    let mut files: Vec<PathBuf> = if index.exists() {
        let text = crate::io::read::read_text(&index, 256 << 20)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::path(&index, format!("not JSON: {e}")))?;
        let map = v["weight_map"]
            .as_object()
            .ok_or_else(|| Error::path(&index, "has no weight_map"))?;
        let mut wm = BTreeMap::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                Error::path(
                    &index,
                    format!("weight_map: '{name}' maps to {f}, not a file name"),
                )
            })?;
            // Entries name files of this directory, never a path elsewhere.
            let p = Path::new(f);
            if p.components().count() != 1
                || !matches!(p.components().next(), Some(std::path::Component::Normal(_)))
            {
                return Err(Error::path(
                    &index,
                    format!("weight_map: '{name}' maps to '{f}', outside the checkpoint directory"),
                ));
            }
            wm.insert(name.clone(), f.to_string());
        }
        let files = wm.values().map(|f| path.join(f)).collect();
        weight_map = Some(wm);
        files
    } else {
        std::fs::read_dir(path)
            .map_err(|e| Error::Io {
                path: path.to_path_buf(),
                source: e,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect()
    };
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::path(path, "holds no .safetensors file"));
    }
    Ok((files, weight_map))
}

/// Checks that the index's weight map and the files agree in both
/// directions: every mapped tensor is in the file it names, and every
/// tensor of the files is mapped to its file.
fn check_weight_map(
    dir: &Path,
    wm: &BTreeMap<String, String>,
    files: &[PathBuf],
    headers: &[crate::io::safetensors::Header],
) -> Result<()> {
    let index = dir.join(INDEX);
    let mut held: BTreeMap<&str, &Path> = BTreeMap::new();
    for (f, h) in files.iter().zip(headers) {
        for e in &h.tensors {
            if let Some(other) = held.insert(&e.name, f) {
                return Err(Error::path(
                    f,
                    format!("tensor '{}' is also in {}", e.name, other.display()),
                ));
            }
        }
    }
    for (name, file) in wm {
        match held.get(name.as_str()) {
            None => {
                return Err(Error::path(
                    &index,
                    format!("weight_map lists '{name}' in {file}, which does not hold it"),
                ))
            }
            Some(f) if f.file_name() != Some(std::ffi::OsStr::new(file)) => {
                return Err(Error::path(
                    &index,
                    format!(
                        "weight_map puts '{name}' in {file}, but {} holds it",
                        f.display()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some((name, f)) = held.iter().find(|(n, _)| !wm.contains_key(**n)) {
        return Err(Error::path(
            &index,
            format!(
                "weight_map does not list '{name}', which {} holds",
                f.display()
            ),
        ));
    }
    Ok(())
}

/// Streams a tensor's bytes through the moments (f64 tensors are read as f32).
fn moments(
    file: &mut std::fs::File,
    path: &Path,
    start: u64,
    e: &Entry,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Moments>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let Some(float) = Float::of(e.dtype) else {
        return Ok(None);
    };
    let size = float.size();
    file.seek(SeekFrom::Start(start + e.begin)).map_err(io)?;
    let mut left = e.end - e.begin;
    let mut buf = vec![0u8; (8 << 20).min(left as usize)];
    let mut vals: Vec<f32> = Vec::with_capacity(buf.len() / size as usize);
    let mut m = Moments::default();
    while left > 0 {
        let k = (buf.len() as u64).min(left) as usize;
        file.read_exact(&mut buf[..k]).map_err(io)?;
        vals.clear();
        float.decode_into(&buf[..k], &mut vals);
        m = m.merge(Moments::of(&vals));
        left -= k as u64;
        progress(k as u64);
    }
    Ok(Some(m))
}

/// He/LeCun/Xavier standard deviations of an `[out, in, ...]` shape (none
/// for 1-D shapes).
pub fn rule_std(shape: &[u64]) -> Option<RuleStd> {
    if shape.len() < 2 {
        return None;
    }
    let (fi, fo) = Shape(shape.to_vec()).fans(1).ok()?;
    let (fi, fo) = (fi as f64, fo as f64);
    Some(RuleStd {
        he: (2.0 / fi).sqrt(),
        lecun: (1.0 / fi).sqrt(),
        xavier: (2.0 / (fi + fo)).sqrt(),
    })
}

/// Mean test and variance interval at `alpha`; `None` when they pass.
fn judge_draw(m: &Moments, std: f64, kurtosis: f64, alpha: f64) -> Option<String> {
    if m.n < 2 {
        return None;
    }
    let z = m.mean / (std / (m.n as f64).sqrt());
    let crit = normal_quantile(1.0 - alpha / 2.0);
    if z.abs() > crit {
        return Some(format!("mean z = {z:.2} beyond +-{crit:.2}"));
    }
    let ci = variance_interval(m.n, m.variance(), kurtosis, 1.0 - alpha);
    if !ci.contains(std * std) {
        return Some(format!(
            "std {:.4e} vs target {std:.4e}: target variance outside [{:.4e}, {:.4e}]",
            m.variance().sqrt(),
            ci.lo,
            ci.hi
        ));
    }
    None
}

/// Judges one tensor against its spec entry.
fn against_spec(
    t: &mut TensorReport,
    spec: &super::spec::TensorSpec,
    m: &Moments,
    alpha: f64,
    sliced: bool,
) {
    let fail = |t: &mut TensorReport, note: String| {
        t.verdict = TensorVerdict::Fail;
        t.note = note;
    };
    if t.shape != spec.shape.0 && !sliced {
        return fail(
            t,
            format!("shape {:?}, the spec says {:?}", t.shape, spec.shape.0),
        );
    }
    if m.nonfinite > 0 {
        return fail(t, format!("{} non-finite values", m.nonfinite));
    }
    match &spec.rule {
        Rule::Const(v) => {
            let stored = DType::from_safetensors(t.dtype).map_or(*v, |d| {
                let mut b = Vec::new();
                d.encode(&[*v], &mut b);
                d.decode(&b)
            });
            t.expected = Some(format!("constant {stored}"));
            let want = f64::from(stored);
            if m.min != want || m.max != want {
                return fail(
                    t,
                    format!(
                        "values span [{}, {}], not the constant {want}",
                        m.min, m.max
                    ),
                );
            }
            t.verdict = TensorVerdict::Pass;
            t.note = format!("all {} elements are {want}", m.n);
        }
        Rule::Draw { init, .. } => {
            let Ok(Some(target)) = spec.target() else {
                return fail(t, "the spec's rule has no target".into());
            };
            t.expected = Some(format!(
                "{} {} std {:.4e}",
                init.scheme().name(),
                init.dist().name(),
                target.std
            ));
            // Zero rows (padding_idx) scale the variance over the whole
            // tensor by the share of drawn elements.
            let zeroed = spec.zeroed_elements();
            let std = if zeroed > 0 && !sliced && spec.shape.numel() > zeroed {
                let n = spec.shape.numel() as f64;
                target.std * ((n - zeroed as f64) / n).sqrt()
            } else {
                target.std
            };
            match judge_draw(m, std, init.dist().excess_kurtosis(), alpha) {
                Some(why) => fail(t, why),
                None => {
                    t.verdict = TensorVerdict::Pass;
                    t.note = format!("mean and variance agree with std {:.4e}", target.std);
                }
            }
        }
    }
}

/// Without a reference: a constant, or the closest of He/LeCun/Xavier.
fn closest(t: &mut TensorReport, m: &Moments, alpha: f64) {
    t.verdict = TensorVerdict::Info;
    if m.nonfinite > 0 {
        t.verdict = TensorVerdict::Fail;
        t.note = format!("{} non-finite values", m.nonfinite);
        return;
    }
    if m.n == 0 {
        t.note = "empty".into();
        return;
    }
    if m.n > 0 && m.min == m.max {
        t.note = format!("constant {}", m.min);
        return;
    }
    let (Some(r), Some(std)) = (t.rule_std, t.std) else {
        t.note = "1-D: no fans to compare with".into();
        return;
    };
    let rules = [("he", r.he), ("lecun", r.lecun), ("xavier", r.xavier)];
    let Some(&(name, s)) = rules.iter().min_by(|a, b| {
        let da = (std / a.1).ln().abs();
        let db = (std / b.1).ln().abs();
        da.total_cmp(&db)
    }) else {
        return;
    };
    let ratio = std / s;
    t.closest = Some((name.to_string(), ratio));
    // The rule matches when its variance lies inside the sample variance's
    // interval (kurtosis-adjusted with the sample's own kurtosis).
    let k = m.excess_kurtosis();
    let ci = variance_interval(
        m.n,
        m.variance(),
        if k.is_finite() { k } else { 0.0 },
        1.0 - alpha,
    );
    t.note = if m.n >= 2 && ci.contains(s * s) {
        format!("matches {name}")
    } else {
        format!("{ratio:.3}x {name}")
    };
}

/// The `config.json` beside a checkpoint (in the directory, or beside the
/// file), if any.
fn config_beside(path: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let c = dir.join("config.json");
    c.is_file().then_some(c)
}

/// The prefixes transformers puts before a base model's names in its head
/// classes (`GPT2LMHeadModel` -> `transformer.`, `*ForCausalLM` -> `model.`,
/// `BertForMaskedLM` -> `bert.`).
const PREFIXES: &[&str] = &["transformer.", "model.", "bert."];

fn strip_prefix(name: &str) -> &str {
    PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

/// The reference entry judging the stored tensor `name`: the same name, or
/// the same name under another of the common prefixes (a base model's
/// checkpoint against a head model's config, or the reverse), or the tensor
/// a tied name shares its values with.
fn find_entry<'a>(
    r: &'a ModelSpec,
    name: &str,
    loose: bool,
) -> Option<&'a super::spec::TensorSpec> {
    if !loose {
        return r.get(name);
    }
    // One match under the prefixes, or none (an ambiguous name is judged by nothing).
    let by = |n: &str| {
        r.get(n).or_else(|| {
            let mut m = r
                .tensors
                .iter()
                .filter(|t| strip_prefix(&t.name) == strip_prefix(n));
            match (m.next(), m.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        })
    };
    by(name).or_else(|| {
        r.tied
            .iter()
            .find(|(t, _)| strip_prefix(t) == strip_prefix(name))
            .and_then(|(_, src)| by(src))
    })
}

/// What to judge a checkpoint against.
#[derive(Debug, Clone, Copy)]
pub struct Against<'a> {
    /// The reference spec.
    pub spec: &'a ModelSpec,
    /// Where it came from, for the report.
    pub source: &'a str,
    /// Whether it describes a Hugging Face model (from a config): stored
    /// names then match across the prefixes its classes add
    /// (`transformer.`, `model.`, `bert.`) and through tied weights. A spec
    /// is matched by exact names.
    pub hf: bool,
}

/// Reads every tensor of `path` (a file or a checkpoint directory) and
/// judges it against `against`, or else the checkpoint's own recorded spec,
/// or else the family rules of the `config.json` beside it (a Hugging Face
/// checkpoint: transformers' reference initialization; a config deepinit
/// cannot read leaves the checkpoint unjudged, with the reason in the report).
pub fn inspect(
    path: &Path,
    against: Option<Against>,
    alpha: f64,
    progress: Option<&Progress>,
) -> Result<Report> {
    let (files, weight_map) = files_of(path)?;
    let headers = files
        .iter()
        .map(|f| read_header(f))
        .collect::<Result<Vec<_>>>()?;
    if let Some(wm) = &weight_map {
        check_weight_map(path, wm, &files, &headers)?;
    }
    let recorded = headers
        .first()
        .and_then(|h| h.metadata.get("deepinit.spec"))
        .map(|s| super::spec::parse(s, true))
        .transpose()
        .map_err(|e| {
            Error::path(
                &files[0],
                format!("its recorded deepinit.spec is unreadable: {e}"),
            )
        })?;
    let sliced = headers
        .iter()
        .any(|h| h.metadata.contains_key("deepinit.tensor_parallel"));
    let mut unusable = None;
    let (reference, source, loose) = match (against, recorded) {
        (Some(a), _) => (Some(a.spec.clone()), Some(a.source.to_string()), a.hf),
        (None, Some(s)) => (
            Some(s),
            Some("the checkpoint's recorded deepinit.spec".to_string()),
            false,
        ),
        (None, None) => match config_beside(path).map(|c| {
            let m = super::hf::read(&c)
                .and_then(|m| Ok((m.spec(super::hf::InitRule::Reference, 0)?, m.class)));
            (c, m)
        }) {
            Some((c, Ok((spec, class)))) => (
                Some(spec),
                Some(format!(
                    "{} ({class}, the family's reference init)",
                    c.display()
                )),
                true,
            ),
            Some((c, Err(e))) => {
                unusable = Some(format!("{} not used: {e}", c.display()));
                (None, None, false)
            }
            None => (None, None, false),
        },
    };
    let total: u64 = headers.iter().map(|h| h.data_len()).sum();
    let mut done = 0u64;
    let mut tensors = Vec::new();
    for (file, h) in files.iter().zip(&headers) {
        let mut f = std::fs::File::open(file).map_err(|e| Error::Io {
            path: file.clone(),
            source: e,
        })?;
        for e in &h.tensors {
            let m = moments(&mut f, file, h.data_start, e, &mut |k| {
                done += k;
                if let Some(p) = progress {
                    p.update_bytes(done, total);
                }
            })?;
            let mut t = TensorReport {
                name: e.name.clone(),
                file: file.clone(),
                dtype: e.dtype,
                shape: e.shape.clone(),
                // Over the finite values; none when there are too few.
                mean: m.filter(|m| m.n > 0).map(|m| m.mean),
                std: m.filter(|m| m.n > 1).map(|m| m.variance().sqrt()),
                range: m.filter(|m| m.n > 0).map(|m| [m.min, m.max]),
                nonfinite: m.map_or(0, |m| m.nonfinite),
                rule_std: rule_std(&e.shape),
                expected: None,
                closest: None,
                verdict: TensorVerdict::Info,
                note: String::new(),
            };
            let entry = reference
                .as_ref()
                .and_then(|r| find_entry(r, &e.name, loose));
            if let Some(Rule::Draw {
                layout: super::spec::Layout::InOut,
                ..
            }) = entry.map(|s| &s.rule)
            {
                // Stored [in, out]: the fans read reversed.
                t.rule_std = rule_std(&e.shape.iter().rev().copied().collect::<Vec<_>>());
            }
            match (m, entry) {
                (None, _) => t.note = format!("{} is not a float type", e.dtype),
                (Some(m), Some(s)) => against_spec(&mut t, s, &m, alpha, sliced),
                (Some(_), None) if reference.is_some() => t.note = "not in the spec".into(),
                (Some(m), None) => closest(&mut t, &m, alpha),
            }
            tensors.push(t);
        }
    }
    let missing: Vec<String> = reference
        .iter()
        .flat_map(|r| r.tensors.iter())
        .filter(|s| {
            !tensors.iter().any(|t| {
                t.name == s.name || (loose && strip_prefix(&t.name) == strip_prefix(&s.name))
            })
        })
        .map(|s| s.name.clone())
        .collect();
    let pass = missing.is_empty() && tensors.iter().all(|t| t.verdict != TensorVerdict::Fail);
    Ok(Report {
        files,
        reference: source,
        config_note: unusable,
        alpha,
        tensors,
        missing,
        pass,
    })
}
