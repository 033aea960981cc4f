//! Chooses a GEMM variant per (device, shape class), the way cubecl's
//! autotuner does: on first use of a class, every variant the device can run
//! is timed on a problem of that class, its whole result compared bit for bit
//! with the reference variant's ([`GemmVariant::Tiled64`]), and the fastest
//! verified one kept — in memory, and in the cache file
//! ([`super::tune_cache`]) so later runs skip the timing.
//!
//! A variant whose result differs in any bit is rejected, so tuning never
//! changes what deepinit computes. Shape classes round m, n and k up to
//! powers of two; the timed problem is the first shape seen in the class,
//! halved along its largest dimension until it is at most `TUNE_FLOPS`.

use super::context::GpuContext;
use super::gemm::{GemmForm, GemmKernels, GemmVariant};
use super::gen_tune::{self, GenChoice};
use super::generate::{Generator, Kernel};
use super::launch::Batch;
use super::layout::GemmParams;
use super::timer::GpuTimer;
use super::tune_cache::{self, Entry, Measured, TuneKey, Unit, Variant};
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Largest problem timed per variant, in flops (2 m n k): about 0.2 s per
/// run on lavapipe, microseconds on a discrete GPU.
pub(crate) const TUNE_FLOPS: u64 = 1 << 29;

/// Runs per variant after a warm-up; the median counts.
const TUNE_REPEATS: usize = 3;

/// Problems below this many flops (2 m n k) are too small for the variant
/// to matter (under a millisecond on lavapipe, microseconds on a GPU): they
/// run the reference variant, untimed and uncached.
pub(crate) const SMALL_FLOPS: u64 = 1 << 23;

/// A candidate is first run once on a problem of at most this many flops;
/// one slower than [`PROBE_SLOWDOWN`] times the reference there is dropped
/// without being timed at full size (so a variant that crawls on some
/// backend costs at most one small run).
const PROBE_FLOPS: u64 = 1 << 23;
/// See [`PROBE_FLOPS`].
const PROBE_SLOWDOWN: f64 = 4.0;

/// The most seconds one process spends tuning (GEMM variants and
/// generation settings together); once spent, further shape classes and
/// kernels run the reference untimed (and uncached, so a later run tunes
/// them). A tuning under way finishes, so the bound can be passed by one.
pub(crate) const TUNE_BUDGET_S: f64 = 20.0;

/// Generation requests under this many values run the reference settings
/// untimed: tuning them would cost more than it could save.
pub(crate) const SMALL_ELEMENTS: u64 = 1 << 18;

/// How variants are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuneMode {
    /// Always this variant; nothing is timed (the library's default).
    Fixed(GemmVariant),
    /// Tune each shape class on first use; `cache` is the file to read and
    /// update (`None`: in memory only); `retune` ignores what it holds.
    Auto {
        /// The cache file.
        cache: Option<PathBuf>,
        /// Time every class again, replacing cached choices.
        retune: bool,
    },
}

impl TuneMode {
    /// Tuning with the cache in the user's cache directory
    /// ([`tune_cache::default_dir`]).
    pub(crate) fn auto(retune: bool) -> TuneMode {
        TuneMode::Auto {
            cache: tune_cache::default_dir().map(|d| tune_cache::file_in(&d)),
            retune,
        }
    }
}

/// A shape class: the form and m, n, k rounded up to powers of two.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct ShapeClass {
    /// Operand form.
    pub form: GemmForm,
    /// Rounded dimensions.
    pub m: u32,
    /// Rounded dimensions.
    pub n: u32,
    /// Rounded dimensions.
    pub k: u32,
}

impl ShapeClass {
    /// The class of an m x n x k problem.
    pub fn of(form: GemmForm, m: u32, n: u32, k: u32) -> ShapeClass {
        let r = |x: u32| x.max(1).checked_next_power_of_two().unwrap_or(1 << 31);
        ShapeClass {
            form,
            m: r(m),
            n: r(n),
            k: r(k),
        }
    }

    /// `nt m128 n2048 k2048`.
    pub fn label(&self) -> String {
        format!("{} m{} n{} k{}", self.form.name(), self.m, self.n, self.k)
    }
}

/// How a variant or a generation setting was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Fixed by the user (`--gemm VARIANT`), or tuning is off: nothing timed.
    Fixed,
    /// Timed in this run.
    Tuned,
    /// Read from the tuning cache.
    Cached,
    /// Tuning failed; the reference runs.
    Default,
    /// Too small a problem for the choice to matter: the reference, untimed.
    Small,
    /// A backend whose timings are not trusted (wgpu's GL): the reference.
    Gl,
    /// This run's tuning budget was spent: the reference, untimed.
    Budget,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Fixed => "fixed",
            Source::Tuned => "tuned",
            Source::Cached => "cached",
            Source::Default => "default",
            Source::Small => "small",
            Source::Gl => "gl",
            Source::Budget => "budget",
        })
    }
}

/// The variant used for one shape class, and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The shape class.
    pub shape: String,
    /// The variant.
    pub variant: GemmVariant,
    /// How it was chosen.
    pub source: Source,
    /// Its measured GFLOP/s (not for `fixed`).
    pub gflops: Option<f64>,
    /// The timed problem `[m, n, k]` (not for `fixed`).
    pub timed: Option<[u32; 3]>,
    /// Every candidate (not for `fixed`).
    pub candidates: Vec<Measured>,
}

/// The GEMM dispatcher of one device: its pipelines, its tuning mode, and the
/// choices made so far (one per shape class used: bounded by the shapes a
/// run multiplies, a handful per network).
pub struct Tuner {
    kernels: GemmKernels,
    mode: Mutex<TuneMode>,
    state: Mutex<State>,
    reporter: Mutex<Option<Reporter>>,
}

/// Where the tuner tells what it is doing (e.g. a CLI's stderr).
pub(crate) type Reporter = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct State {
    choices: BTreeMap<ShapeClass, Choice>,
    /// Generation settings chosen so far, by kernel name (at most 4).
    generation: BTreeMap<&'static str, GenChoice>,
    /// Cache entries of this device, loaded once.
    cached: Option<Vec<Entry>>,
    notes: Vec<String>,
    /// Seconds spent timing GEMM variants so far (bounded by [`TUNE_BUDGET_S`]).
    spent_s: f64,
}

impl Tuner {
    /// A dispatcher in [`TuneMode::Fixed`]`(`[`GemmVariant::Tiled64`]`)`.
    pub fn new(ctx: &GpuContext) -> Tuner {
        Tuner {
            kernels: GemmKernels::new(ctx),
            mode: Mutex::new(TuneMode::Fixed(GemmVariant::Tiled64)),
            state: Mutex::new(State::default()),
            reporter: Mutex::new(None),
        }
    }

    /// Sends notes (tuning started and finished, a cache ignored or not
    /// saved) to `r` as they happen, instead of keeping them for
    /// [`Tuner::take_notes`].
    pub(crate) fn set_reporter(&self, r: Reporter) -> Result<()> {
        *lock(&self.reporter)? = Some(r);
        Ok(())
    }

    /// Whether this device's timings cannot choose a variant. On wgpu's GL
    /// backend (llvmpipe's OpenGL here) the timed problem ranks the variants
    /// in an order the real passes do not follow: `tiled64wide` timed 2x
    /// faster than `tiled64` made a 30-layer pass take 79 s against 2 s. There
    /// the reference variant and settings run, untimed.
    fn untrusted_timing(&self) -> bool {
        self.kernels.context().adapter().backend == "gl"
    }

    fn note(&self, note: String) -> Result<()> {
        if let Some(r) = lock(&self.reporter)?.as_ref() {
            r(&note);
            return Ok(());
        }
        lock(&self.state)?.notes.push(note);
        Ok(())
    }

    /// How `kernel` runs on `gen` (the same device): in [`TuneMode::Auto`]
    /// the cached or newly timed store and workgroup size
    /// (`tune`); in [`TuneMode::Fixed`] the reference
    /// settings (scalar stores, 256 invocations), untimed.
    pub fn generation(&self, gen: &Generator, kernel: Kernel) -> Result<GenChoice> {
        self.generation_for(gen, kernel, u64::MAX)
    }

    /// [`Tuner::generation`] for a request of `elements` values: one under
    /// [`SMALL_ELEMENTS`] runs the reference settings untimed (the settings
    /// cannot matter there), unless a choice is already known; tuning stops
    /// once this process's [`TUNE_BUDGET_S`] is spent.
    pub(crate) fn generation_for(
        &self,
        gen: &Generator,
        kernel: Kernel,
        elements: u64,
    ) -> Result<GenChoice> {
        let name = gen_tune::kernel_name(kernel);
        if let Some(c) = lock(&self.state)?.generation.get(name) {
            return Ok(c.clone());
        }
        // Cloned first: the arms lock the mode again (load_cache).
        let mode = lock(&self.mode)?.clone();
        let choice = match mode {
            TuneMode::Fixed(_) => gen_tune::reference(gen, kernel, Source::Fixed),
            TuneMode::Auto { cache, retune } => {
                let hit = if retune {
                    None
                } else {
                    self.load_cache()?;
                    let st = lock(&self.state)?;
                    gen_tune::cached_choice(gen, kernel, st.cached.as_deref().unwrap_or(&[]))
                };
                let spent = lock(&self.state)?.spent_s;
                match hit {
                    Some(c) => c,
                    // Neither is remembered: a larger request may still tune.
                    None if elements < SMALL_ELEMENTS => {
                        return Ok(gen_tune::reference(gen, kernel, Source::Small))
                    }
                    None if self.untrusted_timing() => gen_tune::reference(gen, kernel, Source::Gl),
                    None if spent >= TUNE_BUDGET_S => {
                        return Ok(gen_tune::reference(gen, kernel, Source::Budget))
                    }
                    None => {
                        let start = std::time::Instant::now();
                        let c = self.tune_generation(gen, kernel, cache.as_deref());
                        lock(&self.state)?.spent_s += start.elapsed().as_secs_f64();
                        c?
                    }
                }
            }
        };
        lock(&self.state)?.generation.insert(name, choice.clone());
        Ok(choice)
    }

    /// Times `kernel`'s settings and keeps the winner (in the cache file
    /// too, if any). A tuning that fails falls back to the reference
    /// settings with a note, never failing the run.
    fn tune_generation(
        &self,
        gen: &Generator,
        kernel: Kernel,
        cache: Option<&std::path::Path>,
    ) -> Result<GenChoice> {
        let name = gen_tune::kernel_name(kernel);
        self.note(format!(
            "timing the {name} generation kernel's settings (once per device)"
        ))?;
        let entry = match gen_tune::tune(gen, kernel) {
            Ok(e) => e,
            Err(e) => {
                self.note(format!(
                    "could not tune the {name} generation kernel ({e}); using scalar stores, workgroup 256"
                ))?;
                return Ok(gen_tune::reference(gen, kernel, Source::Default));
            }
        };
        let mut done = format!(
            "{}: {} at {:.3} Gsamples/s",
            entry.key, entry.variant, entry.rate
        );
        if let Some(path) = cache {
            if self.persist(path, &entry)? {
                done.push_str(&format!(" (cached in {})", path.display()));
            }
        }
        self.note(done)?;
        Ok(gen_tune::choice_of(kernel, &entry, Source::Tuned))
    }

    /// The generation settings chosen so far.
    pub(crate) fn generation_choices(&self) -> Result<Vec<GenChoice>> {
        Ok(lock(&self.state)?.generation.values().cloned().collect())
    }

    /// Switches the mode; choices already made are forgotten.
    pub fn set_mode(&self, mode: TuneMode) -> Result<()> {
        *lock(&self.mode)? = mode;
        *lock(&self.state)? = State::default();
        Ok(())
    }

    /// The pipelines.
    pub fn kernels(&self) -> &GemmKernels {
        &self.kernels
    }

    /// What this device is called in the cache (`device_key`).
    pub fn device_key(&self) -> String {
        device_key(self.kernels.context().adapter())
    }

    /// Every choice made so far, by shape class.
    pub fn choices(&self) -> Result<Vec<Choice>> {
        Ok(lock(&self.state)?.choices.values().cloned().collect())
    }

    /// Notes worth telling the user (a corrupt cache ignored, a cache that
    /// could not be written), each once.
    pub fn take_notes(&self) -> Result<Vec<String>> {
        Ok(std::mem::take(&mut lock(&self.state)?.notes))
    }

    /// Queues `C (+)= A * op(B)` with the variant chosen for its shape.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        batch: &mut Batch,
        form: GemmForm,
        p: &GemmParams,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
    ) -> Result<()> {
        if p.m == 0 || p.n == 0 {
            return Ok(());
        }
        let v = self.variant_for(form, p.m, p.n, p.k)?;
        self.kernels.record(batch, v, form, p, a, b, c)
    }

    /// The variant for an m x n x k problem, tuning its class if needed.
    pub(crate) fn variant_for(
        &self,
        form: GemmForm,
        m: u32,
        n: u32,
        k: u32,
    ) -> Result<GemmVariant> {
        let class = ShapeClass::of(form, m, n, k);
        // Every recorded product asks: look the variant up without cloning
        // the choice's candidate list.
        let known = lock(&self.state)?.choices.get(&class).map(|c| c.variant);
        match known {
            Some(v) => Ok(v),
            None => Ok(self.choose(form, m, n, k)?.variant),
        }
    }

    /// The choice for an m x n x k problem, tuning its class if needed.
    pub fn choose(&self, form: GemmForm, m: u32, n: u32, k: u32) -> Result<Choice> {
        let class = ShapeClass::of(form, m, n, k);
        if let Some(c) = lock(&self.state)?.choices.get(&class) {
            return Ok(c.clone());
        }
        let mode = lock(&self.mode)?.clone();
        let choice = match mode {
            TuneMode::Fixed(v) => Choice {
                shape: class.label(),
                variant: v,
                source: Source::Fixed,
                gflops: None,
                timed: None,
                candidates: Vec::new(),
            },
            TuneMode::Auto { cache, retune } => {
                let hit = if retune { None } else { self.cached(&class)? };
                let flops = 2 * u64::from(m) * u64::from(n) * u64::from(k);
                let spent = lock(&self.state)?.spent_s;
                match hit {
                    Some(c) => c,
                    // Not remembered for the class: a larger product of it may still tune.
                    None if flops < SMALL_FLOPS => return Ok(untimed(&class, Source::Small)),
                    None if self.untrusted_timing() => untimed(&class, Source::Gl),
                    None if spent >= TUNE_BUDGET_S => {
                        self.note(format!(
                            "GEMM {}: {} untimed (this run's {TUNE_BUDGET_S} s tuning budget \
                             is spent; a later run tunes it)",
                            class.label(),
                            GemmVariant::Tiled64.name()
                        ))?;
                        untimed(&class, Source::Budget)
                    }
                    None => {
                        let start = std::time::Instant::now();
                        let c = self.tune_and_keep(class, (m, n, k), cache.as_deref());
                        lock(&self.state)?.spent_s += start.elapsed().as_secs_f64();
                        c?
                    }
                }
            }
        };
        lock(&self.state)?.choices.insert(class, choice.clone());
        Ok(choice)
    }

    /// Tunes `class` and keeps the result (in the cache file too, if any).
    /// A tuning that fails (the timed problem cannot be allocated, the
    /// reference variant fails) falls back to the reference variant with a
    /// note: tuning only ever speeds a run up, it never stops one.
    fn tune_and_keep(
        &self,
        class: ShapeClass,
        (m, n, k): (u32, u32, u32),
        cache: Option<&std::path::Path>,
    ) -> Result<Choice> {
        self.note(format!(
            "timing {} GEMM variants for shape class {} (once per device)",
            self.kernels.available().len(),
            class.label()
        ))?;
        let entry = match self.tune(class, m, n, k) {
            Ok(e) => e,
            Err(e) => {
                self.note(format!(
                    "could not tune GEMM {} ({e}); using {}",
                    class.label(),
                    GemmVariant::Tiled64.name()
                ))?;
                return Ok(Choice {
                    shape: class.label(),
                    variant: GemmVariant::Tiled64,
                    source: Source::Default,
                    gflops: None,
                    timed: None,
                    candidates: Vec::new(),
                });
            }
        };
        let mut done = format!(
            "GEMM {}: {} at {:.1} GFLOP/s",
            entry.key, entry.variant, entry.rate
        );
        if let Some(path) = cache {
            if self.persist(path, &entry)? {
                done.push_str(&format!(" (cached in {})", path.display()));
            }
        }
        self.note(done)?;
        Ok(choice_of(&entry, Source::Tuned))
    }

    fn load_cache(&self) -> Result<()> {
        let TuneMode::Auto {
            cache: Some(path), ..
        } = lock(&self.mode)?.clone()
        else {
            return Ok(());
        };
        let note = {
            let mut st = lock(&self.state)?;
            if st.cached.is_some() {
                return Ok(());
            }
            let (entries, note) = cached_for(self.kernels.context().adapter(), &path);
            st.cached = Some(entries);
            note
        };
        if let Some(n) = note {
            self.note(n)?;
        }
        Ok(())
    }

    /// A cached choice for `class`, if it names a variant this device runs.
    fn cached(&self, class: &ShapeClass) -> Result<Option<Choice>> {
        self.load_cache()?;
        let st = lock(&self.state)?;
        let key = TuneKey::Gemm(*class);
        Ok(st
            .cached
            .iter()
            .flatten()
            .find(|e| e.key == key)
            .filter(
                |e| matches!(e.variant, Variant::Gemm(v) if v.available(self.kernels.context())),
            )
            .map(|e| choice_of(e, Source::Cached)))
    }

    /// Records `entry` for this process and in the cache file; returns
    /// whether the file took it (a failure is noted, not an error).
    fn persist(&self, path: &std::path::Path, entry: &Entry) -> Result<bool> {
        let saved = match tune_cache::save(path, std::slice::from_ref(entry)) {
            Ok(_) => true,
            Err(e) => {
                self.note(format!(
                    "could not save the tuning to {}: {e}",
                    path.display()
                ))?;
                false
            }
        };
        if let Some(c) = lock(&self.state)?.cached.as_mut() {
            c.retain(|e| e.key != entry.key);
            c.push(entry.clone());
        }
        Ok(saved)
    }

    /// Times every available variant on a problem of `class` and verifies
    /// each result against the reference variant's.
    fn tune(&self, class: ShapeClass, m: u32, n: u32, k: u32) -> Result<Entry> {
        let [m, n, k] = timed_shape(m, n, k);
        let ctx = self.kernels.context();
        let problem = Problem::new(ctx, class.form, m, n, k)?;
        let timer = GpuTimer::new(ctx);
        let flops = 2.0 * f64::from(m) * f64::from(n) * f64::from(k);
        // Each variant first runs on a small problem: a warm-up (which
        // compiles its pipeline) and one timed run.
        let [pm, pn, pk] = capped_shape(m, n, k, PROBE_FLOPS);
        let probe = Problem::new(ctx, class.form, pm, pn, pk)?;
        let probed = |v| -> Result<f64> {
            probe.once(&self.kernels, v)?;
            probe.once(&self.kernels, v)
        };
        let ref_probe = probed(GemmVariant::Tiled64)?;
        // The reference variant runs first; its timing is its candidate's.
        let (ref_secs, reference) = problem.run(&self.kernels, GemmVariant::Tiled64, &timer)?;
        let mut candidates = Vec::new();
        let mut best: Option<(f64, GemmVariant)> = None;
        for v in self.kernels.available() {
            let run = if v == GemmVariant::Tiled64 {
                Ok((ref_secs, reference.clone()))
            } else {
                match probed(v) {
                    Ok(t) if t > PROBE_SLOWDOWN * ref_probe.max(1e-4) => Err(Error::invalid(
                        "GEMM tuning",
                        format!(
                            "dropped untimed: its first run took {t:.4} s on a {pm}x{pn}x{pk} \
                             problem, over {PROBE_SLOWDOWN}x the reference's {ref_probe:.4} s"
                        ),
                    )),
                    Ok(_) => problem.run(&self.kernels, v, &timer),
                    Err(e) => Err(e),
                }
            };
            let measured = match run {
                Ok((secs, out)) if out == reference => {
                    let g = flops / secs.max(1e-12) * 1e-9;
                    if best.is_none_or(|(b, _)| g > b) {
                        best = Some((g, v));
                    }
                    Measured {
                        variant: Variant::Gemm(v),
                        rate: Some(g),
                        rejected: None,
                    }
                }
                Ok((_, out)) => Measured {
                    variant: Variant::Gemm(v),
                    rate: None,
                    rejected: Some(format!(
                        "result differs from {} in {} of {} elements",
                        GemmVariant::Tiled64.name(),
                        out.iter().zip(&reference).filter(|(a, b)| a != b).count(),
                        out.len()
                    )),
                },
                Err(e) => Measured {
                    variant: Variant::Gemm(v),
                    rate: None,
                    rejected: Some(e.to_string()),
                },
            };
            candidates.push(measured);
        }
        let (gflops, v) = best.ok_or_else(|| {
            Error::internal("GEMM tuner", "no variant reproduced the reference result")
        })?;
        Ok(Entry {
            device: self.device_key(),
            key: TuneKey::Gemm(class),
            timed: [m, n, k],
            variant: Variant::Gemm(v),
            rate: gflops,
            unit: Unit::GflopPerS,
            candidates,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

/// Revision of the tuned kernels (GEMM variants, generation stores). Bump it
/// whenever one's code or tile shape changes, so timings cached for the old
/// kernels are not reused (2: the subgroup GEMM shares A by broadcast
/// instead of shuffle, generation gained vec4 stores; 3: the subgroup step
/// runs row by row).
pub(crate) const KERNEL_REVISION: u32 = 3;

/// What an adapter is called in the cache: its identity (name, backend,
/// vendor and device ids, driver and version), deepinit's version and the
/// [`KERNEL_REVISION`], so a driver, deepinit or kernel change tunes again.
pub(crate) fn device_key(a: &super::AdapterSummary) -> String {
    format!(
        "{} | deepinit {} | kernels r{KERNEL_REVISION}",
        a.identity(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The cached entries of adapter `a` in the cache file at `path`, with a note
/// if the file was ignored. Times nothing.
pub(crate) fn cached_for(
    a: &super::AdapterSummary,
    path: &std::path::Path,
) -> (Vec<Entry>, Option<String>) {
    let (entries, note) = tune_cache::load(path);
    let key = device_key(a);
    (
        entries.into_iter().filter(|e| e.device == key).collect(),
        note,
    )
}

/// The reference variant for `class`, untimed (`source` says why).
fn untimed(class: &ShapeClass, source: Source) -> Choice {
    Choice {
        shape: class.label(),
        variant: GemmVariant::Tiled64,
        source,
        gflops: None,
        timed: None,
        candidates: Vec::new(),
    }
}

fn choice_of(e: &Entry, source: Source) -> Choice {
    Choice {
        shape: e.key.to_string(),
        // Entries come from `tune` or `cached`: GEMM variants.
        variant: match e.variant {
            Variant::Gemm(v) => v,
            Variant::Generate(_) => GemmVariant::Tiled64,
        },
        source,
        gflops: Some(e.rate),
        timed: Some(e.timed),
        candidates: e.candidates.clone(),
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal("GEMM tuner", "lock poisoned"))
}

/// Most elements of any one operand of the timed problem (64 MiB of f32).
pub(crate) const TUNE_MAX_ELEMENTS: u64 = 1 << 24;

/// The problem timed for an m x n x k request: halved along its largest
/// dimension until 2 m n k <= [`TUNE_FLOPS`] and no operand (m k, n k, m n)
/// holds more than [`TUNE_MAX_ELEMENTS`].
pub(crate) fn timed_shape(m: u32, n: u32, k: u32) -> [u32; 3] {
    capped_shape(m, n, k, TUNE_FLOPS)
}

/// m x n x k halved along its largest dimension until it is at most
/// `max_flops` (and within the element cap).
fn capped_shape(m: u32, n: u32, k: u32, max_flops: u64) -> [u32; 3] {
    let mut d = [m.max(1), n.max(1), k.max(1)];
    let too_big = |d: &[u32; 3]| {
        let [m, n, k] = d.map(u64::from);
        2 * m * n * k > max_flops
            || m * k > TUNE_MAX_ELEMENTS
            || n * k > TUNE_MAX_ELEMENTS
            || m * n > TUNE_MAX_ELEMENTS
    };
    while too_big(&d) {
        let i = (0..3).max_by_key(|&i| (d[i], i)).unwrap_or(0);
        d[i] = d[i].div_ceil(2);
    }
    d
}

/// Operands of one timed problem, filled with a fixed pseudo-random pattern
/// of non-integer values (so a different rounding would show).
struct Problem {
    form: GemmForm,
    p: GemmParams,
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    c: wgpu::Buffer,
    ctx: GpuContext,
}

impl Problem {
    fn new(ctx: &GpuContext, form: GemmForm, m: u32, n: u32, k: u32) -> Result<Problem> {
        let values = |len: u64, salt: u32| -> Vec<f32> {
            (0..len.max(1) as u32)
                .map(|i| {
                    let h = (i ^ salt).wrapping_mul(0x9e37_79b9).rotate_left(13) ^ salt;
                    (h >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        let (m64, n64, k64) = (u64::from(m), u64::from(n), u64::from(k));
        let (a, b, c) = ctx.scoped("allocating the GEMM tuning problem", || {
            (
                ctx.storage_from("tune A", &values(m64 * k64, 0x1234)),
                ctx.storage_from("tune B", &values(n64 * k64, 0x5678)),
                ctx.storage_from("tune C", &vec![0.0; (m64 * n64) as usize]),
            )
        })?;
        let p = GemmParams {
            m,
            n,
            k,
            lda: k,
            ldb: if form == GemmForm::Nt { k } else { n },
            ldc: n,
            ..Default::default()
        };
        Ok(Problem {
            form,
            p,
            a,
            b,
            c,
            ctx: ctx.clone(),
        })
    }

    /// Wall-clock seconds of one run of variant `v`, to completion.
    fn once(&self, k: &GemmKernels, v: GemmVariant) -> Result<f64> {
        let start = std::time::Instant::now();
        let mut batch = Batch::default();
        k.record(&mut batch, v, self.form, &self.p, &self.a, &self.b, &self.c)?;
        batch.submit(&self.ctx)?;
        // Reading a word back waits for the run to finish.
        self.ctx.read_words(&self.c, 1)?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Median seconds of variant `v`, and its whole result.
    fn run(&self, k: &GemmKernels, v: GemmVariant, timer: &GpuTimer) -> Result<(f64, Vec<u32>)> {
        let mut clear = Batch::default();
        clear.clear(&self.c, 0, None);
        clear.submit(&self.ctx)?;
        let mut batch = Batch::default();
        k.record(&mut batch, v, self.form, &self.p, &self.a, &self.b, &self.c)?;
        let t = timer.time(TUNE_REPEATS, batch)?;
        let out = self
            .ctx
            .read_words(&self.c, u64::from(self.p.m) * u64::from(self.p.n))?;
        Ok((t.median_s, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_classes_round_up_to_powers_of_two() {
        let c = ShapeClass::of(GemmForm::Nn, 100, 256, 257);
        assert_eq!((c.m, c.n, c.k), (128, 256, 512));
        assert_eq!(c.label(), "nn m128 n256 k512");
        let z = ShapeClass::of(GemmForm::Nt, 0, 1, u32::MAX);
        assert_eq!((z.m, z.n, z.k), (1, 1, 1 << 31));
    }

    #[test]
    fn the_timed_problem_is_capped_by_halving_the_largest_dimension() {
        assert_eq!(timed_shape(100, 200, 300), [100, 200, 300]);
        assert_eq!(timed_shape(128, 2048, 2048), [128, 2048, 1024]);
        let big = timed_shape(8192, 8192, 8192);
        assert!(2 * big.iter().map(|&x| u64::from(x)).product::<u64>() <= TUNE_FLOPS);
        // Ties halve the later dimension first (k, then n), keeping the rows.
        assert_eq!(big, [1024, 512, 512]);
        assert_eq!(timed_shape(0, 0, 0), [1, 1, 1]);
        // A long, thin product keeps its operands within the element cap.
        let [m, n, k] = timed_shape(1, 1, 1 << 30).map(u64::from);
        assert!(m * k <= TUNE_MAX_ELEMENTS && n * k <= TUNE_MAX_ELEMENTS);
    }
}
