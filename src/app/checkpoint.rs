//! The benchmark's checkpoint rows: writing a whole model's safetensors
//! checkpoint against this machine's plain sequential file-write speed,
//! measured in the same run, in the same directory, with the same final
//! `fsync`.

use super::bench::{keyed, time_cpu, BenchOptions, Row, RowKey};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::io::dtype::DType;
use crate::model::plan::{Plan, TensorParallel};
use crate::model::{preset, write};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A scratch directory under the system temp directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("deepinit-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&p).map_err(|e| Error::path(&p, format!("cannot create: {e}")))?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` bytes to a new file in `dir` in 16 MiB blocks, then syncs it.
fn plain_write(dir: &Path, bytes: u64) -> Result<()> {
    let p = dir.join("plain.bin");
    let io = |e| Error::Io {
        path: p.clone(),
        source: e,
    };
    let block = vec![0x5Au8; 16 << 20];
    let mut f = std::fs::File::create(&p).map_err(io)?;
    let mut left = bytes;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        f.write_all(&block[..k]).map_err(io)?;
        left -= k as u64;
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::remove_file(&p).map_err(io)
}

/// The write roofline and one row per checkpoint dtype: GPT-2 small (full
/// mode) or `mlp:2048x4` (`--quick`), generated on `backend`.
pub(crate) fn rows(
    backend: &Backend,
    opts: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Row>> {
    let name = if opts.quick { "mlp:2048x4" } else { "gpt2" };
    let spec = preset::preset(name, 0)?;
    let scratch = Scratch::new()?;
    let mut rows = Vec::new();
    let f32_bytes = Plan::new(&spec, DType::F32, 1, TensorParallel::default())?.total_bytes();
    progress("sequential file write");
    let t = time_cpu(opts.repeats, || plain_write(&scratch.0, f32_bytes))?;
    let roof = f32_bytes as f64 / t.median_s / 1e6;
    rows.push(Row {
        group: "checkpoint",
        name: format!(
            "sequential write + fsync ({})",
            scratch
                .0
                .parent()
                .map_or("?".into(), |p| p.display().to_string())
        ),
        size: format!("{:.0} MB", f32_bytes as f64 / 1e6),
        rate: roof,
        unit: "MB/s",
        time: t,
        ratio: None,
        ratio_to: None,
        key: None,
    });
    let dtypes: &[DType] = if opts.quick {
        &[DType::F32]
    } else {
        &[DType::F32, DType::Bf16]
    };
    for &dtype in dtypes {
        progress(&format!("model checkpoint ({name}, {})", dtype.name()));
        let plan = Plan::new(&spec, dtype, 1, TensorParallel::default())?;
        let dir = scratch.0.join("ckpt");
        let t = time_cpu(opts.repeats, || {
            let targets = write::Targets::check(&dir, &spec, &plan, &[0], Vec::new(), true)?;
            write::write(&spec, &plan, targets, backend, None)?;
            std::fs::remove_dir_all(&dir).map_err(|e| Error::path(&dir, e.to_string()))
        })?;
        let rate = plan.total_bytes() as f64 / t.median_s / 1e6;
        rows.push(Row {
            group: "checkpoint",
            name: format!("deepinit model --preset {name} --dtype {}", dtype.name()),
            size: format!("{:.0} MB", plan.total_bytes() as f64 / 1e6),
            rate,
            unit: "MB/s",
            time: t,
            ratio: Some(rate / roof),
            ratio_to: Some("sequential write".into()),
            key: (dtype == DType::F32).then_some(RowKey::CheckpointF32),
        });
    }
    if !opts.quick {
        progress("transformers from_config + save_pretrained (if installed)");
        if let Some(row) = transformers_row(&scratch.0, &rows, opts.repeats) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// transformers' own way to the same GPT-2 checkpoint
/// (`benches/hf_transformers.py`: `from_config` + `save_pretrained` + fsync,
/// median of `repeats`), with deepinit's f32 speed-up over it; `None` where
/// python3 lacks transformers or torch.
fn transformers_row(dir: &Path, rows: &[Row], repeats: usize) -> Option<Row> {
    let ours = keyed(rows, RowKey::CheckpointF32)?;
    let cfg = dir.join("gpt2-config.json");
    let text = crate::model::hf::SHIPPED
        .iter()
        .find(|(n, _)| *n == "gpt2")?
        .1;
    std::fs::write(&cfg, text).ok()?;
    let out = std::process::Command::new("python3")
        .args(["-c", include_str!("../../benches/hf_transformers.py")])
        .arg(&cfg)
        .arg(dir.join("hf"))
        .arg(repeats.max(1).to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let runs: Vec<(String, f64, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["what"].as_str()?.to_string(),
                v["seconds"].as_f64()?,
                v["bytes"].as_f64()?,
            ))
        })
        .collect();
    let (what, _, bytes) = runs.first()?.clone();
    let time = super::bench::Timing::of(runs.iter().map(|r| r.1).collect(), "cpu-wall-clock");
    let rate = bytes / time.median_s / 1e6;
    Some(Row {
        group: "checkpoint",
        name: what,
        size: format!("{:.0} MB", bytes / 1e6),
        rate,
        unit: "MB/s",
        time,
        ratio: Some(ours.rate / rate),
        ratio_to: Some("deepinit f32 speed-up over it".into()),
        key: None,
    })
}
