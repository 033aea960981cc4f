//! Real architectures' tensor layouts (names and shapes as their published
//! checkpoints have them), each with the rules a user would expect:
//! fan_in scaling for weights, ones for norm weights, zeros for biases.
//!
//! - `mlp:WIDTHxDEPTH`: `layers.{i}.weight` `[W, W]` (He, for ReLU) and
//!   `layers.{i}.bias` (zeros).
//! - `gpt2`: GPT-2 small (124,439,808 parameters), Hugging Face's `gpt2`
//!   names; the `Conv1D` weights are stored `[in, out]`. Embeddings
//!   N(0, 0.02) as GPT-2 does, linear layers LeCun (fan_in), layer-norm
//!   weights ones and biases zeros.
//! - `llama-7b`: the Llama 7B layout (hidden 4096, intermediate 11008, 32
//!   layers, vocabulary 32000; 6,738,415,616 parameters), Hugging Face's
//!   `LlamaForCausalLM` names; embeddings and the output head N(0, 0.02),
//!   projections LeCun (fan_in), RMSNorm weights ones. Column-parallel
//!   projections (q, k, v, gate, up) split by rows, row-parallel ones (o,
//!   down) by columns, as Megatron-LM cuts them.

use super::spec::{Layout, ModelSpec, Rule, Split, TensorSpec};
use crate::error::{Error, Result};
use crate::init::scheme::{InitSpec, Scheme, Shape};

/// Preset names for help texts and errors.
pub const NAMES: &[&str] = &["mlp:WIDTHxDEPTH", "gpt2", "llama-7b"];

/// The preset called `name`, with `seed`.
pub fn preset(name: &str, seed: u64) -> Result<ModelSpec> {
    let lower = name.trim().to_ascii_lowercase();
    let tensors = match lower.as_str() {
        "gpt2" | "gpt2-small" => gpt2(),
        "llama-7b" | "llama7b" | "llama2-7b" => llama_7b(),
        other => match other.strip_prefix("mlp:") {
            Some(dims) => mlp(name, dims)?,
            None => return Err(Error::choice("preset", name, NAMES)),
        },
    };
    let spec = ModelSpec { seed, tensors };
    spec.validate()?;
    Ok(spec)
}

/// The comment `--print-spec` puts above a spec; `source` says where the
/// spec came from (`preset gpt2`, `spec model.toml`).
pub fn describe(source: &str) -> String {
    format!(
        "deepinit model spec, from {source}.\n\
         Edit it and pass it back with --spec FILE. Keys: init (he, lecun, xavier,\n\
         naive:STD, zeros, ones, constant with value), mode, gain, multiplier, dist,\n\
         groups, layout (out_in | in_out), split (rows | cols)."
    )
}

fn draw(
    name: String,
    dims: &[u64],
    scheme: Scheme,
    layout: Layout,
    split: Option<Split>,
) -> TensorSpec {
    let shape = Shape(dims.to_vec());
    TensorSpec {
        name,
        shape: shape.clone(),
        rule: Rule::Draw {
            init: InitSpec::new(scheme, shape),
            layout,
        },
        split,
    }
}

fn constant(name: String, dims: &[u64], v: f32) -> TensorSpec {
    TensorSpec {
        name,
        shape: Shape(dims.to_vec()),
        rule: Rule::Const(v),
        split: None,
    }
}

const EMBED: Scheme = Scheme::Naive { std: 0.02 };

fn mlp(name: &str, dims: &str) -> Result<Vec<TensorSpec>> {
    let bad = || {
        Error::bad(
            "preset",
            name,
            "expected mlp:WIDTHxDEPTH with both at least 1",
        )
    };
    let (w, d) = dims.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, d): (u64, u64) = (w.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if w == 0 || d == 0 || d > 100_000 {
        return Err(bad());
    }
    Ok((0..d)
        .flat_map(|i| {
            [
                draw(
                    format!("layers.{i}.weight"),
                    &[w, w],
                    Scheme::HE,
                    Layout::OutIn,
                    Some(Split::Rows),
                ),
                constant(format!("layers.{i}.bias"), &[w], 0.0),
            ]
        })
        .collect())
}

fn gpt2() -> Vec<TensorSpec> {
    let (vocab, ctx, e, layers) = (50257u64, 1024u64, 768u64, 12);
    let lin = |n: String, a: u64, b: u64| draw(n, &[a, b], Scheme::LECUN, Layout::InOut, None);
    let mut t = vec![
        draw("wte.weight".into(), &[vocab, e], EMBED, Layout::OutIn, None),
        draw("wpe.weight".into(), &[ctx, e], EMBED, Layout::OutIn, None),
    ];
    for i in 0..layers {
        let p = |s: &str| format!("h.{i}.{s}");
        t.extend([
            constant(p("ln_1.weight"), &[e], 1.0),
            constant(p("ln_1.bias"), &[e], 0.0),
            lin(p("attn.c_attn.weight"), e, 3 * e),
            constant(p("attn.c_attn.bias"), &[3 * e], 0.0),
            lin(p("attn.c_proj.weight"), e, e),
            constant(p("attn.c_proj.bias"), &[e], 0.0),
            constant(p("ln_2.weight"), &[e], 1.0),
            constant(p("ln_2.bias"), &[e], 0.0),
            lin(p("mlp.c_fc.weight"), e, 4 * e),
            constant(p("mlp.c_fc.bias"), &[4 * e], 0.0),
            lin(p("mlp.c_proj.weight"), 4 * e, e),
            constant(p("mlp.c_proj.bias"), &[e], 0.0),
        ]);
    }
    t.push(constant("ln_f.weight".into(), &[e], 1.0));
    t.push(constant("ln_f.bias".into(), &[e], 0.0));
    t
}

fn llama_7b() -> Vec<TensorSpec> {
    let (vocab, h, ff, layers) = (32000u64, 4096u64, 11008u64, 32);
    let col = |n: String, out: u64, inp: u64| {
        draw(
            n,
            &[out, inp],
            Scheme::LECUN,
            Layout::OutIn,
            Some(Split::Rows),
        )
    };
    let row = |n: String, out: u64, inp: u64| {
        draw(
            n,
            &[out, inp],
            Scheme::LECUN,
            Layout::OutIn,
            Some(Split::Cols),
        )
    };
    let mut t = vec![draw(
        "model.embed_tokens.weight".into(),
        &[vocab, h],
        EMBED,
        Layout::OutIn,
        Some(Split::Rows),
    )];
    for i in 0..layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        t.extend([
            col(p("self_attn.q_proj.weight"), h, h),
            col(p("self_attn.k_proj.weight"), h, h),
            col(p("self_attn.v_proj.weight"), h, h),
            row(p("self_attn.o_proj.weight"), h, h),
            col(p("mlp.gate_proj.weight"), ff, h),
            col(p("mlp.up_proj.weight"), ff, h),
            row(p("mlp.down_proj.weight"), h, ff),
            constant(p("input_layernorm.weight"), &[h], 1.0),
            constant(p("post_attention_layernorm.weight"), &[h], 1.0),
        ]);
    }
    t.push(constant("model.norm.weight".into(), &[h], 1.0));
    t.push(draw(
        "lm_head.weight".into(),
        &[vocab, h],
        EMBED,
        Layout::OutIn,
        Some(Split::Rows),
    ));
    t
}
