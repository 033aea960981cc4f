//! `deepinit forward`: one deep forward + backward pass with per-layer checks.

use super::*;
use crate::act::Activation;
use crate::init::scheme::{self, Scheme};
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("transformer").args(["config", "preset", "model"])))]
pub(crate) struct ForwardArgs {
    /// he|kaiming, lecun, xavier|glorot, or naive:STD.
    #[arg(long, default_value = "he", value_parser = Scheme::parse, conflicts_with = "transformer")]
    scheme: Scheme,
    /// relu, leaky_relu[:a], tanh, sigmoid, selu, gelu (tanh form), gelu_erf, linear.
    #[arg(long, default_value = "relu", value_parser = Activation::parse, conflicts_with = "transformer")]
    act: Activation,
    /// Width of the input and every layer.
    #[arg(long, default_value_t = 256, value_parser = num::int_in(1u64, 1 << 30), conflicts_with = "transformer")]
    width: u64,
    /// Explicit widths n_0,n_1,...,n_L (overrides --width and --depth).
    #[arg(long, value_delimiter = ',', value_parser = num::int_in(1u64, 1 << 30))]
    widths: Option<Vec<u64>>,
    /// Number of layers.
    #[arg(long, default_value_t = 50, value_parser = num::usize_in(1, crate::net::MAX_DEPTH as u64), conflicts_with = "transformer")]
    depth: usize,
    /// Batch size [default: 64, or the rows of --input].
    #[arg(long, value_parser = num::int_in(1u64, 1 << 30))]
    batch: Option<u64>,
    /// Bias standard deviation (0: no bias).
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        conflicts_with = "transformer"
    )]
    bias_std: f64,
    /// Variance multiplier.
    #[arg(
        long,
        default_value_t = 1.0,
        allow_negative_numbers = true,
        conflicts_with = "transformer"
    )]
    multiplier: f64,
    /// Gain: a number or an activation name (scale = gain^2).
    #[arg(long, allow_negative_numbers = true, conflicts_with = "transformer")]
    gain: Option<String>,
    /// The fan to divide by (overrides the scheme's).
    #[arg(long, value_enum, conflicts_with = "transformer")]
    mode: Option<ModeChoice>,
    /// Weight distribution.
    #[arg(
        long,
        value_enum,
        default_value = "normal",
        conflicts_with = "transformer"
    )]
    dist: DistChoice,
    /// Seed.
    #[arg(long, default_value_t = 0, value_parser = num::seed)]
    seed: u64,
    /// The report (same format as the demo's report.json) as JSON.
    #[command(flatten)]
    json: JsonArgs,
    /// Skip the CPU reference.
    #[arg(long)]
    no_verify: bool,
    /// Inputs from a .npy file of shape (batch, n_0), float32 or float64
    /// (sets the batch and the input width); default: N(0, 1) from the RNG.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Run the transformer a Hugging Face config.json (or a directory holding
    /// one) describes, with the weights `deepinit model` writes for it.
    #[arg(long, value_name = "FILE|DIR", conflicts_with_all = ["widths", "input", "preset"])]
    config: Option<PathBuf>,
    /// Run the transformer of a checkpoint directory (its config.json and
    /// .safetensors weights, as `deepinit model` or transformers write them).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["widths", "input", "preset", "config", "init"])]
    model: Option<PathBuf>,
    /// Run a shipped transformer preset (gpt2, gpt2-medium, llama-3.2-1b,
    /// qwen2-0.5b, ...).
    #[arg(long, conflicts_with_all = ["widths", "input"])]
    preset: Option<String>,
    /// The transformer's init: reference (the model's own, as transformers
    /// does it), lecun, he, lecun-unscaled, he-unscaled, naive:STD.
    #[arg(long, default_value = "reference", requires = "transformer")]
    init: String,
    /// Tokens per sequence of the transformer pass.
    #[arg(long, default_value_t = 128, value_parser = num::int_in(2u64, crate::tfm::MAX_SEQ), requires = "transformer")]
    seq: u64,
    /// Transformer: run the forward pass only (no gradients).
    #[arg(long, requires = "transformer")]
    no_backward: bool,
    /// Transformer: where the backward pass starts: the LM loss on the batch
    /// (models with a head), or a random direction at the final norm's
    /// output, as the MLP pass does (the head's gradient is then not taken)
    #[arg(long, value_name = "FROM", default_value = "loss", value_parser = ["loss", "random"],
          conflicts_with = "no_backward", requires = "transformer")]
    direction: String,
    /// Token ids from a .npy integer file of shape (batch, seq) (sets both);
    /// default: uniform random ids from the seed.
    #[arg(long, value_name = "FILE.npy", conflicts_with_all = ["widths", "input"])]
    tokens: Option<PathBuf>,
}

pub(crate) fn run_forward(a: &ForwardArgs, d: &DeviceArgs) -> Result<ExitCode> {
    if a.config.is_some() || a.preset.is_some() || a.model.is_some() {
        return run_transformer(a, d);
    }
    if a.tokens.is_some() {
        return Err(Error::invalid(
            "tokens",
            "--tokens feeds a transformer: give --config or --preset",
        ));
    }
    let act = a.act;
    let json_out = a.json.open()?;
    let (cfg, input) = network(a, act)?;
    let t = json_out.text();
    let backend = open_backend(d)?;
    let progress = crate::progress::Progress::new("forward + backward pass");
    let r = crate::experiment::run_with_progress(
        &backend,
        &cfg,
        input.as_ref().map(|x| x.data.as_slice()),
        !a.no_verify,
        &progress,
    )?;
    drop(progress);
    say!(t,
        "deepinit forward: {} / {}, widths {}..{}, depth {}, batch {}, sw^2 {:.4}, bias std {}, seed {}",
        r.scheme, r.activation, cfg.widths[0], cfg.widths[r.depth], r.depth, r.batch, r.sigma_w2, r.bias_std, r.seed
    );
    say!(t, "device: {}", backend.info().describe());
    say!(t);
    t.styled(&crate::report::forward::layers_table(&r));
    say!(t);
    t.styled(&crate::report::forward::verdict_lines(
        &r.verdict,
        verify_word(a, &backend),
    ));
    let runs = vec![r];
    print_failures(&t, &runs);
    let code = exit_for(&runs);
    json_out.emit(
        &crate::app::demo::Report {
            device: backend.info(),
            config: serde_json::json!({ "command": "forward" }),
            runs,
        },
        &t,
    )?;
    Ok(code)
}

/// The widths n_0..n_L from --widths, or --width and --depth, range-checked.
fn widths(a: &ForwardArgs) -> Result<Vec<u64>> {
    let max_depth = crate::net::MAX_DEPTH;
    match &a.widths {
        Some(w) if w.len() < 2 => Err(Error::invalid(
            "widths",
            format!(
                "--widths {} lists {} value; it needs at least two (n_0,n_1,...: the input \
                 width, then one per layer)",
                w.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                w.len()
            ),
        )),
        Some(w) if w.len() - 1 > max_depth => Err(Error::invalid(
            "widths",
            format!(
                "{} layers; reduce the depth (at most {max_depth})",
                w.len() - 1
            ),
        )),
        Some(w) => Ok(w.clone()),
        // --depth's parser holds it to 1..=MAX_DEPTH.
        None => Ok(vec![a.width; a.depth + 1]),
    }
}

/// The network the options describe, with its inputs if --input is given;
/// everything validated (host memory included) before any device opens.
fn network(
    a: &ForwardArgs,
    act: crate::act::Activation,
) -> Result<(crate::net::NetConfig, Option<crate::io::npy::Array2>)> {
    let widths = widths(a)?;
    let input = a
        .input
        .as_deref()
        .map(crate::io::npy::read_2d)
        .transpose()?;
    let batch = match (&input, a.batch) {
        (Some(x), Some(b)) if b != x.rows => {
            return Err(Error::invalid(
                "batch",
                format!(
                    "--batch {b} contradicts --input, which holds {} rows (omit --batch)",
                    x.rows
                ),
            ))
        }
        (Some(x), _) => x.rows,
        (None, b) => b.unwrap_or(64),
    };
    let mut cfg = crate::net::NetConfig::uniform(a.scheme, act, 1, 1, batch);
    cfg.widths = widths;
    if let Some(x) = &input {
        if a.widths.is_some() && cfg.widths[0] != x.cols {
            return Err(Error::invalid(
                "input",
                format!(
                    "the file has width {}, but --widths starts with {}",
                    x.cols, cfg.widths[0]
                ),
            ));
        }
        cfg.widths[0] = x.cols;
    }
    cfg.multiplier = a.multiplier;
    cfg.bias_std = a.bias_std;
    cfg.seed = a.seed;
    cfg.gain = a.gain.as_deref().map(scheme::gain).transpose()?;
    cfg.mode = a.mode.map(Into::into);
    cfg.dist = a.dist.into();
    cfg.validate()?;
    crate::net::reference::check_host_memory(&cfg)?;
    Ok((cfg, input))
}

/// Why a run was not compared with the CPU, if it was not.
fn verify_word(a: &ForwardArgs, backend: &Backend) -> &'static str {
    if a.no_verify {
        "not compared (--no-verify)"
    } else if backend.gpu().is_none() {
        "not compared (the CPU backend is the reference)"
    } else {
        "not compared (no layer within the rounding model's reach)"
    }
}

/// The transformer pass: `forward --config` / `--preset`.
fn run_transformer(a: &ForwardArgs, d: &DeviceArgs) -> Result<ExitCode> {
    use crate::tfm::{Model, Tokens};
    // A checkpoint's weights are read whole before anything else; a config's
    // are drawn once the tokens are known to be valid.
    let (checkpoint, hf) = match &a.model {
        Some(dir) => {
            let m = Model::from_checkpoint(dir)?;
            (Some(m), None)
        }
        None => {
            let named =
                super::model::named(a.config.as_deref(), a.preset.as_deref(), None, &a.init)?;
            let Some(hf) = named.hf else {
                return Err(Error::invalid(
                    "preset",
                    "the transformer pass runs Hugging Face configs; an mlp preset is a plain \
                     network (use --width and --depth)",
                ));
            };
            (None, Some(hf))
        }
    };
    let init = crate::model::hf::InitRule::parse(&a.init)?;
    let cfg = match (&checkpoint, &hf) {
        (Some(m), _) => m.cfg.clone(),
        (None, Some(hf)) => crate::tfm::TfmConfig::from_hf(hf)?,
        (None, None) => return Err(Error::internal("forward", "no model")),
    };
    // Tokens are checked against the model before any weight is drawn.
    let tokens = match &a.tokens {
        Some(p) => {
            let (rows, cols, ids) = crate::io::npy::read_2d_ints(p)?;
            if a.batch.is_some_and(|b| b != rows) {
                return Err(Error::invalid(
                    "batch",
                    format!(
                        "--batch contradicts --tokens, which holds {rows} sequences (omit --batch)"
                    ),
                ));
            }
            let ids = ids
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    u32::try_from(t)
                        .ok()
                        .filter(|&t| u64::from(t) < cfg.vocab)
                        .ok_or_else(|| {
                            Error::bad(
                                "tokens",
                                format!("{}: id {t} at position {i}", p.display()),
                                format!("outside the vocabulary (0..{})", cfg.vocab),
                            )
                        })
                })
                .collect::<Result<Vec<u32>>>()?;
            Tokens::given(&cfg, rows, cols, ids)?
        }
        None => Tokens::random(&cfg, a.batch.unwrap_or(4), a.seq, a.seed)?,
    };
    let json_out = a.json.open()?;
    let t = json_out.text();
    let mut model = match (checkpoint, &hf) {
        (Some(m), _) => m,
        (None, Some(hf)) => Model::new(hf, init, a.seed)?,
        (None, None) => return Err(Error::internal("forward", "no model")),
    };
    if a.direction == "random" {
        model.direction = crate::tfm::Direction::Random;
    }
    let backend = open_backend(d)?;
    let progress = crate::progress::Progress::new("transformer pass");
    let source = match (&a.model, &a.config, &a.preset) {
        (Some(p), _, _) => format!("checkpoint {}", p.display()),
        (None, Some(p), _) => format!("config {}", p.display()),
        (None, None, Some(n)) => format!("preset {n}"),
        (None, None, None) => String::new(),
    };
    let r = crate::tfm::run::run(
        &backend,
        &model,
        &source,
        &tokens,
        !a.no_verify,
        !a.no_backward,
        Some(&progress),
    )?;
    drop(progress);
    say!(
        t,
        "deepinit forward: {} from {}, init {}, {} x {} tokens, seed {}{}",
        r.class,
        r.source,
        r.init,
        r.batch,
        r.seq,
        r.seed,
        if r.direction == Some(crate::tfm::Direction::Random) {
            ", backward from a random direction"
        } else {
            ""
        }
    );
    say!(t, "device: {}", backend.info().describe());
    say!(t);
    t.raw(&crate::report::transformer::blocks_table(&r));
    say!(t);
    t.styled(&crate::report::transformer::verdict_lines(&r));
    let code = if r.pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    };
    json_out.emit(&r, &t)?;
    Ok(code)
}
