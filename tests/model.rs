//! `deepinit model` and `deepinit inspect` end to end: checkpoints that the
//! Python `safetensors` package loads and an independent numpy
//! re-implementation of the mapping reproduces, shards written by separate
//! "machines" that equal one run byte for byte, tensor-parallel blocks that
//! are slices of the whole, the GPU against the CPU, bad specs refused, and
//! interrupted runs that leave nothing behind.

mod common;

use common::{bin, run, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every rule kind, layout, split and distribution, at awkward sizes.
const SPEC: &str = r#"
seed = 77

[defaults]
init = "lecun"

[[tensor]]
name = "embed.weight"
shape = [98, 33]
init = "naive:0.02"
split = "rows"

[[tensor]]
name = "block.0.fc.weight"
shape = [130, 66]
init = "he"
dist = "truncated"
split = "rows"

[[tensor]]
name = "block.0.fc.bias"
shape = [130]
init = "zeros"

[[tensor]]
name = "block.0.proj.weight"
shape = [66, 130]
dist = "uniform"
mode = "fan_out"
split = "cols"

[[tensor]]
name = "block.0.conv.weight"
shape = [8, 3, 3, 5]
init = "xavier"
gain = "tanh"
multiplier = 1.5

[[tensor]]
name = "block.0.c_attn.weight"
shape = [66, 198]
layout = "in_out"

[[tensor]]
name = "norm.weight"
shape = [66]
init = "ones"

[[tensor]]
name = "norm.shift"
shape = [5]
init = "constant"
value = 0.3
"#;

fn python_with(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Python with numpy and safetensors, or a loud skip (CI must have them).
fn python(test: &str) -> bool {
    if python_with("numpy, safetensors") {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must provide python3 with numpy and safetensors (.ci/run installs them)"
    );
    eprintln!("SKIPPED {test}: no python3 with numpy and safetensors");
    false
}

fn model(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let spec = dir.join("spec.toml");
    if !spec.exists() {
        std::fs::write(&spec, SPEC).expect("spec");
    }
    let out = dir.join(out);
    let mut args = vec![
        "model",
        "--spec",
        spec.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn python_check(dir: &Path, cap: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/checkpoint_check.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .arg(cap)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn same_files(a: &Path, b: &Path) {
    assert_eq!(listing(a), listing(b));
    for f in listing(a) {
        assert!(
            std::fs::read(a.join(&f)).expect("a") == std::fs::read(b.join(&f)).expect("b"),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn checkpoints_load_in_python_and_match_the_numpy_mapping() {
    if !python("checkpoints_load_in_python_and_match_the_numpy_mapping") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    for (dtype, shards, tp) in [
        ("f32", "1", ("1", "0")),
        ("bf16", "3", ("1", "0")),
        ("f16", "2", ("1", "0")),
        ("f32", "2", ("2", "1")),
        ("bf16", "1", ("2", "0")),
    ] {
        let name = format!("{dtype}-{shards}-tp{}", tp.1);
        let o = model(
            d.path(),
            &name,
            &[
                "--backend",
                "cpu",
                "--dtype",
                dtype,
                "--shards",
                shards,
                "--tp-size",
                tp.0,
                "--tp-rank",
                tp.1,
            ],
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        python_check(&d.path().join(&name), "0");
    }
}

#[test]
fn gpt2_preset_writes_a_loadable_124m_checkpoint() {
    if !python("gpt2_preset_writes_a_loadable_124m_checkpoint") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("ckpt");
    let o = run(&[
        "model",
        "--preset",
        "gpt2",
        "--backend",
        "cpu",
        "--out",
        out.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["parameters"], 124_439_808u64);
    let size = std::fs::metadata(out.join("model.safetensors"))
        .expect("file")
        .len();
    assert_eq!(r["files"][0]["bytes"], size);
    // The first and last 256 elements of every tensor, recomputed in numpy.
    python_check(&out, "256");
    // deepinit inspect judges it against the spec it records.
    let o = run(&["inspect", out.to_str().expect("utf8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["pass"], true);
    assert_eq!(r["tensors"].as_array().map(Vec::len), Some(148));
}

#[test]
fn ranks_reproduce_one_run_byte_for_byte() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut backends = vec!["cpu"];
    if common::gpu("ranks_reproduce_one_run_byte_for_byte").is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let one = format!("one-{backend}");
        let o = model(
            d.path(),
            &one,
            &["--backend", backend, "--dtype", "bf16", "--shards", "3"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        // Three "machines" by flag, and two by a launcher's variables (the
        // second worker takes shard 2 of 3, the first shards 1 and 3).
        let flags = format!("flags-{backend}");
        for rank in ["2", "0", "1"] {
            let o = model(
                d.path(),
                &flags,
                &[
                    "--backend",
                    backend,
                    "--dtype",
                    "bf16",
                    "--shards",
                    "3",
                    "--rank",
                    rank,
                ],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            // The first rank writes the index; the others find it identical.
            let text = String::from_utf8_lossy(&o.stdout);
            let kept = text.contains("kept (identical)");
            assert_eq!(kept, rank != "2", "rank {rank}: {text}");
        }
        same_files(&d.path().join(&one), &d.path().join(&flags));
        let env = format!("env-{backend}");
        for rank in ["1", "0"] {
            let spec = d.path().join("spec.toml");
            let out = d.path().join(&env);
            let o = bin()
                .args(["model", "--spec", spec.to_str().expect("utf8"), "--out"])
                .arg(&out)
                .args(["--backend", backend, "--dtype", "bf16", "--shards", "3"])
                .env("SLURM_PROCID", rank)
                .env("SLURM_NTASKS", "2")
                .output()
                .expect("runs");
            assert!(o.status.success(), "{}", stderr(&o));
        }
        same_files(&d.path().join(&one), &d.path().join(&env));
    }
}

/// The values of tensor `name` in a single-file f32 checkpoint.
fn tensor(file: &Path, name: &str) -> Vec<f32> {
    let h = deepinit::io::safetensors::read_header(file).expect("header");
    let e = h.tensors.iter().find(|t| t.name == name).expect("tensor");
    let bytes = std::fs::read(file).expect("file");
    let start = (h.data_start + e.begin) as usize;
    bytes[start..start + (e.end - e.begin) as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn gpu_checkpoints_agree_with_the_cpu_reference() {
    if common::gpu("gpu_checkpoints_agree_with_the_cpu_reference").is_none() {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    for backend in ["cpu", "gpu"] {
        let o = model(d.path(), backend, &["--backend", backend]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let spec = deepinit::model::spec::read(&d.path().join("spec.toml")).expect("spec");
    let (cpu, gpu) = (
        d.path().join("cpu/model.safetensors"),
        d.path().join("gpu/model.safetensors"),
    );
    for t in &spec.tensors {
        let (c, g) = (tensor(&cpu, &t.name), tensor(&gpu, &t.name));
        match &t.rule {
            deepinit::model::Rule::Draw { init, .. } => {
                let std = t.target().expect("target").expect("drawn").std;
                // Bit for bit, as `deepinit init` checks.
                let cmp = deepinit::rng::cpu::compare(
                    init.dist(),
                    init.dist().kernel_scale(std),
                    spec.seed,
                    t.id(),
                    0,
                    &g,
                );
                assert!(cmp.identical(), "{}: {cmp:?}", t.name);
                assert_eq!(bits(&c), bits(&g), "{}: CPU and GPU files", t.name);
            }
            deepinit::model::Rule::Const(_) => assert_eq!(bits(&c), bits(&g), "{}", t.name),
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn bad_specs_are_refused_with_the_line_and_write_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str); 9] = [
        ("[[tensor]]\nname = \"__metadata__\"\nshape = [2]\ninit = \"zeros\"\n", "reserved"),
        ("[[tensor]]\nname = \"a\"\nshape = [2]\ninit = \"zeros\"\nshap = [3]\n", "shap"),
        (
            "[[tensor]]\nname = \"a\"\nshape = [2]\ninit = \"zeros\"\n\n[[tensor]]\nname = \"a\"\nshape = [2]\ninit = \"ones\"\n",
            "line 6: tensor 'a' is already defined at line 1",
        ),
        ("[[tensor]]\nname = \"a\"\nshape = [2, 0]\ninit = \"he\"\n", "line 1"),
        ("[[tensor]]\nname = \"a\"\nshape = [4]\ninit = \"zeros\"\nmode = \"fan_in\"\n", "does not apply"),
        ("[[tensor]]\nname = \"a\"\nshape = [4, 4]\n", "missing"),
        ("[[tensor]]\nname = \"a\"\nshape = [4, 4]\ninit = \"kaimin\"\n", "did you mean"),
        ("[[tensor]]\nname = \"a\"\nshape = [4, 4]\ninit = \"he\"\ndist = \"cauchy\"\n", "dist"),
        ("{\"tensor\": [{\"name\": \"a\", \"shape\": [3], \"init\": \"he\", \"layout\": \"in_out\"}]}", "tensor #1"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let spec = d.path().join(if text.starts_with('{') {
            format!("{i}.json")
        } else {
            format!("{i}.toml")
        });
        std::fs::write(&spec, text).expect("spec");
        let out = d.path().join(format!("out{i}"));
        let o = run(&[
            "model",
            "--backend",
            "cpu",
            "--spec",
            spec.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "case {i}: {err}");
        assert!(err.contains(want), "case {i}: expected '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "case {i}: nothing may be created");
    }
}

#[test]
fn existing_checkpoints_are_kept_without_force() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = model(d.path(), "c", &["--backend", "cpu", "--shards", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shard = d.path().join("c/model-00001-of-00002.safetensors");
    std::fs::write(&shard, b"mine").expect("write");
    let o = model(d.path(), "c", &["--backend", "cpu", "--shards", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&shard).expect("read"), b"mine");
    let o = model(
        d.path(),
        "c",
        &["--backend", "cpu", "--shards", "2", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&shard).expect("read"), b"mine");
    assert_eq!(
        listing(&d.path().join("c")),
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_nothing_behind() {
    let d = tempfile::tempdir().expect("tempdir");
    let out: PathBuf = d.path().join("ckpt");
    // GPT-2 small on the CPU backend takes seconds: time to interrupt it.
    let mut child = bin()
        .args(["model", "--preset", "gpt2", "--backend", "cpu", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while !(out.is_dir() && listing(&out).iter().any(|f| f.ends_with(".tmp"))) {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary file appeared"
        );
        if child.try_wait().expect("wait").is_some() {
            panic!("the run ended before it could be interrupted");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
    assert!(!out.exists(), "left behind: {:?}", listing(&out));
    assert!(listing(d.path()).is_empty());
}

#[test]
fn print_spec_reads_back_to_the_same_checkpoint() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = run(&[
        "model",
        "--preset",
        "mlp:40x3",
        "--seed",
        "5",
        "--print-spec",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let spec = d.path().join("mlp.toml");
    std::fs::write(&spec, &o.stdout).expect("write");
    let a = d.path().join("a");
    let b = d.path().join("b");
    let o = run(&[
        "model",
        "--preset",
        "mlp:40x3",
        "--seed",
        "5",
        "--backend",
        "cpu",
        "--out",
        a.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "model",
        "--spec",
        spec.to_str().expect("utf8"),
        "--backend",
        "cpu",
        "--out",
        b.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    same_files(&a, &b);
}

#[test]
fn inspect_judges_foreign_files_by_the_closest_rule_and_flags_a_wrong_spec() {
    let d = tempfile::tempdir().expect("tempdir");
    // A checkpoint without deepinit's metadata: LeCun-scaled values of a
    // 256x512 weight written by hand.
    let n = 256 * 512;
    let std = (1.0f64 / 512.0).sqrt() as f32;
    let mut vals = vec![0f32; n];
    deepinit::rng::cpu::fill(deepinit::Dist::Normal, std, 9, 1, 0, &mut vals);
    let entry = deepinit::io::safetensors::Entry {
        name: "fc.weight".into(),
        dtype: deepinit::io::safetensors::Dtype::F32,
        shape: vec![256, 512],
        begin: 0,
        end: 4 * n as u64,
    };
    let mut bytes =
        deepinit::io::safetensors::encode_header(&Default::default(), &[entry]).expect("header");
    bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
    let file = d.path().join("foreign.safetensors");
    std::fs::write(&file, bytes).expect("write");
    let o = run(&["inspect", file.to_str().expect("utf8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["tensors"][0]["note"], "matches lecun");
    // Against a spec that says He, the same tensor fails (exit 3).
    let spec = d.path().join("he.toml");
    std::fs::write(
        &spec,
        "[[tensor]]\nname = \"fc.weight\"\nshape = [256, 512]\ninit = \"he\"\n",
    )
    .expect("spec");
    let o = run(&[
        "inspect",
        file.to_str().expect("utf8"),
        "--spec",
        spec.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
    // Not a safetensors file: a clear error.
    std::fs::write(d.path().join("junk.safetensors"), b"junk").expect("write");
    let o = run(&[
        "inspect",
        d.path().join("junk.safetensors").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a safetensors file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn init_blocks_are_bit_identical_slices_of_the_whole() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut backends = vec!["cpu"];
    if common::gpu("init_blocks_are_bit_identical_slices_of_the_whole").is_some() {
        backends.push("gpu");
    }
    let npy = |name: &str, extra: &[&str], backend: &str| {
        let out = d.path().join(name);
        let mut args = vec![
            "init",
            "--backend",
            backend,
            "--shape",
            "131x77",
            "--seed",
            "21",
            "--tensor-id",
            "5",
            "--dist",
            "normal",
            "--force",
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        deepinit::io::npy::read_2d(&out).expect("npy")
    };
    for backend in backends {
        let whole = npy("whole.npy", &[], backend);
        for (rows, cols) in [
            ("3:130", "0:77"),
            ("0:1", "76:77"),
            ("17:18", "1:64"),
            ("65:131", "13:66"),
        ] {
            let b = npy("block.npy", &["--rows", rows, "--cols", cols], backend);
            let (r0, c0) = (rows.split(':').next(), cols.split(':').next());
            let (r0, c0): (u64, u64) = (
                r0.expect("r").parse().expect("r"),
                c0.expect("c").parse().expect("c"),
            );
            for i in 0..b.rows {
                for j in 0..b.cols {
                    let w = whole.data[((r0 + i) * 77 + c0 + j) as usize];
                    let v = b.data[(i * b.cols + j) as usize];
                    assert_eq!(
                        w.to_bits(),
                        v.to_bits(),
                        "{backend} rows {rows} cols {cols} at ({i}, {j})"
                    );
                }
            }
        }
    }
}
