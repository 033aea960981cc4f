//! Chooses how each generation kernel runs on a device: the store (one word
//! at a time, or one vec4 per Philox block), the workgroup size, and the
//! Philox multiply (native 64-bit integers where the device has them, or
//! 16-bit halves). Like the GEMM tuner ([`super::tune`]): every candidate
//! is timed on the same problem, its whole output compared word for word
//! with the reference configuration's (scalar stores, 256 invocations, the
//! device's default multiply), and the fastest verified one kept, in memory
//! and in the tuning cache file ([`super::tune_cache`], entry shape
//! `generate <kernel>`; [`super::tune::Tuner::generation`] reads and writes
//! it with the GEMM choices). No setting changes a value, and the check
//! makes sure of it.

use super::generate::{GenOptions, GenRequest, Generator, Kernel};
use super::shaders::{MulHi, Store};
use super::timer::GpuTimer;
use super::tune::Source;
use super::tune_cache::{Entry, GenSetting, Measured, TuneKey, Unit, Variant};
use crate::error::{Error, Result};
use serde::Serialize;

/// Elements generated per timed run: 16 MiB of output, a few milliseconds
/// on lavapipe, microseconds on a discrete GPU.
pub const TIMED_ELEMENTS: u64 = 1 << 22;

/// Workgroup sizes tried (those the device allows).
pub const WORKGROUP_SIZES: [u32; 4] = [64, 128, 256, 512];

/// Runs per candidate after a warm-up; the median counts.
const REPEATS: usize = 3;

/// Candidates timed a second time before the choice.
pub(crate) const FINALISTS: usize = 3;

/// Runs per finalist in the second timing.
pub(crate) const FINAL_REPEATS: usize = 5;

/// The configuration one generation kernel runs with, and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct GenChoice {
    /// `bits`, `normal`, `truncated` or `uniform`.
    pub kernel: &'static str,
    /// The chosen store, workgroup size and multiply (JSON: `store`,
    /// `workgroup_size`, `mulhi`).
    #[serde(flatten)]
    pub setting: GenSetting,
    /// How it was chosen (`fixed`: tuning is off, the reference
    /// configuration runs).
    pub source: Source,
    /// Its measured Gsamples/s (not for `fixed` or `default`).
    pub gsamples: Option<f64>,
    /// Elements per timed run (not for `fixed` or `default`).
    pub timed: Option<u64>,
    /// Every candidate, rate in Gsamples/s.
    pub candidates: Vec<Measured>,
}

impl GenChoice {
    /// `opts` with this choice's store, workgroup size and multiply.
    pub fn apply(&self, opts: GenOptions) -> GenOptions {
        GenOptions {
            store: self.setting.store,
            workgroup_size: self.setting.workgroup_size,
            mulhi: Some(self.setting.mulhi),
            ..opts
        }
    }
}

fn mulhi_name(m: MulHi) -> &'static str {
    match m {
        MulHi::Int64 => "int64",
        MulHi::Emulated => "emulated",
    }
}

/// The reference settings (word stores, 256 invocations, the device's
/// default multiply), untimed, with `source` (`fixed` or `default`).
pub(crate) fn reference(gen: &Generator, kernel: Kernel, source: Source) -> GenChoice {
    let wg = GenOptions::default().workgroup_size;
    let mulhi = if gen.context().int64() {
        MulHi::Int64
    } else {
        MulHi::Emulated
    };
    GenChoice {
        kernel: kernel_name(kernel),
        setting: GenSetting {
            store: Store::Scalar,
            workgroup_size: wg,
            mulhi,
        },
        source,
        gsamples: None,
        timed: None,
        candidates: Vec::new(),
    }
}

/// The multiplies `gen`'s device can run: native first where enabled.
fn mulhis(gen: &Generator) -> Vec<MulHi> {
    if gen.context().int64() {
        vec![MulHi::Int64, MulHi::Emulated]
    } else {
        vec![MulHi::Emulated]
    }
}

/// The name of a kernel in the cache and in reports.
pub(crate) fn kernel_name(k: Kernel) -> &'static str {
    match k {
        Kernel::Bits => "bits",
        Kernel::Dist(d) => d.name(),
    }
}

/// The cache key of a kernel's settings: with and without native 64-bit
/// integers (`--no-int64`) apart, as the latter's choice was made among
/// fewer candidates.
pub(crate) fn key(kernel: Kernel, int64: bool) -> TuneKey {
    TuneKey::Generate { kernel, int64 }
}

/// `<store>-wg<size>-<multiply>`, e.g. `vec4-wg128-int64`.
pub(crate) fn candidate_name(store: Store, wg: u32, mulhi: MulHi) -> String {
    format!("{}-wg{wg}-{}", store.name(), mulhi_name(mulhi))
}

/// The choice cached for `kernel` among `entries` (this device's), if one
/// names settings `gen`'s device runs.
pub(crate) fn cached_choice(
    gen: &Generator,
    kernel: Kernel,
    entries: &[Entry],
) -> Option<GenChoice> {
    let key = key(kernel, gen.context().int64());
    entries
        .iter()
        .find(|e| {
            e.key == key
                && matches!(e.variant, Variant::Generate(g)
                    if fits(gen, g.workgroup_size) && mulhis(gen).contains(&g.mulhi))
        })
        .map(|e| choice_of(kernel, e, Source::Cached))
}

fn fits(gen: &Generator, wg: u32) -> bool {
    super::generate::check_workgroup_size(wg, gen.max_workgroup_size()).is_ok()
}

/// The choice an entry records, with `source` (`tuned` or `cached`).
pub(crate) fn choice_of(kernel: Kernel, e: &Entry, source: Source) -> GenChoice {
    // Entries come from `tune` or `cached_choice`: generation settings.
    let setting = match e.variant {
        Variant::Generate(g) => g,
        Variant::Gemm(_) => GenSetting {
            store: Store::Scalar,
            workgroup_size: GenOptions::default().workgroup_size,
            mulhi: MulHi::Emulated,
        },
    };
    GenChoice {
        kernel: kernel_name(kernel),
        setting,
        source,
        gsamples: Some(e.rate),
        timed: Some(u64::from(e.timed[0])),
        candidates: e.candidates.clone(),
    }
}

/// Times every (store, workgroup size, multiply) the device allows on
/// [`TIMED_ELEMENTS`] elements and checks each output against the
/// reference configuration's, word for word; then times the
/// [`FINALISTS`] fastest again ([`FINAL_REPEATS`] runs) and keeps the best of
/// that second timing, so one lucky run on a noisy machine does not decide.
/// The finalists' listed rates are from the second timing.
pub(crate) fn tune(gen: &Generator, kernel: Kernel) -> Result<Entry> {
    let ctx = gen.context();
    let n = TIMED_ELEMENTS.min(gen.chunk_limit(&GenOptions::default())?);
    let out = ctx.scoped("allocating the generation tuning buffer", || {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("generation tuning"),
            size: 4 * n,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    })?;
    let req = GenRequest {
        kernel,
        seed: 0x5eed,
        tensor_id: 3,
        start: 0,
        count: n,
        scale: 1.0,
    };
    let timer = GpuTimer::new(ctx);
    let rate = |opts: &GenOptions, repeats: usize| -> Result<f64> {
        let t = timer.time(repeats, gen.launch(&req, &out, opts)?)?;
        Ok(n as f64 / t.median_s.max(1e-12) * 1e-9)
    };
    rate(&GenOptions::default(), REPEATS)?;
    let reference = ctx.read_words(&out, n)?;
    let mut candidates: Vec<(GenOptions, Measured)> = configs(gen)
        .into_iter()
        .map(|(opts, setting)| {
            let timed = rate(&opts, REPEATS).and_then(|r| Ok((r, ctx.read_words(&out, n)?)));
            let m = match timed {
                Ok((r, words)) if words == reference => measured(setting, Some(r), None),
                Ok((_, words)) => {
                    let diff = words.iter().zip(&reference).filter(|(a, b)| a != b).count();
                    let why = format!("differs from the reference settings in {diff} of {n} words");
                    measured(setting, None, Some(why))
                }
                Err(e) => measured(setting, None, Some(e.to_string())),
            };
            (opts, m)
        })
        .collect();
    // The finalists, fastest first, timed again.
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].1.rate.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let r = |i: usize| candidates[i].1.rate.unwrap_or(0.0);
        r(b).total_cmp(&r(a))
    });
    let mut best: Option<(f64, GenSetting)> = None;
    for &i in order.iter().take(FINALISTS) {
        let r = rate(&candidates[i].0, FINAL_REPEATS)?;
        candidates[i].1.rate = Some(r);
        if best.as_ref().is_none_or(|(b, _)| r > *b) {
            let o = &candidates[i].0;
            best = Some((
                r,
                GenSetting {
                    store: o.store,
                    workgroup_size: o.workgroup_size,
                    mulhi: o.mulhi.unwrap_or(MulHi::Emulated),
                },
            ));
        }
    }
    let (gsamples, variant) = best.ok_or_else(|| {
        Error::internal(
            "generation tuner",
            "no configuration reproduced the reference",
        )
    })?;
    Ok(Entry {
        device: super::tune::device_key(ctx.adapter()),
        key: key(kernel, ctx.int64()),
        // Elements timed; generation entries leave the other two at 0.
        timed: [n as u32, 0, 0],
        variant: Variant::Generate(variant),
        rate: gsamples,
        unit: Unit::GsamplesPerS,
        candidates: candidates.into_iter().map(|(_, m)| m).collect(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// Every configuration the device allows, as options and as a setting.
fn configs(gen: &Generator) -> Vec<(GenOptions, GenSetting)> {
    let mut v = Vec::new();
    for store in Store::ALL {
        for wg in WORKGROUP_SIZES.into_iter().filter(|&w| fits(gen, w)) {
            for mulhi in mulhis(gen) {
                let opts = GenOptions {
                    store,
                    workgroup_size: wg,
                    mulhi: Some(mulhi),
                    ..GenOptions::default()
                };
                v.push((
                    opts,
                    GenSetting {
                        store,
                        workgroup_size: wg,
                        mulhi,
                    },
                ));
            }
        }
    }
    v
}

fn measured(setting: GenSetting, rate: Option<f64>, rejected: Option<String>) -> Measured {
    Measured {
        variant: Variant::Generate(setting),
        rate,
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names_round_trip() {
        for store in Store::ALL {
            for wg in WORKGROUP_SIZES {
                for m in [MulHi::Int64, MulHi::Emulated] {
                    let name = candidate_name(store, wg, m);
                    let (s, w, mm) = (store.name(), wg, mulhi_name(m));
                    assert_eq!(name, format!("{s}-wg{w}-{mm}"));
                    // The typed setting serializes to the same words.
                    let g = GenSetting {
                        store,
                        workgroup_size: wg,
                        mulhi: m,
                    };
                    assert_eq!(g.to_string(), name);
                    let back: GenSetting =
                        serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
                    assert_eq!(back, g);
                }
            }
        }
        assert_eq!(
            candidate_name(Store::Vec4, 128, MulHi::Int64),
            "vec4-wg128-int64"
        );
        assert_eq!(key(Kernel::Bits, true).to_string(), "generate bits");
        assert_eq!(
            key(Kernel::Bits, false).to_string(),
            "generate bits (no int64)"
        );
    }
}
