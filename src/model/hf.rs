//! Hugging Face configs in, transformers' tensors out: a `config.json` of a
//! supported family becomes the [`ModelSpec`] of exactly the tensors its
//! transformers model class saves (names, shapes, tied weights), each with
//! the family's reference initialization (the class's `_init_weights`) or a
//! chosen variance-preserving alternative, and the tensor-parallel cuts
//! Megatron-LM makes.
//!
//! Families and classes (transformers 5.x):
//! - `gpt2`: `GPT2LMHeadModel` (keys under `transformer.`, `lm_head.weight`
//!   tied to `transformer.wte.weight`) and `GPT2Model`. `Conv1D` weights are
//!   stored `[in, out]`.
//! - `llama`, `mistral`, `qwen2`: `*ForCausalLM` (keys under `model.`, plus
//!   `lm_head.weight` unless `tie_word_embeddings`) and `*Model`; grouped-query
//!   attention (`num_key_value_heads`), `head_dim`, Llama's `attention_bias`
//!   and `mlp_bias`, Qwen2's q/k/v biases.
//! - `bert`: `BertForMaskedLM` (keys under `bert.`, the prediction head under
//!   `cls.`, the decoder tied to the word embeddings and to `cls.predictions.bias`)
//!   and `BertModel` (with the pooler).
//!
//! The reference rules (transformers 5.24 `PreTrainedModel._init_weights`
//! and the families' overrides): every `nn.Linear`/`Conv1D` weight and
//! every embedding N(0, `initializer_range`), the embedding's `padding_idx`
//! row (`pad_token_id`) zero; biases zero; LayerNorm/RMSNorm weights one and
//! biases zero; GPT-2's `attn.c_proj` and `mlp.c_proj` weights
//! N(0, `initializer_range` / sqrt(2 `n_layer`)) (the GPT-2 paper's scaling of
//! residual layers); BERT's `cls.predictions.bias` zero.

use super::spec::{Layout, ModelSpec, Rule, Split, TensorSpec, TpSplit};
use crate::error::{Error, Result};
use crate::init::scheme::Scheme;
use crate::io::dtype::DType;
use serde_json::{Map, Value};
use std::path::Path;

/// The configs shipped as presets: name and `config.json` text (the
/// published models' configs).
pub const SHIPPED: &[(&str, &str)] = &[
    ("gpt2", include_str!("configs/gpt2.json")),
    ("gpt2-medium", include_str!("configs/gpt2-medium.json")),
    ("gpt2-large", include_str!("configs/gpt2-large.json")),
    ("gpt2-xl", include_str!("configs/gpt2-xl.json")),
    ("llama-7b", include_str!("configs/llama-7b.json")),
    ("llama-3-8b", include_str!("configs/llama-3-8b.json")),
    ("llama-3.2-1b", include_str!("configs/llama-3.2-1b.json")),
    ("mistral-7b", include_str!("configs/mistral-7b.json")),
    ("qwen2-0.5b", include_str!("configs/qwen2-0.5b.json")),
    ("bert-base", include_str!("configs/bert-base.json")),
];

/// A supported model family (`model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// GPT-2 (post-2019 OpenAI layout, `Conv1D`, pre-LayerNorm).
    Gpt2,
    /// Llama 1/2/3 (RMSNorm, SwiGLU, rotary; no learned positions).
    Llama,
    /// Mistral (Llama's tensors; sliding-window attention changes none).
    Mistral,
    /// Qwen2 (Llama's tensors plus q/k/v biases).
    Qwen2,
    /// BERT (post-LayerNorm encoder).
    Bert,
}

impl Family {
    /// The `model_type` string.
    pub fn name(self) -> &'static str {
        match self {
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Bert => "bert",
        }
    }

    fn parse(s: &str) -> Result<Family> {
        Ok(match s {
            "gpt2" => Family::Gpt2,
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            "bert" => Family::Bert,
            _ => {
                return Err(Error::choice(
                    "model_type",
                    s,
                    &["gpt2", "llama", "mistral", "qwen2", "bert"],
                ))
            }
        })
    }

    /// The model classes deepinit writes for the family: the head model
    /// first (the default), then the base model.
    pub(crate) fn classes(self) -> [&'static str; 2] {
        match self {
            Family::Gpt2 => ["GPT2LMHeadModel", "GPT2Model"],
            Family::Llama => ["LlamaForCausalLM", "LlamaModel"],
            Family::Mistral => ["MistralForCausalLM", "MistralModel"],
            Family::Qwen2 => ["Qwen2ForCausalLM", "Qwen2Model"],
            Family::Bert => ["BertForMaskedLM", "BertModel"],
        }
    }

    /// Whether the residual stream is normalized before each branch
    /// (pre-LN: the branches add up along the depth).
    pub(crate) fn pre_norm(self) -> bool {
        self != Family::Bert
    }
}

/// The sizes of a config, with the family's defaults (transformers 5.24's
/// config classes) where a key is absent or null.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    /// Vocabulary.
    pub vocab: u64,
    /// Model width.
    pub hidden: u64,
    /// Blocks.
    pub layers: u64,
    /// Attention heads.
    pub heads: u64,
    /// Key/value heads (grouped-query attention; = heads without it).
    pub kv_heads: u64,
    /// Width of a head.
    pub head_dim: u64,
    /// MLP width.
    pub inter: u64,
    /// Learned position table (0: none, rotary).
    pub positions: u64,
    /// BERT's token types.
    pub type_vocab: u64,
    /// `initializer_range`.
    pub init_range: f64,
    /// `tie_word_embeddings`.
    pub tie: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// The attention output projection has a bias.
    pub o_bias: bool,
    /// The MLP projections have biases.
    pub mlp_bias: bool,
    /// The embedding's `padding_idx` (`pad_token_id`).
    pub pad: Option<u64>,
    /// The activation (`activation_function` / `hidden_act`).
    pub act: String,
    /// Norm epsilon.
    pub norm_eps: f64,
}

/// A Hugging Face model: its config (every key kept) and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct HfModel {
    /// The config as given: unknown keys kept, never refused.
    pub config: Map<String, Value>,
    /// The family.
    pub family: Family,
    /// The transformers class whose tensors are written.
    pub class: &'static str,
    /// Sizes.
    pub dims: Dims,
}

/// How the weight matrices are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitRule {
    /// The family's reference implementation (transformers' `_init_weights`).
    Reference,
    /// Var = 1/fan_in for every projection; `depth`: residual-branch
    /// outputs times 1/(2 n_layer) in variance (pre-LN families).
    Lecun {
        /// Depth-scaled residual branches.
        depth: bool,
    },
    /// Var = 2/fan_in for every projection; `depth` as for LeCun.
    He {
        /// Depth-scaled residual branches.
        depth: bool,
    },
    /// Every projection N(0, std).
    Naive(f64),
}

impl InitRule {
    /// The accepted names.
    pub(crate) const NAMES: &'static [&'static str] = &[
        "reference",
        "lecun",
        "he",
        "lecun-unscaled",
        "he-unscaled",
        "naive:STD",
    ];

    /// Parses a name of [`InitRule::NAMES`].
    pub(crate) fn parse(s: &str) -> Result<InitRule> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "reference" | "ref" => InitRule::Reference,
            "lecun" => InitRule::Lecun { depth: true },
            "he" | "kaiming" => InitRule::He { depth: true },
            "lecun-unscaled" => InitRule::Lecun { depth: false },
            "he-unscaled" | "kaiming-unscaled" => InitRule::He { depth: false },
            other => match other.strip_prefix("naive:") {
                Some(v) => match v.parse::<f64>() {
                    Ok(std) if std.is_finite() && std > 0.0 => InitRule::Naive(std),
                    _ => return Err(Error::bad("init", s, "naive:STD needs a positive STD")),
                },
                None => return Err(Error::choice("init", s, Self::NAMES)),
            },
        })
    }

    /// The name `parse` reads back.
    pub fn name(&self) -> String {
        match self {
            InitRule::Reference => "reference".into(),
            InitRule::Lecun { depth: true } => "lecun".into(),
            InitRule::He { depth: true } => "he".into(),
            InitRule::Lecun { depth: false } => "lecun-unscaled".into(),
            InitRule::He { depth: false } => "he-unscaled".into(),
            InitRule::Naive(s) => format!("naive:{s:?}"),
        }
    }
}

/// The shipped config called `name`, if any.
pub fn shipped(name: &str) -> Option<Result<HfModel>> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = match lower.as_str() {
        "gpt2-small" => "gpt2",
        "llama7b" | "llama2-7b" | "llama-2-7b" => "llama-7b",
        "llama3-8b" | "llama-3.1-8b" => "llama-3-8b",
        "bert" | "bert-base-uncased" => "bert-base",
        other => other,
    };
    SHIPPED
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(n, text)| parse(text, &format!("preset {n}")))
}

/// Reads a `config.json`, or the one in a directory.
pub fn read(path: &Path) -> Result<HfModel> {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let text = crate::io::read::read_text(&file, 16 << 20)?;
    parse(&text, &file.display().to_string())
}

/// Parses config text; errors name `source`.
pub fn parse(text: &str, source: &str) -> Result<HfModel> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid("config", format!("{source}: not JSON: {e}")))?;
    let Value::Object(config) = v else {
        return Err(Error::invalid(
            "config",
            format!("{source}: not a JSON object"),
        ));
    };
    from_map(config).map_err(|e| Error::invalid("config", format!("{source}: {e}")))
}

/// Interprets a config object.
pub fn from_map(config: Map<String, Value>) -> Result<HfModel> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::invalid(
                "model_type",
                "missing: a Hugging Face config names its family (gpt2, llama, mistral, qwen2, bert)",
            )
        })?;
    let family = Family::parse(model_type)?;
    let class = match config.get("architectures").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::Array(a)) => a.first(),
        Some(other) => {
            return Err(Error::bad(
                "architectures",
                other,
                "expected a list of class names, e.g. [\"LlamaForCausalLM\"]",
            ))
        }
    };
    let class = match class {
        None => family.classes()[0],
        Some(Value::String(c)) => *family
            .classes()
            .iter()
            .find(|k| *k == c)
            .ok_or_else(|| Error::choice("architectures", c, &family.classes()))?,
        Some(other) => {
            return Err(Error::bad(
                "architectures",
                other,
                "expected a list of class names",
            ))
        }
    };
    let dims = dims(family, &config)?;
    if family == Family::Bert && class == "BertForMaskedLM" && !dims.tie {
        return Err(Error::invalid(
            "config",
            "BertForMaskedLM with tie_word_embeddings = false is not supported (its decoder is tied)",
        ));
    }
    Ok(HfModel {
        config,
        family,
        class,
        dims,
    })
}

/// A key's value: the first of `keys` present and not null.
pub(crate) fn get<'a>(c: &'a Map<String, Value>, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
    keys.iter().find_map(|k| {
        c.get_key_value(*k)
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    })
}

/// The first of `keys` present and not null, read by `read` (`what` says
/// what it must be), or `default`.
fn typed<T>(
    c: &Map<String, Value>,
    keys: &[&str],
    default: T,
    read: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Result<T> {
    match get(c, keys) {
        None => Ok(default),
        Some((k, v)) => read(v).ok_or_else(|| Error::bad("config", format!("{k} = {v}"), what)),
    }
}

pub(crate) fn int(c: &Map<String, Value>, keys: &[&str], default: u64) -> Result<u64> {
    typed(
        c,
        keys,
        default,
        Value::as_u64,
        "not a non-negative integer",
    )
}

/// `pad_token_id` as transformers' `nn.Embedding(padding_idx=...)` takes it:
/// absent -> the family's default, null -> none, negative -> counted from
/// the end of the vocabulary (PyTorch's rule).
fn pad(c: &Map<String, Value>, vocab: u64, default: Option<u64>) -> Result<Option<u64>> {
    let Some(v) = c.get("pad_token_id") else {
        return Ok(default);
    };
    if v.is_null() {
        return Ok(None);
    }
    let bad = || {
        Error::bad(
            "config",
            format!("pad_token_id = {v}"),
            format!("not an index of the vocabulary ({vocab}), nor a negative one from its end"),
        )
    };
    let i = v.as_i64().ok_or_else(bad)?;
    let n = i64::try_from(vocab).map_err(|_| bad())?;
    match i {
        i if (0..n).contains(&i) => Ok(Some(i as u64)),
        i if (-n..0).contains(&i) => Ok(Some((n + i) as u64)),
        _ => Err(bad()),
    }
}

pub(crate) fn boolean(c: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    typed(c, &[key], default, Value::as_bool, "not true or false")
}

pub(crate) fn float(c: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
    typed(c, &[key], default, Value::as_f64, "not a number")
}

pub(crate) fn string(c: &Map<String, Value>, keys: &[&str], default: &str) -> Result<String> {
    let read = |v: &Value| v.as_str().map(str::to_string);
    typed(c, keys, default.to_string(), read, "not a string")
}

fn dims(family: Family, c: &Map<String, Value>) -> Result<Dims> {
    let d = match family {
        Family::Gpt2 => {
            if boolean(c, "add_cross_attention", false)? {
                return Err(Error::invalid(
                    "config",
                    "add_cross_attention = true (GPT-2 as a decoder of an encoder) is not supported",
                ));
            }
            let hidden = int(c, &["n_embd", "hidden_size"], 768)?;
            Dims {
                vocab: int(c, &["vocab_size"], 50257)?,
                hidden,
                layers: int(c, &["n_layer", "num_hidden_layers"], 12)?,
                heads: int(c, &["n_head", "num_attention_heads"], 12)?,
                kv_heads: 0,
                head_dim: 0,
                inter: int(c, &["n_inner"], hidden.saturating_mul(4))?,
                positions: int(c, &["n_positions", "max_position_embeddings"], 1024)?,
                type_vocab: 0,
                init_range: float(c, "initializer_range", 0.02)?,
                tie: boolean(c, "tie_word_embeddings", true)?,
                qkv_bias: true,
                o_bias: true,
                mlp_bias: true,
                pad: None,
                act: string(c, &["activation_function"], "gelu_new")?,
                norm_eps: float(c, "layer_norm_epsilon", 1e-5)?,
            }
        }
        Family::Llama | Family::Mistral | Family::Qwen2 => {
            let (inter, heads_default, kv_default) = match family {
                Family::Llama => (11008, 32, None),
                Family::Mistral => (14336, 32, Some(8)),
                _ => (22016, 32, Some(32)),
            };
            let heads = int(c, &["num_attention_heads"], heads_default)?;
            let hidden = int(c, &["hidden_size"], 4096)?;
            let attention_bias = family == Family::Llama && boolean(c, "attention_bias", false)?;
            let vocab = int(
                c,
                &["vocab_size"],
                if family == Family::Qwen2 {
                    151936
                } else {
                    32000
                },
            )?;
            Dims {
                vocab,
                hidden,
                layers: int(c, &["num_hidden_layers"], 32)?,
                heads,
                kv_heads: int(c, &["num_key_value_heads"], kv_default.unwrap_or(heads))?,
                head_dim: int(c, &["head_dim"], hidden.checked_div(heads).unwrap_or(0))?,
                inter: int(c, &["intermediate_size"], inter)?,
                positions: 0,
                type_vocab: 0,
                init_range: float(c, "initializer_range", 0.02)?,
                tie: boolean(c, "tie_word_embeddings", false)?,
                qkv_bias: family == Family::Qwen2 || attention_bias,
                o_bias: attention_bias,
                mlp_bias: family == Family::Llama && boolean(c, "mlp_bias", false)?,
                pad: pad(c, vocab, None)?,
                act: string(c, &["hidden_act"], "silu")?,
                norm_eps: float(c, "rms_norm_eps", 1e-6)?,
            }
        }
        Family::Bert => {
            let hidden = int(c, &["hidden_size"], 768)?;
            let heads = int(c, &["num_attention_heads"], 12)?;
            if boolean(c, "add_cross_attention", false)? {
                return Err(Error::invalid(
                    "config",
                    "add_cross_attention = true (BERT as a decoder of an encoder) is not supported",
                ));
            }
            let vocab = int(c, &["vocab_size"], 30522)?;
            Dims {
                vocab,
                hidden,
                layers: int(c, &["num_hidden_layers"], 12)?,
                heads,
                kv_heads: heads,
                head_dim: hidden.checked_div(heads).unwrap_or(0),
                inter: int(c, &["intermediate_size"], 3072)?,
                positions: int(c, &["max_position_embeddings"], 512)?,
                type_vocab: int(c, &["type_vocab_size"], 2)?,
                init_range: float(c, "initializer_range", 0.02)?,
                tie: boolean(c, "tie_word_embeddings", true)?,
                qkv_bias: true,
                o_bias: true,
                mlp_bias: true,
                pad: pad(c, vocab, Some(0))?,
                act: string(c, &["hidden_act"], "gelu")?,
                norm_eps: float(c, "layer_norm_eps", 1e-12)?,
            }
        }
    };
    let mut d = d;
    if family == Family::Gpt2 {
        d.kv_heads = d.heads;
        d.head_dim = d.hidden.checked_div(d.heads).unwrap_or(0);
    }
    check_dims(family, &d)?;
    Ok(d)
}

/// The largest size of any one dimension (vocabulary, width, heads, ...).
const MAX_DIM: u64 = 1 << 24;

fn check_dims(family: Family, d: &Dims) -> Result<()> {
    let mut sizes = vec![
        ("vocab_size", d.vocab),
        ("the width (hidden_size / n_embd)", d.hidden),
        ("the number of heads", d.heads),
        ("num_key_value_heads", d.kv_heads),
        ("intermediate_size / n_inner", d.inter),
        ("head_dim", d.head_dim),
    ];
    match family {
        Family::Gpt2 => sizes.push(("n_positions", d.positions)),
        Family::Bert => {
            sizes.push(("max_position_embeddings", d.positions));
            sizes.push(("type_vocab_size", d.type_vocab));
        }
        _ => {}
    }
    for (what, v) in sizes {
        if v == 0 || v > MAX_DIM {
            return Err(Error::invalid(
                "config",
                format!("{what} is {v}; it must be from 1 to {MAX_DIM}"),
            ));
        }
    }
    if d.layers == 0 || d.layers > 100_000 {
        return Err(Error::invalid(
            "config",
            format!("{} layers; it must be from 1 to 100000", d.layers),
        ));
    }
    // transformers refuses these (`validate_architecture`), whatever head_dim says.
    if !d.hidden.is_multiple_of(d.heads) {
        return Err(Error::invalid(
            "config",
            format!(
                "the width {} does not divide into {} heads",
                d.hidden, d.heads
            ),
        ));
    }
    if !d.heads.is_multiple_of(d.kv_heads) {
        return Err(Error::invalid(
            "config",
            format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                d.heads, d.kv_heads
            ),
        ));
    }
    // Both are at most 2^24 here: the product cannot overflow.
    if d.heads * d.head_dim > MAX_DIM {
        return Err(Error::invalid(
            "config",
            format!(
                "num_attention_heads x head_dim = {} is beyond {MAX_DIM}",
                d.heads * d.head_dim
            ),
        ));
    }
    if !(d.init_range.is_finite() && d.init_range > 0.0) {
        return Err(Error::invalid(
            "config",
            format!("initializer_range {} is not positive", d.init_range),
        ));
    }
    Ok(())
}

/// What a tensor is, for the rules.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// An embedding table (`padding_idx` row zero when `pad`).
    Embedding { pad: bool },
    /// A projection weight; `residual`: its output is a residual branch's.
    Linear { residual: bool },
    /// A bias.
    Bias,
    /// A norm's weight.
    NormWeight,
    /// A norm's bias.
    NormBias,
}

struct Builder<'a> {
    m: &'a HfModel,
    init: InitRule,
    layout: Layout,
    tensors: Vec<TensorSpec>,
}

impl Builder<'_> {
    fn push(&mut self, name: String, dims: &[u64], kind: Kind, split: Option<TpSplit>) {
        let d = &self.m.dims;
        let r = d.init_range;
        let class = self.m.class;
        let mut t = match kind {
            Kind::Embedding { pad } => {
                let mut t = TensorSpec::draw(name, dims, Scheme::Naive { std: r }, Layout::OutIn)
                    .note(format!(
                        "embedding: N(0, initializer_range = {r}) as {class}'s _init_weights{}",
                        if pad { ", padding_idx row zero" } else { "" }
                    ));
                if pad {
                    t.zero_rows = d.pad.into_iter().collect();
                }
                t
            }
            Kind::Linear { residual } => self.linear(name, dims, residual),
            Kind::Bias => TensorSpec::constant(name, dims, 0.0).note("bias: zeros"),
            Kind::NormWeight => TensorSpec::constant(name, dims, 1.0).note("norm weight: ones"),
            Kind::NormBias => TensorSpec::constant(name, dims, 0.0).note("norm bias: zeros"),
        };
        t.split = split;
        self.tensors.push(t);
    }

    fn linear(&self, name: String, dims: &[u64], residual: bool) -> TensorSpec {
        let d = &self.m.dims;
        let r = d.init_range;
        let layout = self.layout;
        let two_l = 2.0 * d.layers as f64;
        let scaled = residual && self.m.family.pre_norm();
        match self.init {
            InitRule::Reference if scaled && self.m.family == Family::Gpt2 => {
                let std = r / two_l.sqrt();
                TensorSpec::draw(name, dims, Scheme::Naive { std }, layout).note(format!(
                    "residual projection: N(0, initializer_range / sqrt(2 n_layer) = {std:.6}) \
                     as GPT2PreTrainedModel._init_weights (the GPT-2 paper's scaling)"
                ))
            }
            InitRule::Reference => TensorSpec::draw(name, dims, Scheme::Naive { std: r }, layout)
                .note(format!(
                    "projection: N(0, initializer_range = {r}) as {}'s _init_weights",
                    self.m.class
                )),
            InitRule::Naive(std) => TensorSpec::draw(name, dims, Scheme::Naive { std }, layout)
                .note(format!("projection: naive N(0, {std})")),
            InitRule::Lecun { depth } | InitRule::He { depth } => {
                let (scheme, what) = match self.init {
                    InitRule::He { .. } => (Scheme::HE, "he: Var = 2/fan_in"),
                    _ => (Scheme::LECUN, "lecun: Var = 1/fan_in"),
                };
                let mut t = TensorSpec::draw(name, dims, scheme, layout);
                if scaled && depth {
                    if let Rule::Draw { init, .. } = &mut t.rule {
                        init.set_multiplier(1.0 / two_l);
                    }
                    t.note(format!(
                        "{what} x 1/(2 n_layer) (residual branch output: the stream's variance \
                         grows by one branch's per block)"
                    ))
                } else {
                    t.note(format!("{what} (projection)"))
                }
            }
        }
    }
}

fn rows(unit: u64) -> Option<TpSplit> {
    Some(TpSplit {
        axis: Split::Rows,
        parts: Vec::new(),
        unit,
    })
}

fn cols(unit: u64) -> Option<TpSplit> {
    Some(TpSplit {
        axis: Split::Cols,
        parts: Vec::new(),
        unit,
    })
}

impl HfModel {
    /// Whether the class is the family's head model (`*ForCausalLM`,
    /// `GPT2LMHeadModel`, `BertForMaskedLM`).
    pub(crate) fn has_head(&self) -> bool {
        self.class == self.family.classes()[0]
    }

    /// Whether transformers writes a `generation_config.json` for the class
    /// (models that can generate: the causal LMs).
    pub(crate) fn generates(&self) -> bool {
        self.has_head() && self.family != Family::Bert
    }

    /// The spec: the class's tensors, each with `init`'s rule, and seed `seed`.
    pub fn spec(&self, init: InitRule, seed: u64) -> Result<ModelSpec> {
        let mut b = Builder {
            m: self,
            init,
            layout: if self.family == Family::Gpt2 {
                Layout::InOut
            } else {
                Layout::OutIn
            },
            tensors: Vec::new(),
        };
        let mut tied = std::collections::BTreeMap::new();
        match self.family {
            Family::Gpt2 => self.gpt2(&mut b, &mut tied),
            Family::Llama | Family::Mistral | Family::Qwen2 => self.llama(&mut b, &mut tied),
            Family::Bert => self.bert(&mut b, &mut tied),
        }
        let spec = ModelSpec {
            seed,
            tensors: b.tensors,
            tied,
        };
        spec.validate()?;
        Ok(spec)
    }

    fn gpt2(&self, b: &mut Builder, tied: &mut std::collections::BTreeMap<String, String>) {
        let d = &self.dims;
        let (e, hd) = (d.hidden, d.head_dim);
        let p = if self.has_head() { "transformer." } else { "" };
        b.push(
            format!("{p}wte.weight"),
            &[d.vocab, e],
            Kind::Embedding { pad: false },
            rows(1),
        );
        b.push(
            format!("{p}wpe.weight"),
            &[d.positions, e],
            Kind::Embedding { pad: false },
            None,
        );
        let qkv = |axis| {
            Some(TpSplit {
                axis,
                parts: vec![e, e, e],
                unit: hd,
            })
        };
        for i in 0..d.layers {
            let n = |s: &str| format!("{p}h.{i}.{s}");
            b.push(n("ln_1.weight"), &[e], Kind::NormWeight, None);
            b.push(n("ln_1.bias"), &[e], Kind::NormBias, None);
            // Conv1D is [in, out]: column-parallel cuts the columns (outputs).
            b.push(
                n("attn.c_attn.weight"),
                &[e, 3 * e],
                Kind::Linear { residual: false },
                qkv(Split::Cols),
            );
            b.push(
                n("attn.c_attn.bias"),
                &[3 * e],
                Kind::Bias,
                qkv(Split::Rows),
            );
            b.push(
                n("attn.c_proj.weight"),
                &[e, e],
                Kind::Linear { residual: true },
                rows(hd),
            );
            b.push(n("attn.c_proj.bias"), &[e], Kind::Bias, None);
            b.push(n("ln_2.weight"), &[e], Kind::NormWeight, None);
            b.push(n("ln_2.bias"), &[e], Kind::NormBias, None);
            b.push(
                n("mlp.c_fc.weight"),
                &[e, d.inter],
                Kind::Linear { residual: false },
                cols(1),
            );
            b.push(n("mlp.c_fc.bias"), &[d.inter], Kind::Bias, rows(1));
            b.push(
                n("mlp.c_proj.weight"),
                &[d.inter, e],
                Kind::Linear { residual: true },
                rows(1),
            );
            b.push(n("mlp.c_proj.bias"), &[e], Kind::Bias, None);
        }
        b.push(format!("{p}ln_f.weight"), &[e], Kind::NormWeight, None);
        b.push(format!("{p}ln_f.bias"), &[e], Kind::NormBias, None);
        if self.has_head() {
            if d.tie {
                tied.insert("lm_head.weight".into(), format!("{p}wte.weight"));
            } else {
                b.layout = Layout::OutIn;
                b.push(
                    "lm_head.weight".into(),
                    &[d.vocab, e],
                    Kind::Linear { residual: false },
                    rows(1),
                );
            }
        }
    }

    fn llama(&self, b: &mut Builder, tied: &mut std::collections::BTreeMap<String, String>) {
        let d = &self.dims;
        let (h, hd) = (d.hidden, d.head_dim);
        let (q, kv) = (d.heads * hd, d.kv_heads * hd);
        let p = if self.has_head() { "model." } else { "" };
        b.push(
            format!("{p}embed_tokens.weight"),
            &[d.vocab, h],
            Kind::Embedding {
                pad: d.pad.is_some(),
            },
            rows(1),
        );
        let lin = Kind::Linear { residual: false };
        let res = Kind::Linear { residual: true };
        for i in 0..d.layers {
            let n = |s: &str| format!("{p}layers.{i}.{s}");
            b.push(n("self_attn.q_proj.weight"), &[q, h], lin, rows(hd));
            if d.qkv_bias {
                b.push(n("self_attn.q_proj.bias"), &[q], Kind::Bias, rows(hd));
            }
            b.push(n("self_attn.k_proj.weight"), &[kv, h], lin, rows(hd));
            if d.qkv_bias {
                b.push(n("self_attn.k_proj.bias"), &[kv], Kind::Bias, rows(hd));
            }
            b.push(n("self_attn.v_proj.weight"), &[kv, h], lin, rows(hd));
            if d.qkv_bias {
                b.push(n("self_attn.v_proj.bias"), &[kv], Kind::Bias, rows(hd));
            }
            b.push(n("self_attn.o_proj.weight"), &[h, q], res, cols(hd));
            if d.o_bias {
                b.push(n("self_attn.o_proj.bias"), &[h], Kind::Bias, None);
            }
            b.push(n("mlp.gate_proj.weight"), &[d.inter, h], lin, rows(1));
            if d.mlp_bias {
                b.push(n("mlp.gate_proj.bias"), &[d.inter], Kind::Bias, rows(1));
            }
            b.push(n("mlp.up_proj.weight"), &[d.inter, h], lin, rows(1));
            if d.mlp_bias {
                b.push(n("mlp.up_proj.bias"), &[d.inter], Kind::Bias, rows(1));
            }
            b.push(n("mlp.down_proj.weight"), &[h, d.inter], res, cols(1));
            if d.mlp_bias {
                b.push(n("mlp.down_proj.bias"), &[h], Kind::Bias, None);
            }
            b.push(n("input_layernorm.weight"), &[h], Kind::NormWeight, None);
            b.push(
                n("post_attention_layernorm.weight"),
                &[h],
                Kind::NormWeight,
                None,
            );
        }
        b.push(format!("{p}norm.weight"), &[h], Kind::NormWeight, None);
        if self.has_head() {
            if d.tie {
                tied.insert("lm_head.weight".into(), format!("{p}embed_tokens.weight"));
            } else {
                b.push("lm_head.weight".into(), &[d.vocab, h], lin, rows(1));
            }
        }
    }

    fn bert(&self, b: &mut Builder, tied: &mut std::collections::BTreeMap<String, String>) {
        let d = &self.dims;
        let (h, hd) = (d.hidden, d.head_dim);
        let p = if self.has_head() { "bert." } else { "" };
        let lin = Kind::Linear { residual: false };
        let res = Kind::Linear { residual: true };
        let e = |s: &str| format!("{p}embeddings.{s}");
        b.push(
            e("word_embeddings.weight"),
            &[d.vocab, h],
            Kind::Embedding { pad: true },
            rows(1),
        );
        b.push(
            e("position_embeddings.weight"),
            &[d.positions, h],
            Kind::Embedding { pad: false },
            None,
        );
        b.push(
            e("token_type_embeddings.weight"),
            &[d.type_vocab, h],
            Kind::Embedding { pad: false },
            None,
        );
        b.push(e("LayerNorm.weight"), &[h], Kind::NormWeight, None);
        b.push(e("LayerNorm.bias"), &[h], Kind::NormBias, None);
        for i in 0..d.layers {
            let n = |s: &str| format!("{p}encoder.layer.{i}.{s}");
            for qkv in ["query", "key", "value"] {
                b.push(
                    n(&format!("attention.self.{qkv}.weight")),
                    &[h, h],
                    lin,
                    rows(hd),
                );
                b.push(
                    n(&format!("attention.self.{qkv}.bias")),
                    &[h],
                    Kind::Bias,
                    rows(hd),
                );
            }
            b.push(n("attention.output.dense.weight"), &[h, h], res, cols(hd));
            b.push(n("attention.output.dense.bias"), &[h], Kind::Bias, None);
            b.push(
                n("attention.output.LayerNorm.weight"),
                &[h],
                Kind::NormWeight,
                None,
            );
            b.push(
                n("attention.output.LayerNorm.bias"),
                &[h],
                Kind::NormBias,
                None,
            );
            b.push(n("intermediate.dense.weight"), &[d.inter, h], lin, rows(1));
            b.push(
                n("intermediate.dense.bias"),
                &[d.inter],
                Kind::Bias,
                rows(1),
            );
            b.push(n("output.dense.weight"), &[h, d.inter], res, cols(1));
            b.push(n("output.dense.bias"), &[h], Kind::Bias, None);
            b.push(n("output.LayerNorm.weight"), &[h], Kind::NormWeight, None);
            b.push(n("output.LayerNorm.bias"), &[h], Kind::NormBias, None);
        }
        if self.has_head() {
            b.push(
                "cls.predictions.transform.dense.weight".into(),
                &[h, h],
                lin,
                None,
            );
            b.push(
                "cls.predictions.transform.dense.bias".into(),
                &[h],
                Kind::Bias,
                None,
            );
            b.push(
                "cls.predictions.transform.LayerNorm.weight".into(),
                &[h],
                Kind::NormWeight,
                None,
            );
            b.push(
                "cls.predictions.transform.LayerNorm.bias".into(),
                &[h],
                Kind::NormBias,
                None,
            );
            b.push(
                "cls.predictions.bias".into(),
                &[d.vocab],
                Kind::Bias,
                rows(1),
            );
            tied.insert(
                "cls.predictions.decoder.weight".into(),
                e("word_embeddings.weight"),
            );
            tied.insert(
                "cls.predictions.decoder.bias".into(),
                "cls.predictions.bias".into(),
            );
        } else {
            b.push("pooler.dense.weight".into(), &[h, h], lin, None);
            b.push("pooler.dense.bias".into(), &[h], Kind::Bias, None);
        }
    }

    /// `config.json` for a checkpoint of `dtype`: the config as given (every
    /// key kept; keys sorted, as transformers writes them), `architectures`
    /// set to the class written, and `dtype` to the files' (a legacy
    /// `torch_dtype` key is replaced by it).
    pub fn config_json(&self, dtype: DType) -> Vec<u8> {
        let mut c = self.config.clone();
        c.remove("torch_dtype");
        c.insert("architectures".into(), Value::from(vec![self.class]));
        c.insert("dtype".into(), Value::from(torch_dtype(dtype)));
        let mut sorted: Vec<(String, Value)> = c.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let obj: Map<String, Value> = sorted.into_iter().collect();
        let mut text = serde_json::to_vec_pretty(&Value::Object(obj)).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// `generation_config.json` as transformers 5.24 writes it for a model
    /// made from the config (`GenerationConfig.from_model_config`): the
    /// token ids the config sets, `use_cache`, and its fixed keys (without
    /// `transformers_version`: deepinit is not transformers). Only for the
    /// classes that generate.
    pub fn generation_config_json(&self) -> Option<Vec<u8>> {
        if !self.generates() {
            return None;
        }
        let mut g = Map::new();
        g.insert("_from_model_config".into(), Value::Bool(true));
        // The config's token ids, or (when the key is absent) the family
        // config's defaults, as transformers reads them from the config object.
        let defaults: [Option<u64>; 3] = match self.family {
            Family::Gpt2 => [Some(50256), Some(50256), None],
            Family::Llama | Family::Mistral => [Some(1), Some(2), None],
            Family::Qwen2 | Family::Bert => [None, None, None],
        };
        for (k, default) in ["bos_token_id", "eos_token_id", "pad_token_id"]
            .into_iter()
            .zip(defaults)
        {
            let v = match self.config.get(k) {
                Some(v) => v.clone(),
                None => default.map_or(Value::Null, Value::from),
            };
            if !v.is_null() {
                g.insert(k.into(), v);
            }
        }
        g.insert("output_attentions".into(), Value::Bool(false));
        g.insert("output_hidden_states".into(), Value::Bool(false));
        let cache = self
            .config
            .get("use_cache")
            .cloned()
            .filter(Value::is_boolean)
            .unwrap_or(Value::Bool(true));
        g.insert("use_cache".into(), cache);
        let mut text = serde_json::to_vec_pretty(&Value::Object(g)).ok()?;
        text.push(b'\n');
        Some(text)
    }
}

/// The name PyTorch gives a dtype (`float32`, `bfloat16`, `float16`).
pub(crate) fn torch_dtype(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::Bf16 => "bfloat16",
        DType::F16 => "float16",
    }
}
