//! The GEMM tuner: it picks a verified variant, caches it per device and
//! shape class, survives a corrupt cache, and never changes a result. The
//! same for the generation settings (store and workgroup size).

mod common;

use deepinit::act::Activation;
use deepinit::gpu::gemm::{GemmForm, GemmKernels, GemmVariant};
use deepinit::gpu::shaders::{MulHi, Store};
use deepinit::gpu::tune::{ShapeClass, Source, TuneMode, Tuner};
use deepinit::gpu::tune_cache;
use deepinit::init::scheme::Scheme;
use deepinit::net::kernels::NetKernels;
use deepinit::net::NetConfig;
use std::sync::Arc;

fn auto(path: &std::path::Path, retune: bool) -> TuneMode {
    TuneMode::Auto {
        cache: Some(path.to_path_buf()),
        retune,
    }
}

#[test]
fn the_tuner_picks_a_verified_variant_caches_it_and_retunes_on_request() {
    let Some(ctx) =
        common::gpu("the_tuner_picks_a_verified_variant_caches_it_and_retunes_on_request")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tune_cache::file_in(&dir.path().join("cache"));
    let t = Tuner::new(ctx);
    t.set_mode(auto(&path, false)).expect("mode");
    let c = t.choose(GemmForm::Nt, 100, 200, 300).expect("tuned");
    assert_eq!(c.source, Source::Tuned);
    assert_eq!(c.shape, ShapeClass::of(GemmForm::Nt, 100, 200, 300).label());
    assert_eq!(c.shape, "nt m128 n256 k512");
    let available = t.kernels().available();
    assert_eq!(
        c.candidates.len(),
        available.len(),
        "every variant is timed"
    );
    assert!(available.contains(&c.variant));
    // The winner is the fastest verified candidate.
    let best = c
        .candidates
        .iter()
        .filter_map(|m| m.rate)
        .fold(0.0, f64::max);
    assert_eq!(c.gflops, Some(best));
    // On this device every variant reproduces the reference: none is
    // rejected for its result (a variant far slower than the reference on
    // the small first run is dropped untimed, with that reason).
    assert!(
        c.candidates.iter().all(|m| m
            .rejected
            .as_ref()
            .is_none_or(|r| r.contains("dropped untimed"))),
        "{:?}",
        c.candidates
    );
    // Another shape of the same class reuses the choice without timing.
    assert_eq!(
        t.choose(GemmForm::Nt, 127, 129, 257).expect("memo").source,
        Source::Tuned
    );
    assert_eq!(t.choices().expect("choices").len(), 1);

    // A fresh tuner (a later run) reads the cache.
    let (entries, note) = tune_cache::load(&path);
    assert_eq!((entries.len(), note), (1, None));
    assert_eq!(entries[0].device, t.device_key());
    let later = Tuner::new(ctx);
    later.set_mode(auto(&path, false)).expect("mode");
    let again = later.choose(GemmForm::Nt, 100, 200, 300).expect("cached");
    assert_eq!((again.source, again.variant), (Source::Cached, c.variant));
    // --retune times it again and replaces the entry.
    let re = Tuner::new(ctx);
    re.set_mode(auto(&path, true)).expect("mode");
    assert_eq!(
        re.choose(GemmForm::Nt, 100, 200, 300)
            .expect("retuned")
            .source,
        Source::Tuned
    );
    let (entries, _) = tune_cache::load(&path);
    assert_eq!(entries.len(), 1);
    assert!(entries[0].unix_time >= c.candidates.len() as u64);
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_note_and_rewritten() {
    let Some(ctx) = common::gpu("a_corrupt_cache_is_ignored_with_a_note_and_rewritten") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tune_cache::file_in(dir.path());
    std::fs::write(
        &path,
        "{\"format\": \"deepinit-gemm-tune-1\", \"entries\": [{\"dev",
    )
    .expect("write");
    let t = Tuner::new(ctx);
    t.set_mode(auto(&path, false)).expect("mode");
    let c = t
        .choose(GemmForm::Nn, 128, 256, 256)
        .expect("tunes despite the corrupt file");
    assert_eq!(c.source, Source::Tuned);
    let notes = t.take_notes().expect("notes");
    assert!(
        notes.iter().any(|n| n.contains("corrupt tuning cache")),
        "{notes:?}"
    );
    let (entries, note) = tune_cache::load(&path);
    assert_eq!(
        (entries.len(), note),
        (1, None),
        "the file was rewritten whole"
    );
}

#[test]
fn a_cached_entry_for_another_driver_or_an_unknown_variant_is_not_used() {
    let Some(ctx) =
        common::gpu("a_cached_entry_for_another_driver_or_an_unknown_variant_is_not_used")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tune_cache::file_in(dir.path());
    let t = Tuner::new(ctx);
    // Large enough to be timed (a problem under SMALL_FLOPS is not).
    let key = tune_cache::TuneKey::Gemm(ShapeClass::of(GemmForm::Nt, 128, 256, 256));
    let entry = |device: String, variant: GemmVariant| tune_cache::Entry {
        device,
        key,
        timed: [128, 256, 256],
        variant: tune_cache::Variant::Gemm(variant),
        rate: 1e6,
        unit: tune_cache::Unit::GflopPerS,
        candidates: Vec::new(),
        unix_time: 1,
    };
    tune_cache::save(
        &path,
        &[entry(
            format!("{} (older driver)", t.device_key()),
            GemmVariant::Direct,
        )],
    )
    .expect("save");
    t.set_mode(auto(&path, false)).expect("mode");
    assert_eq!(
        t.choose(GemmForm::Nt, 128, 256, 256).expect("c").source,
        Source::Tuned
    );
    // An entry for this very device naming a variant that does not exist
    // (a later version's): unreadable, so skipped.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let path2 = tune_cache::file_in(dir2.path());
    tune_cache::save(&path2, &[entry(t.device_key(), GemmVariant::Direct)]).expect("save");
    let text = std::fs::read_to_string(&path2).expect("read");
    assert_eq!(text.matches("\"direct\"").count(), 1, "{text}");
    std::fs::write(&path2, text.replace("\"direct\"", "\"warp_specialized\"")).expect("write");
    let t2 = Tuner::new(ctx);
    t2.set_mode(auto(&path2, false)).expect("mode");
    let c = t2.choose(GemmForm::Nt, 128, 256, 256).expect("c");
    assert_eq!(c.source, Source::Tuned);
    assert!(GemmVariant::ALL.contains(&c.variant));
}

/// The deep pass's statistics are bit-identical whichever variant runs its
/// matrix multiplies (every variant gives the reference's bits; see
/// `tests/network.rs`), so tuning can never change a verdict.
#[test]
fn the_deep_pass_is_bit_identical_under_every_gemm_variant() {
    let Some(ctx) = common::gpu("the_deep_pass_is_bit_identical_under_every_gemm_variant") else {
        return;
    };
    let g = deepinit::backend::Gpu::new(ctx).expect("gpu");
    let cfg = NetConfig::uniform(Scheme::HE, Activation::Tanh, 96, 4, 40);
    let mut reference: Option<String> = None;
    for v in GemmKernels::new(ctx).available() {
        let tuner = Arc::new(Tuner::new(ctx));
        tuner.set_mode(TuneMode::Fixed(v)).expect("mode");
        let k = NetKernels::with_gemm(ctx, Activation::Tanh, tuner).expect("kernels");
        let r = deepinit::net::device::run(g.generator(), &k, &cfg, None).expect("runs");
        let stats = format!("{:?}", r.layers);
        match &reference {
            None => reference = Some(stats),
            Some(want) => assert_eq!(&stats, want, "{}", v.name()),
        }
    }
}

#[test]
fn the_cli_tunes_once_then_reads_the_cache_and_adapters_shows_it() {
    if common::gpu("the_cli_tunes_once_then_reads_the_cache_and_adapters_shows_it").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let run = |args: &[&str]| {
        common::bin()
            .env("DEEPINIT_GEMM", "auto")
            .env("DEEPINIT_CACHE_DIR", &cache)
            .args(args)
            .output()
            .expect("runs")
    };
    // Large enough to be timed (a problem under SMALL_FLOPS is not).
    let fwd = [
        "forward",
        "--width",
        "512",
        "--depth",
        "2",
        "--batch",
        "64",
        "--backend",
        "gpu",
    ];
    let first = run(&fwd);
    assert!(first.status.success(), "{}", common::stderr(&first));
    let err = common::stderr(&first);
    assert!(err.contains("timing") && err.contains("cached in"), "{err}");
    let second = run(&fwd);
    assert!(second.status.success());
    assert!(
        !common::stderr(&second).contains("timing"),
        "the second run re-tuned"
    );
    let listed = run(&["adapters"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        out.contains("Tuning cached in")
            && out.contains("GEMM nt m64 n512 k512")
            && out.contains("generate normal: "),
        "{out}"
    );
    let retuned = run(&[&fwd[..], &["--retune"]].concat());
    assert!(common::stderr(&retuned).contains("timing"));
}

#[test]
fn bad_gemm_choices_are_refused_with_a_message() {
    for (args, env, want) in [
        (
            vec!["forward", "--gemm", "tiled65"],
            None,
            "invalid --gemm 'tiled65': no such GEMM variant",
        ),
        (
            vec!["forward", "--gemm", "tiled64", "--retune"],
            None,
            "nothing to tune",
        ),
        (vec!["forward"], Some("fast"), "DEEPINIT_GEMM"),
    ] {
        let mut c = common::bin();
        if let Some(e) = env {
            c.env("DEEPINIT_GEMM", e);
        }
        let o = c.args(&args).output().expect("runs");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = common::stderr(&o);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn generation_settings_are_tuned_verified_cached_and_never_change_a_word() {
    use deepinit::gpu::gen_tune;
    use deepinit::gpu::{GenOptions, GenRequest, Generator, Kernel};
    use deepinit::rng::dist::Dist;
    let Some(ctx) =
        common::gpu("generation_settings_are_tuned_verified_cached_and_never_change_a_word")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tune_cache::file_in(&dir.path().join("cache"));
    let gen = Generator::new(ctx).expect("generator");
    let kernel = Kernel::Dist(Dist::Normal);
    let t = Tuner::new(ctx);
    // The library default is fixed: the reference settings, nothing timed.
    let fixed = t.generation(&gen, kernel).expect("fixed");
    assert_eq!(
        (
            fixed.source,
            fixed.setting.store,
            fixed.setting.workgroup_size
        ),
        (Source::Fixed, Store::Scalar, 256)
    );
    t.set_mode(auto(&path, false)).expect("mode");
    let c = t.generation(&gen, kernel).expect("tuned");
    assert_eq!(c.source, Source::Tuned);
    // Both stores at every candidate workgroup size the device allows, with
    // each multiply it has, each verified word for word against the
    // reference settings.
    let l = ctx.limits();
    let max = l
        .max_compute_invocations_per_workgroup
        .min(l.max_compute_workgroup_size_x);
    let sizes = gen_tune::WORKGROUP_SIZES
        .iter()
        .filter(|&&w| w <= max)
        .count();
    let multiplies = if ctx.int64() { 2 } else { 1 };
    assert_eq!(
        c.candidates.len(),
        2 * sizes * multiplies,
        "{:?}",
        c.candidates
    );
    assert!(c.candidates.iter().all(|m| m.rejected.is_none()));
    // The winner's listed rate is its second (finalist) timing, and that is
    // the choice's rate; a candidate outside the finalists may list a higher
    // first timing.
    let winner = c
        .candidates
        .iter()
        .find(|m| m.variant == tune_cache::Variant::Generate(c.setting));
    assert_eq!(winner.and_then(|m| m.rate), c.gsamples, "{c:?}");
    assert!(c.gsamples.is_some_and(|g| g > 0.0));
    assert_eq!(c.timed, Some(gen_tune::TIMED_ELEMENTS));
    // A later run reads it back.
    let later = Tuner::new(ctx);
    later.set_mode(auto(&path, false)).expect("mode");
    let again = later.generation(&gen, kernel).expect("cached");
    assert_eq!((again.source, again.setting), (Source::Cached, c.setting));
    let (entries, _) = tune_cache::load(&path);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].key,
        tune_cache::TuneKey::Generate {
            kernel,
            int64: ctx.int64()
        }
    );
    // The chosen settings give the reference words, at an odd start and
    // count too (where the vec4 store falls back).
    for (start, count) in [(0u64, 40_000u64), (3, 40_001)] {
        let req = GenRequest {
            kernel,
            seed: 9,
            tensor_id: 4,
            start,
            count,
            scale: 0.5,
        };
        let want = gen
            .generate_words(&req, &GenOptions::default())
            .expect("reference");
        let got = gen
            .generate_words(&req, &c.apply(GenOptions::default()))
            .expect("tuned");
        assert!(got == want, "start {start} count {count}");
    }
    // Without native 64-bit integers (--no-int64) the choice is made among
    // the emulated multiplies only and cached apart from the one above.
    if ctx.int64() {
        let narrow = deepinit::gpu::GpuContext::new(&deepinit::gpu::AdapterRequest {
            disable_int64: true,
            ..Default::default()
        })
        .expect("a device without int64");
        let narrow_gen = Generator::new(&narrow).expect("generator");
        let nt = Tuner::new(&narrow);
        nt.set_mode(auto(&path, false)).expect("mode");
        let n = nt.generation(&narrow_gen, kernel).expect("tuned");
        assert_eq!(
            (n.source, n.setting.mulhi),
            (Source::Tuned, MulHi::Emulated)
        );
        assert!(n.candidates.iter().all(|m| matches!(
            m.variant,
            tune_cache::Variant::Generate(g) if g.mulhi == MulHi::Emulated
        )));
        let (entries, _) = tune_cache::load(&path);
        let mut keys: Vec<String> = entries.iter().map(|e| e.key.to_string()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["generate normal", "generate normal (no int64)"]);
        let wide = Tuner::new(ctx);
        wide.set_mode(auto(&path, false)).expect("mode");
        let w = wide.generation(&gen, kernel).expect("cached");
        assert_eq!((w.source, w.setting), (Source::Cached, c.setting));
    }
}

#[test]
fn tuning_is_proportional_small_problems_are_never_timed() {
    let Some(ctx) = common::gpu("tuning_is_proportional_small_problems_are_never_timed") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = tune_cache::file_in(&dir.path().join("cache"));
    let t = Tuner::new(ctx);
    t.set_mode(auto(&path, false)).expect("mode");
    // 2 x 16 x 64 x 64 flops: far below SMALL_FLOPS.
    let c = t.choose(GemmForm::Nt, 16, 64, 64).expect("choice");
    assert_eq!((c.source, c.variant), (Source::Small, GemmVariant::Tiled64));
    assert!(c.candidates.is_empty() && c.gflops.is_none());
    assert!(!path.exists(), "nothing was timed, nothing cached");
    // A timed class: every candidate either timed or dropped with its reason.
    let c = t.choose(GemmForm::Nn, 128, 256, 256).expect("tuned");
    assert_eq!(c.source, Source::Tuned);
    assert!(c
        .candidates
        .iter()
        .all(|m| m.rate.is_some() != m.rejected.is_some()));
}
