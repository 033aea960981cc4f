//! The transformer pass on the device against the CPU mirror of its
//! arithmetic (every statistics record, attention sum and loss term equal
//! bit for bit), for tiny configs of each family, and its refusals.

mod common;

use deepinit::backend::Gpu;
use deepinit::model::hf::{self, InitRule};
use deepinit::tfm::{self, mirror, Model, PassLayout, Tokens};

fn tiny(json: &str) -> hf::HfModel {
    hf::parse(json, "test config").expect("config parses")
}

/// Tiny GPT-2 (LayerNorm, GELU, learned positions, tied head).
pub const GPT2: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
  "n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 40, "vocab_size": 97}"#;
/// Tiny GPT-2 with GELU's erf form (`activation_function: gelu`).
const GPT2_ERF: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
  "n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 40, "vocab_size": 97,
  "activation_function": "gelu"}"#;
/// Tiny BERT (post-norm encoder, bidirectional attention, token types, the
/// masked-LM head with its transform and decoder bias; padding token 0).
const BERT: &str = r#"{"model_type": "bert", "architectures": ["BertForMaskedLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "intermediate_size": 96, "vocab_size": 89, "max_position_embeddings": 40,
  "type_vocab_size": 2}"#;
/// Tiny Llama (RMSNorm, SwiGLU, rotary, grouped-query attention, untied head,
/// padding token 0).
pub const LLAMA: &str = r#"{"model_type": "llama", "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101,
  "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "pad_token_id": 0}"#;
/// Tiny Qwen2 (q/k/v biases, tied head, padding token 0: the tied table's
/// cross term leaves the padding rows out of the lookup's share).
pub const QWEN2: &str = r#"{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 4, "intermediate_size": 80, "vocab_size": 113,
  "tie_word_embeddings": true, "rope_theta": 1000000.0, "pad_token_id": 0}"#;
/// Tiny Mistral (sliding window shorter than the sequence).
pub const MISTRAL: &str = r#"{"model_type": "mistral", "architectures": ["MistralForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
  "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 90,
  "sliding_window": 5}"#;

/// Tiny GPT-2 without its head (`GPT2Model`).
const GPT2_BASE: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2Model"],
  "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 40, "vocab_size": 97}"#;

/// Tiny GPT-2 with a real-sized vocabulary.
const BIG_VOCAB: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
  "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 16, "vocab_size": 70000}"#;

#[test]
fn device_transformer_passes_equal_the_cpu_mirror_bit_for_bit() {
    let Some(ctx) = common::gpu("device_transformer_passes_equal_the_cpu_mirror_bit_for_bit")
    else {
        return;
    };
    let class = ctx.float_model().expect("probe").class();
    let Some(class) = class else {
        assert!(std::env::var("CI").is_err(), "CI's device must conform");
        return;
    };
    let gpu = Gpu::new(ctx).expect("gpu");
    for (name, cfg, init, batch, seq) in [
        ("gpt2", GPT2, InitRule::Reference, 2, 9),
        ("gpt2 naive", GPT2, InitRule::Naive(1.0), 3, 7),
        // GELU's erf form (transformers' "gelu").
        ("gpt2 erf", GPT2_ERF, InitRule::Reference, 2, 9),
        // Post-norm, bidirectional, token types, the masked-LM head.
        ("bert", BERT, InitRule::Reference, 3, 11),
        // 90 rows: chunked, each head chunk (8 vocabulary rows) is cut into
        // several column blocks of the head's gradient.
        ("gpt2 long", GPT2, InitRule::Reference, 3, 30),
        // Short sequences share attention tiles (three of 40 tokens, then
        // the fourth alone).
        ("gpt2 tiles", GPT2, InitRule::Reference, 4, 40),
        ("llama", LLAMA, InitRule::Reference, 2, 11),
        ("qwen2", QWEN2, InitRule::He { depth: true }, 1, 13),
        ("mistral", MISTRAL, InitRule::Reference, 2, 12),
        // A vocabulary of 70000: the loss sums and the head's products run
        // over 70000 values (in pieces of K_PIECE), as a real vocabulary does.
        ("big vocabulary", BIG_VOCAB, InitRule::Reference, 2, 4),
        // No head: the backward pass starts from a random direction.
        ("gpt2 base", GPT2_BASE, InitRule::Reference, 2, 5),
        // A head, and the backward pass from a random direction all the same.
        ("gpt2 random", GPT2, InitRule::Reference, 2, 5),
        // A sequence longer than K_PIECE: attention's products over the
        // keys (P V, dS K, dS^T Q, P^T dO) run in two pieces, and a tile
        // holds fewer heads than the model has.
        ("llama long", LLAMA, InitRule::Reference, 1, 2100),
    ] {
        let mut m = Model::new(&tiny(cfg), init, 7).expect("model");
        if name == "gpt2 random" {
            m.direction = tfm::Direction::Random;
        }
        let from_loss = m.cfg.head && m.direction == tfm::Direction::Loss;
        let tokens = Tokens::random(&m.cfg, batch, seq, 7).expect("tokens");
        let (dev, layout) = tfm::device::run(&gpu, &m, &tokens, true, None).expect("device pass");
        let cpu = mirror::run_in(class, &m, &tokens, &layout).expect("mirror");
        let c = tfm::compare(&dev, &cpu);
        assert!(c.identical(), "{name}: {c:?}");
        let s = tfm::fold(&m.cfg, &tokens, &layout, &dev).expect("fold");
        assert_eq!(
            s.loss.is_some_and(f64::is_finite),
            m.cfg.head,
            "{name}: {s:?}"
        );
        let g = s.grads.as_ref().expect("gradients");
        assert!(g.blocks.iter().all(|b| b.stream_in > 0.0), "{name}: {g:?}");
        // Every parameter's gradient norm was written (a record neither side
        // wrote would read 0 on both): tables, every norm's gain, and
        // LayerNorm's biases (RMSNorm has none).
        let positive = |p: &[tfm::ParamGrad]| !p.is_empty() && p.iter().all(|p| p.norm > 0.0);
        assert!(positive(&g.embeddings), "{name}: {g:?}");
        // BERT: the embeddings' norm too, the token-type table, the
        // masked-LM head's transform and the decoder's bias.
        let bert = m.cfg.post_norm;
        let norms = 2 * m.cfg.layers + 1 + u64::from(bert);
        assert_eq!(g.norm_gains.len() as u64, norms, "{name}");
        let tables = 1 + usize::from(m.names.pos.is_some()) + usize::from(bert);
        assert_eq!(g.embeddings.len(), tables, "{name}: {g:?}");
        assert_eq!(
            g.transform
                .as_ref()
                .is_some_and(|t| t.norm > 0.0 && t.bias.is_some_and(|b| b > 0.0)),
            bert,
            "{name}: {g:?}"
        );
        assert_eq!(g.head_bias.is_some_and(|b| b > 0.0), bert, "{name}");
        assert!(positive(&g.norm_gains), "{name}: {g:?}");
        let layer_norm = m.cfg.norm == tfm::NormKind::Layer;
        assert_eq!(positive(&g.norm_biases), layer_norm, "{name}: {g:?}");
        assert_eq!(g.head.is_some(), from_loss, "{name}");
        // The tied tables' whole gradient: GPT-2's wte, the tied Qwen2's,
        // BERT's word embeddings.
        let tied = name.starts_with("gpt2") || name == "qwen2" || name == "big vocabulary" || bert;
        assert_eq!(g.tied.is_some(), tied && from_loss, "{name}");
        // Every record covered something: the stream's count is rows x width.
        assert_eq!(s.embed.count, tokens.rows() * m.cfg.hidden, "{name}");
        // Every norm's row variances were written (an unwritten word reads 0
        // on both sides); only a padding token's zero embedding row enters
        // the first norm with variance 0.
        // (BERT's first norm is after the position and type embeddings.)
        let padded = !bert && m.cfg.pad.is_some_and(|p| tokens.ids.contains(&(p as u32)));
        let mut inputs = s.blocks.iter().flat_map(|b| [&b.norm_in, &b.norm2_in]);
        assert!(
            inputs.all(|v| v.nonfinite == 0 && v.max > 0.0),
            "{name}: {s:?}"
        );
        let mut later = (s.blocks.iter().skip(1).map(|b| &b.norm_in))
            .chain(s.blocks.iter().map(|b| &b.norm2_in));
        assert!(
            later.all(|v| v.min > 0.0) && s.final_norm_in.min > 0.0,
            "{name}"
        );
        assert_eq!(s.blocks[0].norm_in.min > 0.0, !padded, "{name}");
        if name == "big vocabulary" || name == "llama long" {
            continue;
        }
        // Tensors cut into 2 KiB chunks: every weight matrix, the
        // embedding and the head in several pieces, the logits in row blocks
        // (so products over a chunked dimension add their pieces), and the
        // mirror follows the same cuts. This run also recomputes each
        // block's activations in the backward pass, where the run above
        // kept them from the forward pass (BERT's post-norm blocks
        // recompute in both), and submits attention's work tile by tile.
        let (dev, layout) =
            tfm::device::run_chunked(&gpu, &m, &tokens, true, None, Some(2048)).expect("chunked");
        assert!(layout.logit_rows < tokens.rows(), "{name}");
        assert!(
            layout.chunks(m.cfg.hidden, m.cfg.hidden).len() > 1,
            "{name}"
        );
        let cpu = mirror::run_in(class, &m, &tokens, &layout).expect("mirror");
        let c = tfm::compare(&dev, &cpu);
        assert!(c.identical(), "{name}, chunked: {c:?}");
        // With the logits in row blocks the head's gradient is taken by
        // vocabulary column blocks: the same sum in another order, so equal
        // to the whole-logits value up to f32 rounding (relative error of a
        // sum of rows^2 + vocab terms in f32: far below 1e-4 at these sizes).
        if from_loss {
            let chunked = tfm::fold(&m.cfg, &tokens, &layout, &dev).expect("fold");
            let (a, b) = (
                g.head.expect("head gradient, whole logits"),
                chunked
                    .grads
                    .and_then(|g| g.head)
                    .expect("head gradient, row blocks"),
            );
            assert!((a - b).abs() <= 1e-4 * a, "{name}: head |dW| {a} vs {b}");
        }
    }
}

/// Python with numpy and safetensors, or a loud skip (CI must have them).
fn python(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide python3 with numpy and safetensors (.ci/run installs them)"
        );
        eprintln!("SKIPPED {test}: no python3 with numpy and safetensors");
    }
    ok
}

/// Tiny Llama with Llama 3's rotary scaling and a wider head.
const LLAMA3: &str = r#"{"model_type": "llama", "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
  "num_key_value_heads": 1, "head_dim": 48, "intermediate_size": 64, "vocab_size": 77,
  "tie_word_embeddings": true, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8, "rope_type": "llama3"}}"#;

#[test]
fn an_independent_numpy_forward_pass_agrees_with_every_statistic() {
    if !python("an_independent_numpy_forward_pass_agrees_with_every_statistic") {
        return;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transformer_numpy.py");
    let dir = tempfile::tempdir().expect("temp dir");
    // The device where there is one (the CPU backend otherwise): either way
    // the report's statistics are judged by the numpy pass.
    for (name, cfg, vocab, init) in [
        ("gpt2", GPT2, 97, "reference"),
        ("gpt2-he", GPT2, 97, "he-unscaled"),
        ("gpt2-erf", GPT2_ERF, 97, "reference"),
        ("bert", BERT, 89, "reference"),
        ("llama", LLAMA, 101, "reference"),
        ("llama3", LLAMA3, 77, "lecun"),
        ("qwen2", QWEN2, 113, "reference"),
        ("mistral", MISTRAL, 90, "reference"),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).expect("dir");
        let (c, t, ck, r) = (
            d.join("config.json"),
            d.join("tokens.npy"),
            d.join("ck"),
            d.join("report.json"),
        );
        std::fs::write(&c, cfg).expect("config");
        let py = |args: &[&std::ffi::OsStr]| {
            let o = std::process::Command::new("python3")
                .arg(&script)
                .args(args)
                .output()
                .expect("python3 runs");
            assert!(
                o.status.success(),
                "{name}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let s = |x: &str| std::ffi::OsString::from(x);
        py(&[
            s("tokens").as_os_str(),
            t.as_os_str(),
            s("3").as_os_str(),
            s("10").as_os_str(),
            s(&vocab.to_string()).as_os_str(),
            s("5").as_os_str(),
        ]);
        let path = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
        let o = common::run(&[
            "model",
            "--config",
            &path(&c),
            "--init",
            init,
            "--seed",
            "7",
            "--dtype",
            "f32",
            "--out",
            &path(&ck),
        ]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        let o = common::run(&[
            "forward",
            "--config",
            &path(&c),
            "--init",
            init,
            "--seed",
            "7",
            "--tokens",
            &path(&t),
            "--json",
            &path(&r),
        ]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        py(&[
            s("check").as_os_str(),
            c.as_os_str(),
            ck.as_os_str(),
            t.as_os_str(),
            r.as_os_str(),
        ]);
    }
}

#[test]
fn a_one_word_difference_is_caught_and_located() {
    let m = Model::new(&tiny(GPT2), InitRule::Reference, 3).expect("model");
    let tokens = Tokens::random(&m.cfg, 2, 5, 3).expect("tokens");
    let layout = PassLayout::new(&m, &tokens, tokens.rows(), u64::MAX / 8, true);
    let a = mirror::run::<deepinit::act::arith::Fused>(&m, &tokens, &layout).expect("mirror");
    let mut b = a.clone();
    assert!(tfm::compare(&a, &b).identical());
    b.att[5] ^= 1;
    let c = tfm::compare(&a, &b);
    assert_eq!(c.differing, 1);
    assert_eq!(
        c.first.as_ref().map(|f| (f.0.as_str(), f.1)),
        Some(("attention sums", 5))
    );
    // The norms' row variances are compared too.
    let mut b = a.clone();
    b.norm_vars[7] ^= 1;
    let c = tfm::compare(&a, &b);
    assert_eq!(c.differing, 1);
    assert_eq!(
        c.first.as_ref().map(|f| (f.0.as_str(), f.1)),
        Some(("norm row variances", 7))
    );
}

/// GPT-2 at width 256 (6 blocks): big enough for the mean-field bands to be
/// sharp, small enough for the CPU backend.
const GPT2_256: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
  "n_embd": 256, "n_layer": 6, "n_head": 4, "n_positions": 64, "vocab_size": 512}"#;

#[test]
fn gpt2_follows_the_theory_with_and_without_its_residual_scaling() {
    // Fixed seeds; each block's MLP band is 6 sigma (false alarm < 2e-9 a
    // block) and the loss band 6 sigma plus the vocabulary term, so the 24
    // checks below fail by chance with probability under 1e-7.
    let hf = tiny(GPT2_256);
    let backend = deepinit::backend::Backend::Cpu;
    let mut last = Vec::new();
    for init in [InitRule::Reference, InitRule::Lecun { depth: false }] {
        let m = Model::new(&hf, init, 11).expect("model");
        let tokens = Tokens::random(&m.cfg, 4, 32, 11).expect("tokens");
        let r = tfm::run::run(&backend, &m, "test", &tokens, true, true, None).expect("pass");
        assert_eq!(r.mlp_checks.len(), 6);
        for c in &r.mlp_checks {
            assert!(c.pass, "{}: {c:?}", init.name());
        }
        let l = r.loss_check.as_ref().expect("loss check");
        assert!(l.applies && l.pass, "{}: {l:?}", init.name());
        // Every norm's output, each block's two and the final one.
        assert_eq!(r.norm_checks.len(), 13);
        for c in &r.norm_checks {
            assert!(c.pass, "{}: {c:?}", init.name());
        }
        // The recursion's terms add up by construction; the covariance of the
        // MLP branch with the stream is small at init (under a quarter of
        // the branch's own variance here).
        for t in r.recursion.iter().filter(|t| t.branch == "mlp") {
            assert!(t.cov2.abs() < 0.5 * t.branch_var, "{}: {t:?}", init.name());
        }
        last.push(r.stats.blocks.last().expect("blocks").out.var);
    }
    // GPT-2's own init scales the residual branches by 1/sqrt(2 n_layer):
    // its stream ends an order of magnitude quieter than LeCun's unscaled.
    assert!(last[0] * 10.0 < last[1], "{last:?}");
}

#[test]
fn gelu_configs_run_the_erf_form_and_the_tanh_form_as_named() {
    // transformers' "gelu" is erf's GELU, "gelu_new" the tanh form: the
    // same weights and tokens give the same stream into the first MLP and
    // a different MLP branch (the forms differ by up to 5e-4).
    let backend = deepinit::backend::Backend::Cpu;
    let mut stats = Vec::new();
    for (cfg, form) in [
        (GPT2, deepinit::Activation::Gelu),
        (GPT2_ERF, deepinit::Activation::GeluErf),
    ] {
        let m = Model::new(&tiny(cfg), InitRule::Reference, 3).expect("model");
        assert_eq!(m.cfg.gelu, form);
        let tokens = Tokens::random(&m.cfg, 2, 9, 3).expect("tokens");
        let r = tfm::run::run(&backend, &m, "test", &tokens, true, false, None).expect("pass");
        assert!(r.pass(), "{form:?}");
        stats.push(r.stats.blocks[0].clone());
    }
    assert_eq!(stats[0].norm2, stats[1].norm2);
    assert_ne!(stats[0].mlp.mean_sq, stats[1].mlp.mean_sq);
}

#[test]
fn norm_outputs_follow_their_rows_variances_and_epsilon() {
    // Every weight of std 5e-4 (the embeddings' sum of variance 5e-7 against
    // epsilon 1e-5): no norm brings the stream to unit variance, and the
    // first one's output mean square, mean v / (v + eps), is about 0.05.
    let cfg = GPT2.replace(
        "\"vocab_size\": 97",
        "\"vocab_size\": 97, \"initializer_range\": 5e-4",
    );
    let m = Model::new(&tiny(&cfg), InitRule::Reference, 5).expect("model");
    let tokens = Tokens::random(&m.cfg, 2, 16, 5).expect("tokens");
    let backend = deepinit::backend::Backend::Cpu;
    let r = tfm::run::run(&backend, &m, "test", &tokens, true, false, None).expect("pass");
    assert_eq!(r.norm_checks.len() as u64, 2 * m.cfg.layers + 1);
    for c in &r.norm_checks {
        assert!(c.pass, "{c:?}");
    }
    let c = &r.norm_checks[0];
    assert_eq!(c.norm, "1.ln1");
    assert!(c.measured < 0.2, "{c:?}");
    // The band tells this epsilon from twice or half of it: for any rows with
    // variances in [min, max], v / (v + 2 eps) is at most its value at max,
    // v / (v + eps/2) at least its value at min, and both lie outside it.
    let eps = f64::from(m.cfg.eps);
    let f = |v: f64, e: f64| v / (v + e);
    let (lo, hi) = c.row_var;
    assert!(f(hi, 2.0 * eps) < c.measured - c.band, "{c:?}");
    assert!(f(lo, 0.5 * eps) > c.measured + c.band, "{c:?}");
}

#[test]
fn bad_configs_and_batches_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf8").to_string()
    };
    let gpt2 = |extra: &str| {
        format!(
            r#"{{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64,
            "n_layer": 2, "n_head": 4, "n_positions": 8, "vocab_size": 50{extra}}}"#
        )
    };
    let llama = |extra: &str| {
        format!(
            r#"{{"model_type": "llama", "architectures": ["LlamaForCausalLM"],
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "vocab_size": 50{extra}}}"#
        )
    };
    let bert = |extra: &str| {
        format!(
            r#"{{"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 50{extra}}}"#
        )
    };
    let json = dir.path().join("report.json");
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            write("act.json", &gpt2(r#", "activation_function": "relu""#)),
            vec![],
            "activation",
        ),
        (
            write("heads.json", &gpt2(r#", "n_head": 5"#)),
            vec![],
            "divide",
        ),
        (
            write("pos.json", &gpt2("")),
            vec!["--seq", "9"],
            "position table",
        ),
        (
            write("bert.json", &bert(r#", "architectures": ["BertModel"]"#)),
            vec![],
            "BertModel (no masked-LM head)",
        ),
        (
            write(
                "bert-rel.json",
                &bert(r#", "position_embedding_type": "relative_key""#),
            ),
            vec![],
            "position_embedding_type",
        ),
        (
            write(
                "rope.json",
                &llama(r#", "rope_scaling": {"rope_type": "yarn", "factor": 2.0}"#),
            ),
            vec![],
            "rope type",
        ),
        (
            write("gqa.json", &llama(r#", "num_key_value_heads": 3"#)),
            vec![],
            "num_key_value_heads",
        ),
        (
            write("odd.json", &llama(r#", "head_dim": 15"#)),
            vec![],
            "even head_dim",
        ),
        (
            write("ok.json", &gpt2("")),
            vec!["--seq", "0"],
            "'--seq <SEQ>': must be an integer from 2 to 4096",
        ),
        (
            write("ok2.json", &gpt2("")),
            vec!["--batch", "0"],
            "'--batch <BATCH>': must be an integer from 1",
        ),
        (
            write("ok3.json", &llama("")),
            vec!["--seq", "4097"],
            "'--seq <SEQ>': must be an integer from 2 to 4096",
        ),
        (
            write(
                "qwin.json",
                &llama(r#", "sliding_window": 4, "use_sliding_window": true, "num_key_value_heads": 4"#)
                    .replace("\"llama\"", "\"qwen2\"")
                    .replace("LlamaForCausalLM", "Qwen2ForCausalLM"),
            ),
            vec![],
            "use_sliding_window",
        ),
        (
            write("seq1.json", &gpt2("")),
            vec!["--seq", "1"],
            "'--seq <SEQ>': must be an integer from 2",
        ),
    ];
    for (cfg, extra, want) in &cases {
        let mut args = vec![
            "forward",
            "--config",
            cfg.as_str(),
            "--json",
            json.to_str().expect("utf8"),
        ];
        args.extend(extra.iter().copied());
        let o = common::run(&args);
        let err = common::stderr(&o);
        assert!(
            !o.status.success() && o.status.code() != Some(101),
            "{cfg}: {err}"
        );
        assert!(err.contains(want), "{cfg}: wanted '{want}' in: {err}");
        assert!(!json.exists(), "{cfg}: a report was written");
    }
    let o = common::run(&["forward", "--preset", "mlp:64x2"]);
    assert!(
        common::stderr(&o).contains("plain network"),
        "{}",
        common::stderr(&o)
    );
    let o = common::run(&["forward", "--tokens", "t.npy"]);
    assert!(
        common::stderr(&o).contains("--tokens feeds a transformer"),
        "{}",
        common::stderr(&o)
    );
    // Options of one pass are refused with the other, not ignored.
    for (args, want) in [
        (&["forward", "--seq", "16"][..], "--preset"),
        (&["forward", "--direction", "random"][..], "--preset"),
        (&["forward", "--no-backward"][..], "--preset"),
        (
            &["forward", "--preset", "gpt2", "--act", "tanh"][..],
            "'--act <ACT>'",
        ),
        (
            &["forward", "--preset", "gpt2", "--depth", "3"][..],
            "'--depth <DEPTH>'",
        ),
        (
            &["forward", "--preset", "gpt2", "--scheme", "he"][..],
            "'--scheme <SCHEME>'",
        ),
    ] {
        let o = common::run(args);
        let err = common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: wanted '{want}' in: {err}");
    }
}

#[test]
fn demo_model_compares_the_inits_and_writes_the_picture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, GPT2).expect("config");
    let out = dir.path().join("out");
    let o = common::run(&[
        "demo",
        "--model",
        cfg.to_str().expect("utf8"),
        "--out-dir",
        out.to_str().expect("utf8"),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", common::stderr(&o));
    for init in deepinit::app::transformer::INITS {
        assert!(text.contains(init), "{init} missing: {text}");
    }
    for f in deepinit::app::transformer::OUTPUT_FILES {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let reports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("transformer.json")).expect("json"))
            .expect("parses");
    assert_eq!(reports.as_array().map(Vec::len), Some(5));
    let png = std::fs::read(out.join("transformer.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A plain network preset is the plain demo's.
    let o = common::run(&[
        "demo",
        "--model",
        "mlp:64x2",
        "--out-dir",
        out.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("plain demo"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn the_backward_pass_reports_every_weight_matrix_and_can_be_left_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, LLAMA).expect("config");
    let report = |extra: &[&str]| -> serde_json::Value {
        let json = dir.path().join("r.json");
        let mut args = vec![
            "forward",
            "--config",
            cfg.to_str().expect("utf8"),
            "--seq",
            "6",
            "--force",
            "--json",
            json.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let o = common::run(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parses")
    };
    let r = report(&[]);
    let g = &r["stats"]["grads"];
    let blocks = g["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 2);
    for b in blocks {
        // q, k, v, o, gate, up, down: every weight matrix, each gradient
        // finite and non-zero.
        let w = b["weights"].as_array().expect("weights");
        assert_eq!(w.len(), 7, "{b}");
        for x in w
            .iter()
            .map(|w| &w["norm"])
            .chain([&b["stream_in"], &b["stream_mid"]])
        {
            let v = x.as_f64().expect("number");
            assert!(v.is_finite() && v > 0.0, "{b}");
        }
    }
    assert!(g["head"].as_f64().is_some_and(|h| h > 0.0), "{g}");
    assert_eq!(r["direction"], "loss");
    // From a random direction at the final norm's output: every block's
    // gradients, but not the head's; the forward statistics and the loss
    // are the same, the gradients are not.
    let d = report(&["--direction", "random"]);
    let gd = &d["stats"]["grads"];
    assert_eq!(d["direction"], "random");
    assert!(gd["head"].is_null(), "{gd}");
    assert_eq!(d["stats"]["loss"], r["stats"]["loss"]);
    assert_eq!(d["stats"]["blocks"], r["stats"]["blocks"]);
    let din = |g: &serde_json::Value| g["blocks"][0]["stream_in"].as_f64().expect("number");
    assert!(din(gd) > 0.0 && din(gd) != din(g), "{gd}");
    let r = report(&["--no-backward"]);
    assert!(r["stats"]["grads"].is_null());
    assert!(r["direction"].is_null());
}

#[test]
fn a_checkpoint_runs_on_its_own_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |x: &std::path::Path| x.to_str().expect("utf8").to_string();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, QWEN2).expect("config");
    let ck = dir.path().join("ck");
    let o = common::run(&[
        "model",
        "--config",
        &p(&cfg),
        "--seed",
        "9",
        "--dtype",
        "f32",
        "--out",
        &p(&ck),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let stats = |args: &[&str], json: &str| -> serde_json::Value {
        let json = dir.path().join(json);
        let mut a = vec![
            "forward",
            "--seq",
            "7",
            "--seed",
            "9",
            "--json",
            json.to_str().expect("utf8"),
        ];
        a.extend_from_slice(args);
        let o = common::run(&a);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parses");
        v["stats"].clone()
    };
    // The f32 checkpoint holds exactly the values the config's pass draws:
    // every statistic equal.
    let from_file = stats(&["--model", &p(&ck)], "a.json");
    let drawn = stats(&["--config", &p(&cfg)], "b.json");
    assert_eq!(from_file, drawn);
    // A checkpoint transformers saved itself.
    let saved = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf/gpt2-saved");
    let s = stats(&["--model", &p(&saved)], "c.json");
    assert!(s["loss"].as_f64().is_some_and(f64::is_finite));
    // A config that asks for a block the files do not hold, and a file
    // instead of a directory, are refused with the reason.
    std::fs::write(
        ck.join("config.json"),
        QWEN2.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .expect("config");
    let o = common::run(&["forward", "--model", &p(&ck)]);
    assert!(
        common::stderr(&o).contains("has no tensor 'model.layers.2."),
        "{}",
        common::stderr(&o)
    );
    let o = common::run(&["forward", "--model", &p(&cfg)]);
    assert!(
        common::stderr(&o).contains("checkpoint directory"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn tokens_built_by_hand_are_checked_before_a_pass() {
    let m = Model::new(&tiny(GPT2), InitRule::Reference, 1).expect("model");
    let layout = |t: &Tokens| PassLayout::new(&m, t, t.rows(), u64::MAX / 8, true);
    for bad in [
        Tokens {
            batch: 1,
            seq: 3,
            ids: vec![0, 1, 97],
        },
        Tokens {
            batch: 1,
            seq: 3,
            ids: vec![0, 1],
        },
        Tokens {
            batch: 1,
            seq: 1,
            ids: vec![0],
        },
    ] {
        let e = mirror::run::<deepinit::act::arith::Fused>(&m, &bad, &layout(&bad));
        assert!(e.is_err(), "{bad:?}");
        let r = tfm::run::run(
            &deepinit::backend::Backend::Cpu,
            &m,
            "t",
            &bad,
            true,
            true,
            None,
        );
        assert!(r.is_err(), "{bad:?}");
    }
}
