//! `deepinit model`: a whole model's initial checkpoint as safetensors,
//! optionally sharded across files and machines.

use super::*;
use crate::io::dtype::DType;
use crate::model::hf::{self, HfModel, InitRule};
use crate::model::plan::{Plan, TensorParallel};
use crate::model::write::{self, Targets};
use crate::model::{emit, preset, spec, ModelSpec};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["spec", "preset", "config"])))]
pub(crate) struct ModelArgs {
    /// A Hugging Face config.json (or a directory holding one) of a GPT-2,
    /// Llama, Mistral, Qwen2 or BERT model: the checkpoint holds the
    /// transformers class's tensors and a config.json that loads them.
    #[arg(long, value_name = "FILE|DIR")]
    config: Option<PathBuf>,
    /// A shipped config: gpt2, gpt2-medium, gpt2-large, gpt2-xl, llama-7b,
    /// llama-3-8b, llama-3.2-1b, mistral-7b, qwen2-0.5b, bert-base; or mlp:WIDTHxDEPTH.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// The model spec (TOML, or JSON): named tensors with shapes and rules.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// How a config's weight matrices are drawn: reference (the family's own
    /// transformers _init_weights), lecun or he (Var = 1 or 2 / fan_in, the
    /// residual branches' outputs x 1/(2 n_layer)), lecun-unscaled,
    /// he-unscaled, naive:STD.
    #[arg(long, value_name = "RULE", default_value = "reference")]
    init: String,
    /// Print the model as an editable spec (TOML) and exit.
    #[arg(long)]
    print_spec: bool,
    /// The checkpoint directory (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present = "print_spec")]
    out: Option<PathBuf>,
    /// Element type: f32, bf16 or f16 (rounded to nearest even from f32).
    #[arg(long, default_value = "f32", value_parser = DType::parse)]
    dtype: DType,
    /// Shard files (Hugging Face layout plus model.safetensors.index.json);
    /// default 1, or the launcher's world size.
    #[arg(long, value_parser = num::usize_in(1, u64::from(u32::MAX)))]
    shards: Option<usize>,
    /// Write only shard I (0-based) of --shards; without it, RANK/WORLD_SIZE,
    /// SLURM_PROCID/SLURM_NTASKS or JOB_COMPLETION_INDEX are read.
    #[arg(long, value_name = "I", value_parser = num::usize_in(0, u64::from(u32::MAX)))]
    rank: Option<usize>,
    /// Tensor parallelism: every tensor with a `split` holds part --tp-rank of this many.
    #[arg(long, default_value_t = 1, value_parser = num::int_in(1u64, crate::model::plan::MAX_TP))]
    tp_size: u64,
    /// This checkpoint's tensor-parallel part (0-based).
    #[arg(long, default_value_t = 0, value_parser = num::int_in(0u64, crate::model::plan::MAX_TP - 1))]
    tp_rank: u64,
    /// Seed (overrides the spec's).
    #[arg(long, value_parser = num::seed)]
    seed: Option<u64>,
    #[command(flatten)]
    json: JsonArgs,
}

/// Which shards this process writes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ranks {
    pub(crate) shards: usize,
    pub(crate) mine: Vec<usize>,
    pub(crate) source: Option<String>,
}

/// Resolves `--shards`/`--rank` and the launchers' variables (`var` looks
/// one up): worker `r` of `w` writes the shards `i` with `i % w == r`.
pub(crate) fn ranks(
    shards: Option<usize>,
    rank: Option<usize>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Ranks> {
    if let Some(r) = rank {
        let n = shards.ok_or_else(|| Error::invalid("rank", "--rank needs --shards"))?;
        if r >= n {
            return Err(Error::bad(
                "rank",
                r,
                format!("must be below --shards ({n})"),
            ));
        }
        return Ok(Ranks {
            shards: n,
            mine: vec![r],
            source: Some("--rank".into()),
        });
    }
    let num = |name: &str| -> Result<Option<usize>> {
        var(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    Error::bad(
                        "environment variable",
                        format!("{name}={v}"),
                        "not a non-negative integer",
                    )
                })
            })
            .transpose()
    };
    let launcher = match (num("RANK")?, num("WORLD_SIZE")?) {
        (Some(r), Some(w)) => Some((r, w, "RANK/WORLD_SIZE")),
        _ => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
            (Some(r), Some(w)) => Some((r, w, "SLURM_PROCID/SLURM_NTASKS")),
            _ => match (num("JOB_COMPLETION_INDEX")?, shards) {
                (Some(r), Some(n)) => Some((r, n, "JOB_COMPLETION_INDEX")),
                (Some(_), None) => {
                    return Err(Error::invalid(
                        "shards",
                        "JOB_COMPLETION_INDEX is set: pass --shards N (the Job's completions)",
                    ))
                }
                _ => None,
            },
        },
    };
    let Some((r, w, from)) = launcher else {
        let n = shards.unwrap_or(1);
        return Ok(Ranks {
            shards: n,
            mine: (0..n).collect(),
            source: None,
        });
    };
    if w == 0 || r >= w {
        return Err(Error::invalid(
            "rank",
            format!("{from} gives rank {r} of {w}"),
        ));
    }
    let n = shards.unwrap_or(w);
    Ok(Ranks {
        shards: n,
        mine: (0..n).filter(|i| i % w == r).collect(),
        source: Some(format!("{from}: worker {r} of {w}")),
    })
}

/// A model named on the command line: its spec, where it came from, and
/// the Hugging Face model behind it (whose config.json goes with it).
pub(crate) struct Named {
    pub(crate) spec: ModelSpec,
    pub(crate) what: String,
    pub(crate) hf: Option<HfModel>,
}

/// Resolves `--config`/`--preset`/`--spec` with `--init` (which applies to
/// Hugging Face models only).
pub(crate) fn named(
    config: Option<&std::path::Path>,
    preset_name: Option<&str>,
    spec_file: Option<&std::path::Path>,
    init: &str,
) -> Result<Named> {
    let rule = InitRule::parse(init)?;
    let (hf, what) = match (config, preset_name, spec_file) {
        (Some(p), _, _) => (hf::read(p)?, format!("config {}", p.display())),
        (None, Some(name), _) => match preset::resolve(name)? {
            preset::Preset::Hf(m) => (m, format!("preset {name}")),
            preset::Preset::Spec(spec) => {
                if rule != InitRule::Reference {
                    return Err(Error::invalid(
                        "init",
                        "--init applies to Hugging Face configs; an mlp preset is He by definition",
                    ));
                }
                return Ok(Named {
                    spec,
                    what: format!("preset {name}"),
                    hf: None,
                });
            }
        },
        (None, None, Some(p)) => {
            if rule != InitRule::Reference {
                return Err(Error::invalid(
                    "init",
                    "--init applies to --config and --preset; a spec names every tensor's rule",
                ));
            }
            return Ok(Named {
                spec: spec::read(p)?,
                what: format!("spec {}", p.display()),
                hf: None,
            });
        }
        (None, None, None) => {
            return Err(Error::invalid(
                "model",
                "pass --config FILE, --preset NAME or --spec FILE",
            ))
        }
    };
    let spec = hf.spec(rule, 0)?;
    let what = format!("{what} ({}, {} init)", hf.class, rule.name());
    Ok(Named {
        spec,
        what,
        hf: Some(hf),
    })
}

impl ModelArgs {
    fn model(&self) -> Result<Named> {
        let mut n = named(
            self.config.as_deref(),
            self.preset.as_deref(),
            self.spec.as_deref(),
            &self.init,
        )?;
        if let Some(s) = self.seed {
            n.spec.seed = s;
        }
        Ok(n)
    }
}

pub(crate) fn run_model(a: &ModelArgs, d: &DeviceArgs) -> Result<ExitCode> {
    let Named { spec, what, hf } = a.model()?;
    if a.print_spec {
        let comment = preset::describe(&what);
        out(&emit::to_toml(&spec, &comment));
        return Ok(ExitCode::SUCCESS);
    }
    let dtype = a.dtype;
    let ranks = ranks(a.shards, a.rank, |k| std::env::var(k).ok())?;
    let tp = TensorParallel {
        size: a.tp_size,
        rank: a.tp_rank,
    };
    let plan = Plan::new(&spec, dtype, ranks.shards, tp)?;
    let dir = a
        .out
        .as_deref()
        .ok_or_else(|| Error::invalid("out", "--out DIR is required"))?;
    // Every file of the checkpoint (all ranks') and the JSON report are distinct.
    let mut outputs = a.json.file();
    let names = plan.shards.iter().map(|s| s.file.clone()).chain([
        crate::model::plan::INDEX.to_string(),
        "config.json".into(),
        "generation_config.json".into(),
    ]);
    outputs.extend(names.map(|f| (format!("the checkpoint's {f}"), dir.join(f))));
    crate::io::output::check_distinct(&outputs)?;
    let json = a.json.open()?;
    // The device first: a run that cannot get one creates nothing.
    let backend = open_backend(d)?;
    let mut extra = Vec::new();
    // A tensor-parallel part is not the model its config describes
    // (`from_pretrained` would refuse its shapes): configs go with whole models.
    if let Some(m) = hf.as_ref().filter(|_| tp.size == 1) {
        extra.push(("config.json".to_string(), m.config_json(dtype)));
        if let Some(g) = m.generation_config_json() {
            extra.push(("generation_config.json".to_string(), g));
        }
    }
    let targets = Targets::check(dir, &spec, &plan, &ranks.mine, extra, a.json.force)?;
    let t = json.text();
    t.raw(&header(&spec, &what, &plan, &ranks, &backend));
    let progress = crate::progress::Progress::new("writing the checkpoint");
    let report = write::write(&spec, &plan, targets, &backend, Some(&progress))?;
    progress.finish();
    t.raw(&crate::report::model::render(&report));
    json.emit(&report, &t)?;
    Ok(ExitCode::SUCCESS)
}

fn header(spec: &ModelSpec, what: &str, plan: &Plan, ranks: &Ranks, backend: &Backend) -> String {
    let bytes: u64 = plan.total_bytes();
    let mut s = format!(
        "deepinit model: {what}: {} tensors, {} parameters, {}, seed {}\n",
        spec.tensors.len(),
        crate::report::style::thousands(spec.elements()),
        plan.dtype.name(),
        spec.seed
    );
    s += &format!("device: {}\n", backend.info().describe());
    let mine = if ranks.mine.len() == plan.shards.len() {
        "all".to_string()
    } else if ranks.mine.is_empty() {
        "none (more workers than shards), only the index".to_string()
    } else {
        ranks
            .mine
            .iter()
            .map(|i| (i + 1).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    s += &format!(
        "checkpoint: {:.1} MB in {} shard(s); this run writes {mine}{}\n",
        bytes as f64 / 1e6,
        plan.shards.len(),
        ranks
            .source
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    if plan.tp.size > 1 {
        s += &format!(
            "tensor parallelism: part {} of {} of every tensor with a split \
             (no config.json: a part is not the model its config describes)\n",
            plan.tp.rank, plan.tp.size
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ranks_come_from_flags_then_launchers() {
        let r = ranks(Some(4), Some(2), env(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap();
        assert_eq!(r.mine, [2], "the flag wins");
        assert!(ranks(None, Some(0), env(&[])).is_err());
        assert!(ranks(Some(2), Some(2), env(&[])).is_err());
        let r = ranks(None, None, env(&[])).unwrap();
        assert_eq!((r.shards, r.mine), (1, vec![0]));
        let r = ranks(None, None, env(&[("RANK", "1"), ("WORLD_SIZE", "3")])).unwrap();
        assert_eq!((r.shards, r.mine), (3, vec![1]));
        // More shards than workers: worker r takes every w-th shard.
        let r = ranks(
            Some(5),
            None,
            env(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")]),
        )
        .unwrap();
        assert_eq!(r.mine, [1, 3]);
        let r = ranks(Some(3), None, env(&[("JOB_COMPLETION_INDEX", "2")])).unwrap();
        assert_eq!(r.mine, [2]);
        assert!(ranks(None, None, env(&[("JOB_COMPLETION_INDEX", "2")])).is_err());
        assert!(ranks(None, None, env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
        assert!(ranks(None, None, env(&[("RANK", "2"), ("WORLD_SIZE", "2")])).is_err());
    }
}
