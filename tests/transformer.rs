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
/// Tiny Llama (RMSNorm, SwiGLU, rotary, grouped-query attention, untied head).
pub const LLAMA: &str = r#"{"model_type": "llama", "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101,
  "rope_theta": 10000.0, "rms_norm_eps": 1e-6}"#;
/// Tiny Qwen2 (q/k/v biases, tied head).
pub const QWEN2: &str = r#"{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 4, "intermediate_size": 80, "vocab_size": 113,
  "tie_word_embeddings": true, "rope_theta": 1000000.0}"#;
/// Tiny Mistral (sliding window shorter than the sequence).
pub const MISTRAL: &str = r#"{"model_type": "mistral", "architectures": ["MistralForCausalLM"],
  "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
  "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 90,
  "sliding_window": 5}"#;

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
        ("llama", LLAMA, InitRule::Reference, 2, 11),
        ("qwen2", QWEN2, InitRule::He { depth: true }, 1, 13),
        ("mistral", MISTRAL, InitRule::Reference, 2, 12),
    ] {
        let m = Model::new(&tiny(cfg), init, 7).expect("model");
        let tokens = Tokens::random(&m.cfg, batch, seq, 7).expect("tokens");
        let (dev, layout) = tfm::device::run(&gpu, &m, &tokens, None).expect("device pass");
        let cpu = mirror::run_in(class, &m, &tokens, &layout).expect("mirror");
        let c = tfm::compare(&dev, &cpu);
        assert!(c.identical(), "{name}: {c:?}");
        let s = tfm::fold(&m.cfg, &tokens, &layout, &dev).expect("fold");
        assert!(s.loss.is_some_and(f64::is_finite), "{name}: {s:?}");
        // Every record covered something: the stream's count is rows x width.
        assert_eq!(s.embed.count, tokens.rows() * m.cfg.hidden, "{name}");
        // A one-row logits block lays the records out differently, and the
        // mirror follows it.
        let small = PassLayout::new(&m.cfg, &tokens, 1);
        assert!(small.total_records >= layout.total_records);
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
            "model", "--config", &path(&c), "--init", init, "--seed", "7", "--dtype", "f32",
            "--out", &path(&ck),
        ]);
        assert!(o.status.success(), "{name}: {}", common::stderr(&o));
        let o = common::run(&[
            "forward", "--config", &path(&c), "--init", init, "--seed", "7", "--tokens",
            &path(&t), "--json", &path(&r),
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
