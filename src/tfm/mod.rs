//! A transformer's forward pass at initialization: the model a Hugging Face
//! config describes ([`crate::model::hf`]), with exactly the weights
//! `deepinit model` writes for it, run on a batch of token sequences, and the
//! signal's scale measured block by block -- the residual stream after each
//! block, each branch's output before it is added, the norms' outputs,
//! attention entropy, the logits and the loss at init.
//!
//! - [`TfmConfig`] is what the pass needs of a config (refusing what it
//!   cannot run, before any work);
//! - [`Weights`] says how every tensor is made (the same generator and rules
//!   as the checkpoint writer) and holds the small ones; the blocks' weight
//!   matrices are drawn when a block needs them;
//! - [`device`] runs the pass on a GPU, [`mirror`] runs the same operation
//!   sequences on the CPU in the device's arithmetic class, so the device's
//!   raw results (statistics records, attention row sums, loss terms) are
//!   compared word for word;
//! - [`fold`] turns the raw results into [`TfmStats`], and [`theory`] sets
//!   them against what is exact enough to predict.

pub mod checkpoint;
pub mod device;
pub mod mirror;
pub mod run;
pub mod theory;

use crate::act::Activation;
use crate::error::{Error, Result};
use crate::gpu::layout::{RECORD_ELEMS, RECORD_WORDS};
use crate::model::hf::{self, Family, HfModel, InitRule};
use crate::model::spec::{Layout, ModelSpec, Rule};
use crate::net::TensorStats;
use serde::Serialize;
use std::collections::HashMap;

/// The norm of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// LayerNorm: (x - mean) / sqrt(var + eps) * w + b.
    Layer,
    /// RMSNorm: w * x / sqrt(mean(x^2) + eps).
    Rms,
}

/// The MLP of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    /// GPT-2: c_proj(gelu(c_fc(x))), GELU's tanh or erf form
    /// ([`TfmConfig::gelu`]).
    Gelu,
    /// Llama: down(silu(gate(x)) * up(x)).
    SwiGlu,
}

/// The widest head the pass runs: a GEMM variant's loops over the head
/// width stay far inside llvmpipe's budget of 65535 loop iterations per
/// invocation (beyond it, lavapipe silently stops looping).
pub(crate) const MAX_HEAD_DIM: u64 = 256;
/// The longest sequence a pass runs: attention holds a whole sequence's
/// seq x seq scores per head (64 MiB at 4096; see [`tiles`]).
pub(crate) const MAX_SEQ: u64 = 4096;
/// The most bytes of one attention tile buffer: as many heads' scores as fit
/// (at least one) are handled together.
const TILE_BYTES: u64 = 64 << 20;
/// The rows an attention tile packs whole sequences into (at least one
/// sequence a tile), so the launches grow with the rows, not with the
/// sequences.
const TILE_ROWS: u64 = 128;

/// Sequences per attention tile (see [`tiles`]).
fn tile_seqs(seq: u64) -> u64 {
    (TILE_ROWS / seq.max(1)).max(1)
}

/// The attention tiles of `tokens`: `(first row, rows)`, each a run of
/// whole consecutive sequences. A tile's products run over all its rows (P V
/// over all its keys, dK over all its queries), the pairs a query does not
/// see -- later tokens and other sequences -- with probability exactly 0;
/// the device and the mirror share this cut.
pub(crate) fn tiles(tokens: &Tokens) -> impl Iterator<Item = (u64, u64)> {
    let (seq, batch) = (tokens.seq, tokens.batch);
    let per = tile_seqs(seq);
    (0..batch)
        .step_by(per as usize)
        .map(move |s| (s * seq, per.min(batch - s) * seq))
}

/// The most rows one attention tile spans.
pub(crate) fn tile_span(tokens: &Tokens) -> u64 {
    tile_seqs(tokens.seq).min(tokens.batch) * tokens.seq
}

/// Query heads per attention tile of `span` rows: a tile's scores are
/// `[heads][span][span]`. Heads are independent, so the grouping changes no
/// result; it only sets how many heads one softmax launch covers.
pub(crate) fn tile_heads(cfg: &TfmConfig, span: u64) -> u64 {
    (TILE_BYTES / (4 * span * span).max(1)).clamp(1, cfg.heads.max(1))
}

/// What the pass needs of a model config.
#[derive(Debug, Clone, PartialEq)]
pub struct TfmConfig {
    /// The family.
    pub family: Family,
    /// The transformers class (its tensor names).
    pub class: &'static str,
    /// Vocabulary.
    pub vocab: u64,
    /// Width.
    pub hidden: u64,
    /// Blocks.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Head width.
    pub head_dim: u64,
    /// MLP width.
    pub inter: u64,
    /// Learned positions (0: rotary).
    pub positions: u64,
    /// The norms.
    pub norm: NormKind,
    /// Norm epsilon, in f32 as the pass adds it.
    pub eps: f32,
    /// The MLP.
    pub mlp: MlpKind,
    /// GELU's form where the MLP is [`MlpKind::Gelu`]: the tanh form
    /// (transformers' `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`) or erf
    /// (`gelu`, `gelu_python`).
    pub gelu: Activation,
    /// Post-norm blocks (BERT): `x = norm1(x + attn(x)); x = norm2(x +
    /// mlp(x))`; otherwise pre-norm `x += attn(norm1(x)); x += mlp(norm2(x))`.
    pub post_norm: bool,
    /// Causal attention (decoders); BERT's attends to its whole sequence.
    pub causal: bool,
    /// Rotary inverse frequencies (head_dim / 2 of them), or empty.
    pub inv_freq: Vec<f32>,
    /// Sliding attention window (0: none).
    pub window: u64,
    /// The attention scores' scale (1 / sqrt(head_dim), or 1).
    pub score_scale: f32,
    /// Whether the model has an LM head (logits and loss are measured).
    pub head: bool,
    /// The token embedding's `padding_idx` (`pad_token_id`), whose row gets
    /// no gradient, as in PyTorch's `nn.Embedding`.
    pub pad: Option<u64>,
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::invalid("config", what)
}

impl TfmConfig {
    /// The pass's view of `m`; refuses what it cannot run, with the reason.
    pub(crate) fn from_hf(m: &HfModel) -> Result<TfmConfig> {
        let d = &m.dims;
        let c = &m.config;
        let (norm, mlp) = match m.family {
            Family::Gpt2 => (NormKind::Layer, MlpKind::Gelu),
            Family::Llama | Family::Mistral | Family::Qwen2 => (NormKind::Rms, MlpKind::SwiGlu),
            Family::Bert => {
                if !m.has_head() {
                    return Err(unsupported(
                        "BertModel (no masked-LM head) is not supported by the pass; \
                         BertForMaskedLM is",
                    ));
                }
                let pe = hf::string(c, &["position_embedding_type"], "absolute")?;
                if pe != "absolute" {
                    return Err(unsupported(format!(
                        "position_embedding_type {pe:?}: the pass runs absolute positions"
                    )));
                }
                if hf::boolean(c, "is_decoder", false)? {
                    return Err(unsupported("is_decoder = true (BERT as a causal decoder)"));
                }
                (NormKind::Layer, MlpKind::Gelu)
            }
        };
        let erf = ["gelu", "gelu_python"].contains(&d.act.as_str());
        let act_ok = match mlp {
            MlpKind::Gelu => {
                erf || ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"].contains(&d.act.as_str())
            }
            MlpKind::SwiGlu => d.act == "silu" || d.act == "swish",
        };
        if !act_ok {
            return Err(Error::bad(
                "config",
                format!("activation {:?}", d.act),
                match mlp {
                    MlpKind::Gelu => {
                        "the pass computes GELU's tanh form (gelu_new, gelu_pytorch_tanh, \
                         gelu_fast) or its erf form (gelu, gelu_python)"
                    }
                    MlpKind::SwiGlu => "the pass computes SwiGLU with silu",
                },
            ));
        }
        if d.heads == 0 || d.kv_heads == 0 || !d.heads.is_multiple_of(d.kv_heads) {
            return Err(unsupported(format!(
                "{} attention heads do not divide into {} key/value heads",
                d.heads, d.kv_heads
            )));
        }
        if matches!(m.family, Family::Gpt2 | Family::Bert) && !d.hidden.is_multiple_of(d.heads) {
            return Err(unsupported(format!(
                "{} heads do not divide the width {}",
                d.heads, d.hidden
            )));
        }
        if d.head_dim > MAX_HEAD_DIM || d.head_dim == 0 {
            return Err(unsupported(format!(
                "head_dim {} is outside the pass's 1..={MAX_HEAD_DIM}",
                d.head_dim
            )));
        }
        let mut score_scale = (1.0 / (d.head_dim as f64).sqrt()) as f32;
        let mut window = 0;
        let mut inv_freq = Vec::new();
        if m.family == Family::Gpt2 {
            if !hf::boolean(c, "scale_attn_weights", true)? {
                score_scale = 1.0;
            }
            if hf::boolean(c, "scale_attn_by_inverse_layer_idx", false)? {
                return Err(unsupported(
                    "scale_attn_by_inverse_layer_idx = true is not supported by the pass",
                ));
            }
        } else if m.family != Family::Bert {
            if !d.head_dim.is_multiple_of(2) {
                return Err(unsupported(format!(
                    "rotary embeddings need an even head_dim, not {}",
                    d.head_dim
                )));
            }
            inv_freq = rope_inv_freq(c, d.head_dim)?;
            if m.family == Family::Qwen2 && hf::boolean(c, "use_sliding_window", false)? {
                // transformers windows only the layers from max_window_layers
                // on (layer_types); the pass has one window for every layer.
                return Err(unsupported(
                    "use_sliding_window = true (Qwen2's per-layer windows) is not supported by \
                     the pass",
                ));
            }
            if m.family == Family::Mistral {
                // Beyond the longest sequence a window changes nothing.
                window = hf::int(c, &["sliding_window"], 0)?.min(MAX_SEQ + 1);
                if window == 1 {
                    return Err(unsupported(
                        "sliding_window = 1 leaves every token attending to itself only",
                    ));
                }
            }
        }
        let eps = d.norm_eps as f32;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::bad(
                "config",
                format!("norm epsilon {}", d.norm_eps),
                "must be a finite number >= 0",
            ));
        }
        Ok(TfmConfig {
            family: m.family,
            class: m.class,
            vocab: d.vocab,
            hidden: d.hidden,
            layers: d.layers,
            heads: d.heads,
            kv_heads: d.kv_heads,
            head_dim: d.head_dim,
            inter: d.inter,
            positions: d.positions,
            norm,
            eps,
            mlp,
            post_norm: m.family == Family::Bert,
            causal: m.family != Family::Bert,
            gelu: if erf {
                Activation::GeluErf
            } else {
                Activation::Gelu
            },
            inv_freq,
            window,
            score_scale,
            head: m.has_head(),
            pad: d.pad,
        })
    }

    /// Columns of the fused q|k|v rows.
    pub(crate) fn qkv_width(&self) -> u64 {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// The key/value head query head `h` reads (grouped-query attention).
    pub(crate) fn kv_head(&self, h: u64) -> u64 {
        h / (self.heads / self.kv_heads.max(1)).max(1)
    }

    /// The attention kernels' window word (`TfParams::lo`): the sliding
    /// window (0: none), or `u32::MAX` for bidirectional attention.
    pub(crate) fn att_window(&self) -> u64 {
        if self.causal {
            self.window.min(u64::from(u32::MAX - 1))
        } else {
            u64::from(u32::MAX)
        }
    }

    /// How far a row's LM target is: 1 (the next token) for a causal LM, 0
    /// (the row's own token, labels = input ids) for a masked LM.
    pub(crate) fn loss_shift(&self) -> u64 {
        u64::from(self.causal)
    }

    /// The padding id plus one as the kernels read it (`same_key`,
    /// `tied_gather`; 0: none; ids are below 2^32 - 1).
    pub(crate) fn pad_word(&self) -> u32 {
        self.pad.map_or(0, |t| t as u32 + 1)
    }

    /// Width of the attention output (heads x head_dim).
    pub(crate) fn attn_width(&self) -> u64 {
        self.heads * self.head_dim
    }
}

/// Rotary inverse frequencies as transformers computes them:
/// `1 / theta^(2i / head_dim)`, with Llama 3's frequency-dependent scaling
/// when the config asks for it (`rope_parameters` or the legacy
/// `rope_scaling` / `rope_theta` keys).
fn rope_inv_freq(
    c: &serde_json::Map<String, serde_json::Value>,
    head_dim: u64,
) -> Result<Vec<f32>> {
    let params = hf::get(c, &["rope_parameters", "rope_scaling"])
        .and_then(|(_, v)| v.as_object().cloned())
        .unwrap_or_default();
    let theta = match params.get("rope_theta").and_then(|v| v.as_f64()) {
        Some(t) => t,
        None => hf::float(c, "rope_theta", 10000.0)?,
    };
    if !(theta.is_finite() && theta > 1.0) {
        return Err(Error::bad(
            "config",
            format!("rope_theta {theta}"),
            "must be a number > 1",
        ));
    }
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default")
        .to_string();
    let half = head_dim / 2;
    let base: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect();
    let f = match kind.as_str() {
        "default" => base,
        "llama3" => {
            let num = |k: &str| {
                params.get(k).and_then(|v| v.as_f64()).ok_or_else(|| {
                    Error::bad(
                        "config",
                        format!("rope_scaling.{k}"),
                        "llama3 scaling needs it",
                    )
                })
            };
            let factor = num("factor")?;
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            let old = num("original_max_position_embeddings")?;
            if !(factor > 0.0 && high > low && old > 0.0) {
                return Err(unsupported(
                    "rope_scaling llama3: needs factor > 0, high_freq_factor > low_freq_factor",
                ));
            }
            let (low_wl, high_wl) = (old / low, old / high);
            base.iter()
                .map(|&f| {
                    let wl = 2.0 * std::f64::consts::PI / f;
                    if wl < high_wl {
                        f
                    } else if wl > low_wl {
                        f / factor
                    } else {
                        let s = (old / wl - low) / (high - low);
                        (1.0 - s) * f / factor + s * f
                    }
                })
                .collect()
        }
        other => {
            return Err(Error::bad(
                "config",
                format!("rope type {other:?}"),
                "the pass knows the default rotary embedding and llama3 scaling",
            ))
        }
    };
    Ok(f.into_iter().map(|x| x as f32).collect())
}

/// The batch of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Sequences.
    pub batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
    /// Row-major ids, `batch x seq`.
    pub ids: Vec<u32>,
}

/// The random loss direction ([`Direction::Random`], and every model
/// without an LM head): the backward pass
/// starts from dL/d(final norm output) = g, g's elements N(0, 1/(rows x
/// width)) drawn by the generator (seed, tensor `deepinit.direction`), so
/// ||g|| is about 1 (the loss is the scalar product with g).
pub fn direction(cfg: &TfmConfig, tokens: &Tokens, seed: u64) -> Vec<f32> {
    let n = tokens.rows() * cfg.hidden;
    let dist = crate::rng::dist::Dist::Normal;
    let mut g = vec![0f32; n as usize];
    let scale = dist.kernel_scale(1.0 / (n as f64).sqrt());
    crate::rng::cpu::fill(
        dist,
        scale,
        seed,
        crate::model::spec::tensor_id("deepinit.direction"),
        0,
        &mut g,
    );
    g
}

/// Philox tensor id of the random token ids (`tensor_id("deepinit.tokens")`).
pub fn tokens_tensor_id() -> u32 {
    crate::model::spec::tensor_id("deepinit.tokens")
}

impl Tokens {
    /// Random ids: element i is `(w_i * vocab) >> 32` for the i-th raw Philox
    /// word of the model seed's tensor [`tokens_tensor_id`] -- uniform over
    /// the vocabulary up to vocab / 2^32.
    pub fn random(cfg: &TfmConfig, batch: u64, seq: u64, seed: u64) -> Result<Tokens> {
        check_batch(cfg, batch, seq)?;
        let mut words = vec![0u32; (batch * seq) as usize];
        crate::rng::cpu::fill_words(seed, tokens_tensor_id(), 0, &mut words);
        let ids = words
            .into_iter()
            .map(|w| ((u64::from(w) * cfg.vocab) >> 32) as u32)
            .collect();
        Ok(Tokens { batch, seq, ids })
    }

    /// Given ids (`batch x seq`, row-major); each must be below the vocabulary.
    pub fn given(cfg: &TfmConfig, batch: u64, seq: u64, ids: Vec<u32>) -> Result<Tokens> {
        check_batch(cfg, batch, seq)?;
        if ids.len() as u64 != batch * seq {
            return Err(Error::internal("tokens", "ids do not match batch x seq"));
        }
        if let Some((i, t)) = ids
            .iter()
            .enumerate()
            .find(|(_, &t)| u64::from(t) >= cfg.vocab)
        {
            return Err(Error::bad(
                "tokens",
                format!("id {t} at position {i}"),
                format!("outside the vocabulary (0..{})", cfg.vocab),
            ));
        }
        Ok(Tokens { batch, seq, ids })
    }

    /// Rows (batch x seq).
    pub fn rows(&self) -> u64 {
        self.batch * self.seq
    }

    /// Checks the fields against `cfg` (they are public: a pass checks them
    /// again before using them).
    pub(crate) fn check(&self, cfg: &TfmConfig) -> Result<()> {
        check_batch(cfg, self.batch, self.seq)?;
        if self.ids.len() as u64 != self.rows() {
            return Err(Error::invalid("tokens", "ids do not match batch x seq"));
        }
        match self.ids.iter().find(|&&t| u64::from(t) >= cfg.vocab) {
            Some(t) => Err(Error::bad(
                "tokens",
                format!("id {t}"),
                format!("outside the vocabulary (0..{})", cfg.vocab),
            )),
            None => Ok(()),
        }
    }
}

fn check_batch(cfg: &TfmConfig, batch: u64, seq: u64) -> Result<()> {
    if batch == 0 || seq < 2 {
        return Err(Error::invalid(
            "batch",
            "--batch must be at least 1 and --seq at least 2",
        ));
    }
    if seq > MAX_SEQ {
        return Err(Error::bad(
            "seq",
            seq.to_string(),
            format!("at most {MAX_SEQ}"),
        ));
    }
    if cfg.positions > 0 && seq > cfg.positions {
        return Err(Error::bad(
            "seq",
            seq.to_string(),
            format!(
                "longer than the model's position table ({} positions)",
                cfg.positions
            ),
        ));
    }
    let rows = batch
        .checked_mul(seq)
        .filter(|&r| r <= 1 << 20)
        .ok_or_else(|| {
            Error::bad(
                "batch",
                format!("{batch} x {seq}"),
                "at most 2^20 tokens per pass",
            )
        })?;
    let widest = cfg.qkv_width().max(cfg.inter).max(cfg.hidden);
    if rows.saturating_mul(widest) > u64::from(u32::MAX) / 4 {
        return Err(Error::bad(
            "batch",
            format!("{batch} x {seq}"),
            "too many tokens for one pass at this width (2^30 elements per activation)",
        ));
    }
    Ok(())
}

/// How one tensor's values are made, as `deepinit model` writes them in f32.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// Every element `v`.
    Const(f32),
    /// Drawn: element i is the generator's value i of `tensor_id` under
    /// `seed`, scaled by `scale` (the distribution's kernel scale for the
    /// rule's std); the rows `zero_rows` set to 0.
    Draw {
        /// The distribution.
        dist: crate::rng::dist::Dist,
        /// The kernel's scale.
        scale: f32,
        /// The model's seed.
        seed: u64,
        /// Philox tensor id.
        tensor_id: u32,
        /// Rows set to zero (padding_idx).
        zero_rows: Vec<u64>,
    },
}

/// A model's tensors: how each is made, and the values of the resident ones
/// (everything but the blocks' weight matrices, which are drawn when a block
/// needs them -- on the device by its generator, on the CPU by the same
/// integer program -- so neither side ever holds a whole model).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    values: HashMap<String, Vec<f32>>,
    sources: HashMap<String, Source>,
    tied: std::collections::BTreeMap<String, String>,
    layouts: HashMap<String, Layout>,
    shapes: HashMap<String, Vec<u64>>,
    stds: HashMap<String, f64>,
}

impl Weights {
    /// The tensors of `spec`; every one not in `streamed` is drawn now on the
    /// CPU (the generator's bits, the zero rows, the constants).
    pub fn generate(
        spec: &ModelSpec,
        streamed: &std::collections::HashSet<String>,
    ) -> Result<Weights> {
        let mut w = Weights {
            tied: spec.tied.clone(),
            ..Weights::default()
        };
        for t in &spec.tensors {
            let source = match &t.rule {
                Rule::Const(c) => Source::Const(*c),
                Rule::Draw { init, layout } => {
                    let target = t
                        .target()?
                        .ok_or_else(|| Error::internal("weights", "no target"))?;
                    w.stds.insert(t.name.clone(), target.std);
                    w.layouts.insert(t.name.clone(), *layout);
                    Source::Draw {
                        dist: init.dist(),
                        scale: init.dist().kernel_scale(target.std),
                        seed: spec.seed,
                        tensor_id: t.id(),
                        zero_rows: t.zero_rows.clone(),
                    }
                }
            };
            w.shapes.insert(t.name.clone(), t.shape.0.clone());
            w.sources.insert(t.name.clone(), source);
            if !streamed.contains(&t.name) {
                let v = w.draw(&t.name)?;
                w.values.insert(t.name.clone(), v);
            }
        }
        Ok(w)
    }

    /// The tensors of `spec` with given values (a checkpoint's): every one
    /// resident; a matrix's "rule std" is its measured root mean square, the
    /// scale the theory then predicts from.
    pub fn from_values(spec: &ModelSpec, mut values: HashMap<String, Vec<f32>>) -> Result<Weights> {
        let mut w = Weights {
            tied: spec.tied.clone(),
            ..Weights::default()
        };
        for t in &spec.tensors {
            let v = values
                .remove(&t.name)
                .ok_or_else(|| Error::internal("weights", format!("no values for '{}'", t.name)))?;
            if let Rule::Draw { layout, .. } = &t.rule {
                w.layouts.insert(t.name.clone(), *layout);
                let ms = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()
                    / v.len().max(1) as f64;
                w.stds.insert(t.name.clone(), ms.sqrt());
            }
            w.shapes.insert(t.name.clone(), t.shape.0.clone());
            w.sources.insert(t.name.clone(), Source::Const(f32::NAN));
            w.values.insert(t.name.clone(), v);
        }
        Ok(w)
    }

    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.tied.get(name).map_or(name, String::as_str)
    }

    /// Draws a tensor's values on the CPU.
    pub(crate) fn draw(&self, name: &str) -> Result<Vec<f32>> {
        let name = self.resolve(name);
        let (source, shape) = self
            .sources
            .get(name)
            .zip(self.shapes.get(name))
            .ok_or_else(|| Error::internal("weights", format!("no tensor '{name}'")))?;
        let n: u64 = shape.iter().product();
        let mut v = crate::io::host::host_vec::<f32>(n)?;
        match source {
            Source::Const(c) => v.iter_mut().for_each(|x| *x = *c),
            Source::Draw {
                dist,
                scale,
                seed,
                tensor_id,
                zero_rows,
            } => {
                crate::rng::cpu::fill(*dist, *scale, *seed, *tensor_id, 0, &mut v);
                let width: u64 = shape.iter().skip(1).product();
                for &r in zero_rows {
                    v[(r * width) as usize..((r + 1) * width) as usize].fill(0.0);
                }
            }
        }
        Ok(v)
    }

    /// A tensor's values: the resident copy, or drawn now (a tied name gives
    /// its source's).
    pub(crate) fn get(&self, name: &str) -> Result<std::borrow::Cow<'_, [f32]>> {
        match self.values.get(self.resolve(name)) {
            Some(v) => Ok(std::borrow::Cow::Borrowed(v.as_slice())),
            None => Ok(std::borrow::Cow::Owned(self.draw(name)?)),
        }
    }

    /// Whether a tensor is held (not drawn when needed).
    pub(crate) fn resident(&self, name: &str) -> bool {
        self.values.contains_key(self.resolve(name))
    }

    /// How a tensor is made.
    pub(crate) fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(self.resolve(name))
    }

    /// A tensor's shape.
    pub(crate) fn shape(&self, name: &str) -> Option<&[u64]> {
        self.shapes.get(self.resolve(name)).map(Vec::as_slice)
    }

    /// A weight matrix's storage layout.
    pub(crate) fn layout(&self, name: &str) -> Layout {
        self.layouts
            .get(self.resolve(name))
            .copied()
            .unwrap_or(Layout::OutIn)
    }

    /// The standard deviation a drawn tensor's rule gives it (None: a constant).
    pub(crate) fn std(&self, name: &str) -> Option<f64> {
        self.stds.get(self.resolve(name)).copied()
    }

    /// Whether the model has a tensor called `name` (tied names included).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.sources.contains_key(self.resolve(name))
    }
}

/// A linear map's tensors: the weight, its layout, its bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Weight name.
    pub weight: String,
    /// Bias name, if any.
    pub bias: Option<String>,
    /// Input features.
    pub n_in: u64,
    /// Output features.
    pub n_out: u64,
}

/// One block's tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockNames {
    /// First norm's weight and bias.
    pub ln1: (String, Option<String>),
    /// q, k, v projections (one fused for GPT-2), into the q|k|v rows in order.
    pub qkv: Vec<Linear>,
    /// Attention output projection.
    pub o: Linear,
    /// Second norm.
    pub ln2: (String, Option<String>),
    /// MLP input projections: `[c_fc]` or `[gate, up]`.
    pub mlp_in: Vec<Linear>,
    /// MLP output projection.
    pub mlp_out: Linear,
}

impl BlockNames {
    /// The block's linear maps in pass order: q|k|v, o, the MLP's inputs, its
    /// output.
    pub(crate) fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.qkv
            .iter()
            .chain([&self.o])
            .chain(&self.mlp_in)
            .chain([&self.mlp_out])
    }
}

impl Names {
    /// Every norm as (weight, bias), in pass order: the embeddings' (BERT),
    /// each block's two, then the final norm.
    pub(crate) fn all_norms(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.ln_e
            .iter()
            .chain(self.blocks.iter().flat_map(|b| [&b.ln1, &b.ln2]))
            .chain([&self.ln_f])
            .map(|(w, b)| (w.as_str(), b.as_deref()))
    }
}

/// The model's tensor names, by role.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    /// Token embedding.
    pub tok: String,
    /// Learned position embedding.
    pub pos: Option<String>,
    /// Blocks.
    pub blocks: Vec<BlockNames>,
    /// Final norm.
    pub ln_f: (String, Option<String>),
    /// LM head ([vocab, hidden], possibly tied to the embedding).
    pub head: Option<String>,
    /// Token-type embedding (BERT; every token is of type 0).
    pub types: Option<String>,
    /// The embeddings' norm (BERT).
    pub ln_e: Option<(String, Option<String>)>,
    /// The masked-LM head's transform before the final norm (BERT): a dense
    /// map, then GELU.
    pub transform: Option<Linear>,
    /// The head's bias (BERT's decoder bias, `[vocab]`).
    pub head_bias: Option<String>,
}

impl Names {
    /// The names of `cfg`'s class.
    pub(crate) fn of(cfg: &TfmConfig, w: &Weights) -> Names {
        Names::of_with(cfg, &|b| w.has(b))
    }

    /// The names of `cfg`'s class, without the biases (their presence is
    /// read from the weights).
    pub(crate) fn of_config(cfg: &TfmConfig) -> Names {
        Names::of_with(cfg, &|_| false)
    }

    fn of_with(cfg: &TfmConfig, has: &dyn Fn(&str) -> bool) -> Names {
        let (e, hd) = (cfg.hidden, cfg.head_dim);
        let lin = |weight: String, bias: String, n_in, n_out| Linear {
            bias: has(&bias).then_some(bias),
            weight,
            n_in,
            n_out,
        };
        let head = cfg.head.then(|| "lm_head.weight".to_string());
        match cfg.family {
            Family::Gpt2 => {
                let p = if cfg.head { "transformer." } else { "" };
                let blocks = (0..cfg.layers)
                    .map(|i| {
                        let n = |s: &str| format!("{p}h.{i}.{s}");
                        BlockNames {
                            ln1: (n("ln_1.weight"), Some(n("ln_1.bias"))),
                            qkv: vec![lin(
                                n("attn.c_attn.weight"),
                                n("attn.c_attn.bias"),
                                e,
                                3 * e,
                            )],
                            o: lin(n("attn.c_proj.weight"), n("attn.c_proj.bias"), e, e),
                            ln2: (n("ln_2.weight"), Some(n("ln_2.bias"))),
                            mlp_in: vec![lin(
                                n("mlp.c_fc.weight"),
                                n("mlp.c_fc.bias"),
                                e,
                                cfg.inter,
                            )],
                            mlp_out: lin(
                                n("mlp.c_proj.weight"),
                                n("mlp.c_proj.bias"),
                                cfg.inter,
                                e,
                            ),
                        }
                    })
                    .collect();
                Names {
                    tok: format!("{p}wte.weight"),
                    pos: Some(format!("{p}wpe.weight")),
                    blocks,
                    ln_f: (format!("{p}ln_f.weight"), Some(format!("{p}ln_f.bias"))),
                    head,
                    types: None,
                    ln_e: None,
                    transform: None,
                    head_bias: None,
                }
            }
            Family::Bert => {
                // BertForMaskedLM (the pass refuses BertModel).
                let p = "bert.";
                let blocks = (0..cfg.layers)
                    .map(|i| {
                        let n = |s: &str| format!("{p}encoder.layer.{i}.{s}");
                        let proj = |s: &str, n_in, n_out| {
                            lin(
                                n(&format!("{s}.weight")),
                                n(&format!("{s}.bias")),
                                n_in,
                                n_out,
                            )
                        };
                        let ln =
                            |s: &str| (n(&format!("{s}.weight")), Some(n(&format!("{s}.bias"))));
                        BlockNames {
                            ln1: ln("attention.output.LayerNorm"),
                            qkv: vec![
                                proj("attention.self.query", e, e),
                                proj("attention.self.key", e, e),
                                proj("attention.self.value", e, e),
                            ],
                            o: proj("attention.output.dense", e, e),
                            ln2: ln("output.LayerNorm"),
                            mlp_in: vec![proj("intermediate.dense", e, cfg.inter)],
                            mlp_out: proj("output.dense", cfg.inter, e),
                        }
                    })
                    .collect();
                let c = |s: &str| format!("cls.predictions.{s}");
                Names {
                    tok: format!("{p}embeddings.word_embeddings.weight"),
                    pos: Some(format!("{p}embeddings.position_embeddings.weight")),
                    blocks,
                    ln_f: (
                        c("transform.LayerNorm.weight"),
                        Some(c("transform.LayerNorm.bias")),
                    ),
                    head: Some(c("decoder.weight")),
                    types: Some(format!("{p}embeddings.token_type_embeddings.weight")),
                    ln_e: Some((
                        format!("{p}embeddings.LayerNorm.weight"),
                        Some(format!("{p}embeddings.LayerNorm.bias")),
                    )),
                    transform: Some(lin(
                        c("transform.dense.weight"),
                        c("transform.dense.bias"),
                        e,
                        e,
                    )),
                    head_bias: Some(c("bias")),
                }
            }
            _ => {
                let p = if cfg.head { "model." } else { "" };
                let (q, kv) = (cfg.heads * hd, cfg.kv_heads * hd);
                let blocks = (0..cfg.layers)
                    .map(|i| {
                        let n = |s: &str| format!("{p}layers.{i}.{s}");
                        let proj = |s: &str, n_in, n_out| {
                            lin(
                                n(&format!("{s}.weight")),
                                n(&format!("{s}.bias")),
                                n_in,
                                n_out,
                            )
                        };
                        BlockNames {
                            ln1: (n("input_layernorm.weight"), None),
                            qkv: vec![
                                proj("self_attn.q_proj", e, q),
                                proj("self_attn.k_proj", e, kv),
                                proj("self_attn.v_proj", e, kv),
                            ],
                            o: proj("self_attn.o_proj", q, e),
                            ln2: (n("post_attention_layernorm.weight"), None),
                            mlp_in: vec![
                                proj("mlp.gate_proj", e, cfg.inter),
                                proj("mlp.up_proj", e, cfg.inter),
                            ],
                            mlp_out: proj("mlp.down_proj", cfg.inter, e),
                        }
                    })
                    .collect();
                Names {
                    tok: format!("{p}embed_tokens.weight"),
                    pos: None,
                    blocks,
                    ln_f: (format!("{p}norm.weight"), None),
                    head,
                    types: None,
                    ln_e: None,
                    transform: None,
                    head_bias: None,
                }
            }
        }
    }
}

/// One model, ready to run: its config, names and weights.
#[derive(Debug, Clone)]
pub struct Model {
    /// The pass's view of the config.
    pub cfg: TfmConfig,
    /// Tensor names by role.
    pub names: Names,
    /// Values.
    pub weights: Weights,
    /// The init rule's name.
    pub init: String,
    /// The seed.
    pub seed: u64,
    /// Whether the weights were drawn by a rule (the mean-field checks
    /// assume i.i.d. zero-mean entries; a checkpoint's need not be).
    pub drawn: bool,
    /// Where the backward pass starts.
    pub direction: Direction,
}

/// Where the backward pass starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The mean next-token loss (BERT: the masked-LM loss with labels =
    /// input ids), where the model has an LM head (else as `Random`).
    #[default]
    Loss,
    /// dL/d(final norm output) = a random direction ([`direction`]), as the
    /// MLP pass does: the head's and the logits' gradients are not taken.
    Random,
}

impl Model {
    /// Whether the head is the token embedding table itself (tied).
    pub(crate) fn tied_head(&self) -> bool {
        self.names
            .head
            .as_deref()
            .is_some_and(|h| self.weights.resolve(h) == self.weights.resolve(&self.names.tok))
    }

    /// `m` with `init`'s weights under `seed`: the checkpoint `deepinit model`
    /// writes for the same arguments.
    pub fn new(m: &HfModel, init: InitRule, seed: u64) -> Result<Model> {
        let cfg = TfmConfig::from_hf(m)?;
        let spec = m.spec(init, seed)?;
        let streamed = Names::of_config(&cfg)
            .blocks
            .iter()
            .flat_map(|b| b.linears().map(|l| l.weight.clone()).collect::<Vec<_>>())
            .collect();
        let weights = Weights::generate(&spec, &streamed)?;
        let names = Names::of(&cfg, &weights);
        Ok(Model {
            cfg,
            names,
            weights,
            init: init.name(),
            seed,
            drawn: true,
            direction: Direction::Loss,
        })
    }

    /// Rotary tables for `seq` positions: cos and sin of `pos * inv_freq[i]`
    /// (the angle's product in f32, as transformers forms it; its cosine and
    /// sine rounded to f32), `[seq, head_dim / 2]` each.
    pub(crate) fn rope_tables(&self, seq: u64) -> (Vec<f32>, Vec<f32>) {
        let f = &self.cfg.inv_freq;
        let mut cos = Vec::with_capacity(seq as usize * f.len());
        let mut sin = Vec::with_capacity(seq as usize * f.len());
        for p in 0..seq {
            for &x in f {
                let angle = f64::from(p as f32 * x);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }
}

/// The longest inner dimension one matrix product of the pass runs: longer
/// ones are products over pieces of this, each later piece added to the
/// result, on the device and in the mirror alike. llvmpipe stops an
/// invocation's loops after 65535 iterations in all, silently; a GEMM
/// kernel's loops over 2048 values of k stay far inside that for every
/// variant.
pub(crate) const K_PIECE: usize = 2048;

/// The most rows (tokens) a backward pass takes: its weight-gradient norms
/// use rows x rows Gram matrices (64 MiB at this size).
pub const MAX_GRAD_ROWS: u64 = 4096;

/// The statistics records of one pass: where each measured tensor's records
/// lie, and how the device cuts its products. Both the device and the mirror
/// lay them out from this.
#[derive(Debug, Clone, PartialEq)]
pub struct PassLayout {
    /// (name, first record, records, elements), in pass order.
    pub tensors: Vec<(String, u64, u64, u64)>,
    /// Rows of logits computed at a time (the logits of a block of rows must
    /// fit one binding).
    pub logit_rows: u64,
    /// Bytes of one storage binding: weights are stored in row chunks of at
    /// most this, and products over a chunked dimension add their chunks.
    pub binding: u64,
    /// Whether the backward pass runs.
    pub backward: bool,
    /// Whether it starts from the mean loss (an LM head and
    /// [`Direction::Loss`]); else from [`direction`].
    pub from_loss: bool,
    /// All records.
    pub total_records: u64,
}

/// The record of a tied table's cross term <lookup, head> (see [`TiedGrad`]).
pub(crate) fn cross_rec(table: &str) -> String {
    format!("dEH:{table}")
}

/// Records covering `n` elements.
fn records(n: u64) -> u64 {
    n.div_ceil(RECORD_ELEMS)
}

impl PassLayout {
    /// The layout for `m` on `tokens`, with logits `logit_rows` rows at a
    /// time, weights in chunks of `binding` bytes, and the backward pass if
    /// asked for and possible (at most [`MAX_GRAD_ROWS`] rows). The model's
    /// tensors say which linear maps have a bias, whose gradient is measured
    /// too.
    pub fn new(
        m: &Model,
        tokens: &Tokens,
        logit_rows: u64,
        binding: u64,
        backward: bool,
    ) -> PassLayout {
        let cfg = &m.cfg;
        let rows = tokens.rows();
        let e = rows * cfg.hidden;
        let mut tensors = Vec::new();
        let mut at = 0;
        let mut push = |name: String, recs: u64, n: u64| {
            tensors.push((name, at, recs, n));
            at += recs;
        };
        push("embed".into(), records(e), e);
        for l in 1..=cfg.layers {
            for part in ["ln1", "attn", "mid", "ln2", "mlp", "out"] {
                push(format!("{l}.{part}"), records(e), e);
            }
        }
        push("ln_f".into(), records(e), e);
        let logit_rows = logit_rows.clamp(1, rows);
        if cfg.head {
            let mut recs = 0;
            let mut r0 = 0;
            while r0 < rows {
                recs += records(logit_rows.min(rows - r0) * cfg.vocab);
                r0 += logit_rows;
            }
            push("logits".into(), recs, rows * cfg.vocab);
        }
        let backward = backward && rows <= MAX_GRAD_ROWS;
        let from_loss = backward && cfg.head && m.direction == Direction::Loss;
        if backward {
            let g = rows * rows;
            push("d.final".into(), records(e), e);
            // With the logits in row blocks, the head's gradient is taken
            // by vocabulary column blocks of all rows instead, each at most
            // as large as the logits buffer.
            if from_loss && logit_rows * cfg.vocab >= rows {
                push("dW:head".into(), records(g), g);
                // The head's bias (BERT's decoder bias): the same dY dY^T.
                if let Some(hb) = &m.names.head_bias {
                    push(format!("db:{hb}"), records(g), g);
                }
            }
            push(format!("dE:{}", m.names.tok), records(g), g);
            if m.tied_head() && from_loss && logit_rows * cfg.vocab >= rows {
                push(cross_rec(&m.names.tok), records(g), g);
            }
            for table in m.names.pos.iter().chain(&m.names.types) {
                push(format!("dE:{table}"), records(g), g);
            }
            if let Some(t) = &m.names.transform {
                push(format!("dW:{}", t.weight), records(g), g);
                if t.bias.is_some() {
                    push(format!("db:{}", t.weight), records(g), g);
                }
            }
            for (weight, bias) in m.names.all_norms() {
                push(format!("dg:{weight}"), records(g), g);
                if let Some(bias) = bias {
                    push(format!("db:{bias}"), records(g), g);
                }
            }
            for (l, b) in (1..=cfg.layers).zip(&m.names.blocks) {
                push(format!("{l}.dmid"), records(e), e);
                push(format!("{l}.din"), records(e), e);
                for lin in b.linears() {
                    push(format!("dW:{}", lin.weight), records(g), g);
                    if lin.bias.is_some() {
                        push(format!("db:{}", lin.weight), records(g), g);
                    }
                }
            }
        }
        PassLayout {
            tensors,
            logit_rows,
            binding,
            backward,
            from_loss,
            total_records: at,
        }
    }

    /// First record of `name`.
    pub(crate) fn rec(&self, name: &str) -> u64 {
        self.tensors.iter().find(|t| t.0 == name).map_or(0, |t| t.1)
    }

    /// Whether `name` has records.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.0 == name)
    }

    /// The row chunks `(first row, rows)` a tensor of `rows` rows of `width`
    /// is stored in on the device.
    pub fn chunks(&self, rows: u64, width: u64) -> Vec<(usize, usize)> {
        let per = (self.binding / (4 * width.max(1))).max(1);
        (0..rows.max(1))
            .step_by(per as usize)
            .map(|r0| (r0 as usize, per.min(rows.max(1) - r0) as usize))
            .collect()
    }
}

/// The first records of a linear map's weight gradient norm and, where it
/// has a bias, of its bias's.
pub(crate) fn grad_recs(layout: &PassLayout, lin: &Linear) -> (u64, Option<u64>) {
    let bias = format!("db:{}", lin.weight);
    (
        layout.rec(&format!("dW:{}", lin.weight)),
        layout.has(&bias).then(|| layout.rec(&bias)),
    )
}

/// The first record of the head's bias gradient norm, where the model has a
/// head bias and the pass measures the head's gradient.
pub(crate) fn head_bias_rec(m: &Model, layout: &PassLayout) -> Option<u64> {
    let rec = format!("db:{}", m.names.head_bias.as_ref()?);
    layout.has(&rec).then(|| layout.rec(&rec))
}

/// A pass's raw results as the device leaves them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawTfm {
    /// Statistics records ([`RECORD_WORDS`] words each).
    pub recs: Vec<u32>,
    /// Per layer, row and head: the softmax sum S, A = sum e (s - m), and m.
    pub att: Vec<u32>,
    /// Per row: the largest logit, the sum of e^(l - m), the target's logit
    /// (the next token's; BERT's: the row's own).
    pub loss: Vec<u32>,
    /// Per norm (each block's two, then the final one) and row: the row's
    /// variance as the norm sees it (LayerNorm: about the row's mean; RMSNorm:
    /// the mean square; without epsilon).
    pub norm_vars: Vec<u32>,
}

impl RawTfm {
    /// Zeroed buffers for `layout`.
    pub(crate) fn zeroed(cfg: &TfmConfig, tokens: &Tokens, layout: &PassLayout) -> RawTfm {
        RawTfm {
            recs: vec![0; (layout.total_records * RECORD_WORDS) as usize],
            att: vec![0; att_words(cfg, tokens) as usize],
            loss: vec![
                0;
                if cfg.head {
                    3 * tokens.rows() as usize
                } else {
                    0
                }
            ],
            norm_vars: vec![0; norm_var_words(cfg, tokens) as usize],
        }
    }
}

/// Words of the norms' row variances: one per norm (2 per block and the
/// final one) and row. LayerNorm's is the row's mean squared deviation from
/// its mean, RMSNorm's its mean square, each as the norm kernel forms it
/// (the sum times 1/width rounded, without epsilon).
pub(crate) fn norm_var_words(cfg: &TfmConfig, tokens: &Tokens) -> u64 {
    (2 * cfg.layers + 1) * tokens.rows()
}

/// Words of the attention row sums: 3 per layer, row and head (S, A, m).
pub(crate) fn att_words(cfg: &TfmConfig, tokens: &Tokens) -> u64 {
    3 * cfg.layers * tokens.rows() * cfg.heads
}

/// One block's measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockStats {
    /// Block (1-based).
    pub block: u64,
    /// The rows entering the first norm.
    pub norm_in: NormInput,
    /// The first norm's output (the attention's input).
    pub norm: TensorStats,
    /// The attention branch's output before the residual addition.
    pub attn: TensorStats,
    /// The stream after the attention's residual addition.
    pub mid: TensorStats,
    /// The rows entering the second norm.
    pub norm2_in: NormInput,
    /// The second norm's output (the MLP's input).
    pub norm2: TensorStats,
    /// The MLP branch's output before its addition.
    pub mlp: TensorStats,
    /// The stream after the block.
    pub out: TensorStats,
    /// Mean attention entropy (nats) over rows and heads.
    pub entropy: f64,
    /// Mean of entropy / ln(keys) over rows with at least two keys (1: uniform
    /// attention; near 0: collapsed onto one key).
    pub entropy_ratio: f64,
    /// Mean largest attention probability.
    pub max_prob: f64,
    /// Fraction of rows (with at least two keys) whose largest probability
    /// exceeds 0.9: collapsed attention.
    pub collapsed: f64,
}

/// The rows entering a norm, by their variances as the norm kernel forms
/// them (LayerNorm: about the row's mean; RMSNorm: the mean square).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormInput {
    /// Mean of the rows' variances.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// Mean over rows of v / (v + eps): the mean square of the norm's output
    /// at unit gain and zero bias (see [`theory::NormCheck`]).
    pub unit_ms: f64,
    /// Rows whose variance is not finite (not in the figures above).
    pub nonfinite: u64,
}

impl TfmStats {
    /// The stream leaving block `b`: its output, or post-norm its second
    /// norm's.
    pub fn stream_after<'a>(&self, b: &'a BlockStats) -> &'a TensorStats {
        if self.post_norm {
            &b.norm2
        } else {
            &b.out
        }
    }
}

impl NormInput {
    /// From the raw words of one norm's rows.
    fn of(words: &[u32], eps: f32) -> NormInput {
        let eps = f64::from(eps);
        let (mut sum, mut unit, mut n, mut nonfinite) = (0.0, 0.0, 0u64, 0u64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &w in words {
            let v = f64::from(f32::from_bits(w));
            if !v.is_finite() {
                nonfinite += 1;
                continue;
            }
            sum += v;
            // A constant row leaves the norm as zeros (also with eps = 0).
            unit += if v == 0.0 { 0.0 } else { v / (v + eps) };
            min = min.min(v);
            max = max.max(v);
            n += 1;
        }
        let d = n.max(1) as f64;
        NormInput {
            mean: sum / d,
            min: if n > 0 { min } else { f64::NAN },
            max: if n > 0 { max } else { f64::NAN },
            unit_ms: unit / d,
            nonfinite,
        }
    }
}

/// A pass's measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TfmStats {
    /// Post-norm blocks (BERT): each block's `mid` and `out` are the sums
    /// before its norms, and the stream is the norms' output (`norm`,
    /// `norm2`).
    pub post_norm: bool,
    /// The embedding output (the stream entering block 1).
    pub embed: TensorStats,
    /// Per block.
    pub blocks: Vec<BlockStats>,
    /// The rows entering the final norm.
    pub final_norm_in: NormInput,
    /// The final norm's output.
    pub final_norm: TensorStats,
    /// The logits (with an LM head).
    pub logits: Option<TensorStats>,
    /// Mean loss over the rows that have a target (the next token; BERT:
    /// the row's own).
    pub loss: Option<f64>,
    /// Standard deviation of the per-row losses.
    pub loss_std: Option<f64>,
    /// Rows the loss averages.
    pub loss_rows: u64,
    /// The backward pass's gradient norms (None: not run).
    pub grads: Option<GradStats>,
}

/// A weight matrix's gradient norm, and its bias's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightGrad {
    /// The tensor.
    pub name: String,
    /// ||dL/dW||_F.
    pub norm: f64,
    /// ||dL/db|| of the linear map's bias, where it has one: the column sums
    /// of dY, whose squared norm is the sum of every entry of dY dY^T (the
    /// Gram matrix ||dL/dW|| already forms).
    pub bias: Option<f64>,
}

/// One block's gradients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockGrads {
    /// Block (1-based).
    pub block: u64,
    /// ||dL/dx|| for the stream entering the block.
    pub stream_in: f64,
    /// ||dL/dx|| for the stream after its attention addition (post-norm:
    /// after the first norm, the MLP's input).
    pub stream_mid: f64,
    /// Every weight matrix of the block.
    pub weights: Vec<WeightGrad>,
}

/// A parameter tensor's gradient norm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamGrad {
    /// The tensor (a norm's weight or bias, an embedding table).
    pub name: String,
    /// ||dL/dp||.
    pub norm: f64,
}

/// The gradient of a table shared by the embedding lookup and the head:
/// ||L + H||^2 = ||L||^2 + ||H||^2 + 2 <L, H>, the cross term measured on the
/// device as sum over rows r, r' of (dX H^T)[r, r'] dlogits[r', id_r] (dX the
/// stream gradient at the embedding, H the final norm's output; rows with the
/// padding id contribute nothing to L).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TiedGrad {
    /// The table.
    pub name: String,
    /// ||L||: the lookup's share.
    pub lookup: f64,
    /// ||H||: the head's share.
    pub head: f64,
    /// <L, H>.
    pub cross: f64,
    /// ||L + H||, the whole gradient's norm.
    pub norm: f64,
}

/// The backward pass's measurements: Frobenius norms of the loss's
/// gradients (the loss being the mean next-token loss; BERT's, the mean
/// masked-LM loss with every token its own label).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GradStats {
    /// ||dL/dx|| for the stream leaving the last block.
    pub stream_out: f64,
    /// ||dL/dW|| of the LM head (a tied head's share only), from the loss;
    /// None under [`Direction::Random`], or where not even one logit column
    /// of every row fits the logits buffer.
    pub head: Option<f64>,
    /// ||dL/db|| of the head's bias (BERT's decoder bias: the column sums
    /// of dL/d(logits)), from the loss; None without one, and wherever
    /// [`GradStats::head`] is None.
    pub head_bias: Option<f64>,
    /// The masked-LM head's transform (BERT's dense map before its GELU and
    /// the final norm), and its bias's.
    pub transform: Option<WeightGrad>,
    /// Per block.
    pub blocks: Vec<BlockGrads>,
    /// The token embedding table's (and the learned position and token-type
    /// tables') gradient through the lookup, at the embeddings' sum (BERT:
    /// before their norm): a row's gradient is the sum of the stream
    /// gradient's rows at that token (position, type: every token is of
    /// type 0); the padding token's row gets none. A tied table's lookup
    /// share only ([`GradStats::head`] is the head's).
    pub embeddings: Vec<ParamGrad>,
    /// The table the token embedding and the head share (GPT-2's `wte`, a
    /// tied Qwen2's, BERT's word embeddings): its whole gradient, the lookup's share plus the head's.
    /// None where the head is not tied or its share was not measured.
    pub tied: Option<TiedGrad>,
    /// Every norm's weight (the gain gamma: its gradient is the column sums
    /// of the output gradient times the normalized input), in forward order.
    pub norm_gains: Vec<ParamGrad>,
    /// Every norm's bias (LayerNorm's beta, whose gradient is the column
    /// sums of the output gradient; RMSNorm has none), in forward order.
    pub norm_biases: Vec<ParamGrad>,
}

/// Folds raw results into statistics (host side, f64).
pub fn fold(
    cfg: &TfmConfig,
    tokens: &Tokens,
    layout: &PassLayout,
    raw: &RawTfm,
) -> Result<TfmStats> {
    let stats = |name: &str| -> Result<TensorStats> {
        let t =
            layout.tensors.iter().find(|t| t.0 == name).ok_or_else(|| {
                Error::internal("transformer layout", format!("no tensor {name}"))
            })?;
        crate::net::kernels::fold_records(&raw.recs, t.1, t.2)
    };
    let f = |w: u32| f64::from(f32::from_bits(w));
    let (rows, h, t_len) = (tokens.rows(), cfg.heads, tokens.seq);
    // The rows entering norm k (each block's two, then the final one).
    let norm_input = |k: u64| {
        let r0 = (k * rows) as usize;
        let words = raw.norm_vars.get(r0..r0 + rows as usize).unwrap_or(&[]);
        NormInput::of(words, cfg.eps)
    };
    let mut blocks = Vec::new();
    for l in 1..=cfg.layers {
        let (mut ent, mut ratio, mut maxp, mut coll) = (0.0, 0.0, 0.0, 0.0);
        let (mut n_all, mut n_multi) = (0u64, 0u64);
        for r in 0..rows {
            let t = r % t_len;
            let keys = if !cfg.causal {
                t_len
            } else if cfg.window > 0 {
                (t + 1).min(cfg.window)
            } else {
                t + 1
            };
            for hh in 0..h {
                let i = (3 * (((l - 1) * rows + r) * h + hh)) as usize;
                let (s, a) = (f(raw.att[i]), f(raw.att[i + 1]));
                let e = s.ln() - a / s;
                let p = 1.0 / s;
                ent += e;
                maxp += p;
                n_all += 1;
                if keys >= 2 {
                    ratio += e / (keys as f64).ln();
                    coll += f64::from(u8::from(p > 0.9));
                    n_multi += 1;
                }
            }
        }
        let n_all = n_all.max(1) as f64;
        let n_multi = n_multi.max(1) as f64;
        let norm_in = |k: u64| norm_input(2 * (l - 1) + k);
        blocks.push(BlockStats {
            block: l,
            norm_in: norm_in(0),
            norm2_in: norm_in(1),
            norm: stats(&format!("{l}.ln1"))?,
            attn: stats(&format!("{l}.attn"))?,
            mid: stats(&format!("{l}.mid"))?,
            norm2: stats(&format!("{l}.ln2"))?,
            mlp: stats(&format!("{l}.mlp"))?,
            out: stats(&format!("{l}.out"))?,
            entropy: ent / n_all,
            entropy_ratio: ratio / n_multi,
            max_prob: maxp / n_all,
            collapsed: coll / n_multi,
        });
    }
    let (mut loss, mut loss_std, mut loss_rows) = (None, None, 0);
    if cfg.head {
        let mut ls = Vec::new();
        for r in 0..rows {
            if r % t_len + cfg.loss_shift() < t_len {
                let i = 3 * r as usize;
                let (m, s, lt) = (f(raw.loss[i]), f(raw.loss[i + 1]), f(raw.loss[i + 2]));
                ls.push(s.ln() + m - lt);
            }
        }
        loss_rows = ls.len() as u64;
        if !ls.is_empty() {
            let n = ls.len() as f64;
            let mean = ls.iter().sum::<f64>() / n;
            let var = ls.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
            loss = Some(mean);
            loss_std = Some(var.sqrt());
        }
    }
    let grads = if layout.backward {
        let norm = |name: &str| -> Result<f64> {
            let t = stats(name)?;
            Ok((t.mean_sq * t.count as f64).sqrt())
        };
        let wnorm = |name: &str| -> Result<f64> {
            let t = stats(name)?;
            Ok((t.mean * t.count as f64).max(0.0).sqrt())
        };
        let names = Names::of_config(cfg);
        let mut blocks = Vec::new();
        for (l, b) in (1..=cfg.layers).zip(&names.blocks) {
            let weights = b
                .linears()
                .map(|lin| {
                    let bias = format!("db:{}", lin.weight);
                    Ok(WeightGrad {
                        name: lin.weight.clone(),
                        norm: wnorm(&format!("dW:{}", lin.weight))?,
                        bias: if layout.has(&bias) {
                            Some(wnorm(&bias)?)
                        } else {
                            None
                        },
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push(BlockGrads {
                block: l,
                stream_in: norm(&format!("{l}.din"))?,
                stream_mid: norm(&format!("{l}.dmid"))?,
                weights,
            });
        }
        // A norm parameter's gradient, where the pass measured it.
        let param = |prefix: &str, name: &str| -> Result<Option<ParamGrad>> {
            let rec = format!("{prefix}{name}");
            if !layout.has(&rec) {
                return Ok(None);
            }
            Ok(Some(ParamGrad {
                name: name.to_string(),
                norm: wnorm(&rec)?,
            }))
        };
        let (mut norm_gains, mut norm_biases) = (Vec::new(), Vec::new());
        for (w, b) in names.all_norms() {
            norm_gains.extend(param("dg:", w)?);
            if let Some(b) = b {
                norm_biases.extend(param("db:", b)?);
            }
        }
        let embeddings = std::iter::once(&names.tok)
            .chain(names.pos.as_ref())
            .chain(names.types.as_ref())
            .map(|t| param("dE:", t))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let head = if layout.has("dW:head") {
            Some(wnorm("dW:head")?)
        } else {
            None
        };
        let head_bias = match &names.head_bias {
            Some(hb) => param("db:", hb)?.map(|p| p.norm),
            None => None,
        };
        let transform = match &names.transform {
            Some(t) => Some(WeightGrad {
                name: t.weight.clone(),
                norm: wnorm(&format!("dW:{}", t.weight))?,
                bias: param("db:", &t.weight)?.map(|p| p.norm),
            }),
            None => None,
        };
        let cross_rec = cross_rec(&names.tok);
        let tied = match (layout.has(&cross_rec), head) {
            (true, Some(head)) => {
                let t = stats(&cross_rec)?;
                let cross = t.mean * t.count as f64;
                let lookup = wnorm(&format!("dE:{}", names.tok))?;
                Some(TiedGrad {
                    name: names.tok.clone(),
                    lookup,
                    head,
                    cross,
                    norm: (lookup * lookup + head * head + 2.0 * cross)
                        .max(0.0)
                        .sqrt(),
                })
            }
            _ => None,
        };
        Some(GradStats {
            embeddings,
            tied,
            norm_gains,
            norm_biases,
            stream_out: norm("d.final")?,
            head,
            head_bias,
            transform,
            blocks,
        })
    } else {
        None
    };
    Ok(TfmStats {
        post_norm: cfg.post_norm,
        grads,
        embed: stats("embed")?,
        blocks,
        final_norm_in: norm_input(2 * cfg.layers),
        final_norm: stats("ln_f")?,
        logits: if cfg.head {
            Some(stats("logits")?)
        } else {
            None
        },
        loss,
        loss_std,
        loss_rows,
    })
}

/// The first raw word where two passes differ, by part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Words compared.
    pub words: u64,
    /// Words that differ.
    pub differing: u64,
    /// The first difference: (part, word index, device word, CPU word).
    pub first: Option<(String, u64, u32, u32)>,
}

impl Comparison {
    /// Whether every word is equal.
    pub fn identical(&self) -> bool {
        self.differing == 0
    }
}

/// Compares two passes' raw results word for word.
pub fn compare(dev: &RawTfm, cpu: &RawTfm) -> Comparison {
    let mut c = Comparison {
        words: 0,
        differing: 0,
        first: None,
    };
    for (part, a, b) in [
        ("statistics records", &dev.recs, &cpu.recs),
        ("attention sums", &dev.att, &cpu.att),
        ("loss terms", &dev.loss, &cpu.loss),
        ("norm row variances", &dev.norm_vars, &cpu.norm_vars),
    ] {
        c.words += a.len().max(b.len()) as u64;
        if a.len() != b.len() {
            c.differing += a.len().abs_diff(b.len()) as u64;
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x != y {
                c.differing += 1;
                if c.first.is_none() {
                    c.first = Some((part.to_string(), i as u64, *x, *y));
                }
            }
        }
    }
    c
}
