//! The bad-input and fault corpus: each case runs the binary and asserts the
//! exit code, a phrase of the message, that nothing panicked, and that no
//! file or directory was left or changed. Special files are made inside the
//! test's own temporary directory (a FIFO, symlinks); real /dev entries are
//! never touched. Interruptions (SIGINT, SIGTERM) and the no-clobber race run
//! against real writes.

#![cfg(unix)]

mod common;

use common::{bin, run};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Everything under `dir`: relative path -> (kind, bytes) (symlinks by target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(dir).expect("inside").to_path_buf();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let v = if m.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&p).expect("link").display()
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                format!("file {:?}", std::fs::read(&p).expect("read"))
            } else {
                "special".to_string()
            };
            out.insert(rel, v);
        }
    }
    out
}

/// Asserts exit `code`, that stderr contains `phrase`, and that no panic
/// happened.
fn expect(o: &Output, code: i32, phrase: &str) {
    let err = common::stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(phrase), "expected '{phrase}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs each case (arguments, exit code, phrase) on the CPU backend and
/// asserts its outcome (see [`expect`]), that it returned promptly (a bad
/// input never hangs), that `dir` is unchanged and, with `quiet`, that
/// nothing reached stdout.
fn refuse_all(dir: &Path, cases: Vec<(Vec<&str>, i32, &str)>, quiet: bool) {
    let before = snapshot(dir);
    for (mut args, code, phrase) in cases {
        args.extend(["--backend", "cpu"]);
        let start = Instant::now();
        let o = run(&args);
        expect(&o, code, phrase);
        if quiet {
            assert!(
                o.stdout.is_empty(),
                "{args:?} printed before refusing: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{args:?} took too long"
        );
        assert_eq!(snapshot(dir), before, "{args:?} changed the directory");
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        p,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .expect("mkfifo");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn outputs_never_replace_special_files_links_or_existing_files() {
    let d = tempfile::tempdir().expect("tempdir");
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let target = d.path().join("target.npy");
    std::fs::write(&target, b"precious").expect("write");
    let link = d.path().join("link.npy");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let existing = d.path().join("existing.npy");
    std::fs::write(&existing, b"mine").expect("write");
    std::fs::create_dir(d.path().join("sub")).expect("mkdir");
    let before = snapshot(d.path());
    let cases: [(Vec<String>, i32, &str); 8] = [
        (
            vec!["--out".into(), s(&fifo).into(), "--force".into()],
            1,
            "FIFO",
        ),
        (vec!["--out".into(), s(&link).into()], 1, "--force"),
        (
            vec!["--out".into(), s(&existing).into()],
            1,
            "already exists",
        ),
        (
            vec![
                "--out".into(),
                s(&d.path().join("sub")).into(),
                "--force".into(),
            ],
            1,
            "is a directory",
        ),
        (
            vec!["--out".into(), s(&d.path().join("no/such/x.npy")).into()],
            1,
            "does not exist",
        ),
        (
            vec![
                "--out".into(),
                s(&existing).into(),
                "--scheme".into(),
                "naive:1e38".into(),
            ],
            1,
            "overflow f32",
        ),
        (
            vec![
                "--out".into(),
                s(&d.path().join("n.npy")).into(),
                "--chunk-elems".into(),
                "0".into(),
            ],
            2,
            "chunk-elems",
        ),
        (
            vec![
                "--out".into(),
                s(&d.path().join("n.npy")).into(),
                "--dist".into(),
                "gausian".into(),
            ],
            2,
            "possible values: normal, truncated, uniform",
        ),
    ];
    for (extra, code, phrase) in cases {
        let mut args = vec!["init", "--backend", "cpu", "--shape", "8x8"];
        args.extend(extra.iter().map(String::as_str));
        let o = run(&args);
        expect(&o, code, phrase);
        assert_eq!(snapshot(d.path()), before, "{args:?} changed the directory");
    }
    // With --force a symlink is replaced by the file; its target is untouched.
    let o = run(&[
        "init",
        "--backend",
        "cpu",
        "--shape",
        "8x8",
        "--out",
        s(&link),
        "--force",
    ]);
    expect(&o, 0, "");
    assert_eq!(std::fs::read(&target).expect("target"), b"precious");
    assert!(std::fs::symlink_metadata(&link).expect("lstat").is_file());
    // A legal 250-character name works (temporary names do not grow with it).
    let long = d.path().join("x".repeat(246) + ".npy");
    expect(
        &run(&[
            "init",
            "--backend",
            "cpu",
            "--shape",
            "8x8",
            "--out",
            s(&long),
        ]),
        0,
        "",
    );
    assert!(long.is_file());
}

#[test]
fn bad_inputs_are_refused_with_the_cause_and_never_crash() {
    let d = tempfile::tempdir().expect("tempdir");
    let fifo = d.path().join("in.fifo");
    mkfifo(&fifo);
    // A .npy header that declares 10^12 values over a few bytes of data.
    let lie = d.path().join("lie.npy");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }";
    let mut text = dict.to_string();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    h.extend_from_slice(&(text.len() as u16).to_le_bytes());
    h.extend_from_slice(text.as_bytes());
    h.extend_from_slice(&[0u8; 16]);
    std::fs::write(&lie, &h).expect("write");
    // A valid 12 x 8 input.
    let good = d.path().join("x.npy");
    let dest = deepinit::io::output::Destination::check(&good, false).expect("dest");
    let mut w = deepinit::io::npy::NpyWriter::create(&dest, &[12, 8]).expect("create");
    w.write(&[0.5f32; 96]).expect("write");
    w.finish().expect("finish");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["forward", "--input", s(&fifo)],
            1,
            "not a regular file",
        ),
        (vec!["forward", "--input", s(&lie)], 1, "data bytes"),
        (
            vec!["forward", "--input", s(&good), "--batch", "7"],
            1,
            "contradicts --input",
        ),
        (vec!["forward", "--widths", "16"], 1, "at least two"),
        (
            vec!["forward", "--depth", "1000000"],
            2,
            "must be an integer from 1 to 100000",
        ),
        (vec!["forward", "--depth", "0"], 2, "from 1 to 100000"),
        (vec!["forward", "--width", "0", "--depth", "2"], 2, "width"),
        (vec!["sweep", "--depth", "18446744073709551615"], 2, "depth"),
        (
            vec!["sweep", "--multiplier", "0.1:1e12:1e-12"],
            1,
            "at most 1000",
        ),
        (
            vec!["bench", "--repeats", "18446744073709551615"],
            2,
            "repeats",
        ),
        (vec!["bench", "--repeats", "4294967296"], 2, "repeats"),
        (vec!["bench", "--repeats", "0"], 2, "repeats"),
        (vec!["init", "--shape", "0x4"], 2, "'--shape <SHAPE>'"),
        (
            vec!["init", "--shape", "99999999999x99999999999"],
            2,
            "2^64",
        ),
        (
            vec!["init", "--shape", "999999x999999"],
            1,
            "pass --out FILE",
        ),
    ];
    refuse_all(d.path(), cases, false);
}

#[test]
fn refused_runs_create_and_print_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let file = d.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let before = snapshot(d.path());
    let nested = d.path().join("no/such/dir");
    let bench_json = d.path().join("missing/b.json");
    let forward_json = nested.join("f.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["demo", "--out-dir", s(&nested)], "does not exist"),
        (vec!["sweep", "--out-dir", s(&file)], "not a directory"),
        (
            vec!["bench", "--quick", "--json", s(&bench_json)],
            "does not exist",
        ),
        (
            vec!["forward", "--json", s(&forward_json)],
            "does not exist",
        ),
    ];
    for (mut args, phrase) in cases {
        args.extend(["--backend", "cpu"]);
        let o = run(&args);
        expect(&o, 1, phrase);
        assert!(
            o.stdout.is_empty(),
            "{args:?} printed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(snapshot(d.path()), before, "{args:?} changed the directory");
    }
}

#[test]
fn unverified_checks_are_reported_as_not_compared() {
    let o = run(&["init", "--backend", "cpu", "--shape", "1", "--json"]);
    expect(&o, 0, "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["mean_test"].is_null() && v["ks"].is_null() && v["target_in_ci"].is_null());
    assert_eq!(
        v["verdict"]["not_checked"].as_array().map(Vec::len),
        Some(3)
    );
    let o = run(&["init", "--backend", "cpu", "--shape", "1"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains("n/a (mean test"), "{text}");
    let d = tempfile::tempdir().expect("tempdir");
    let json = d.path().join("f.json");
    let o = run(&[
        "forward",
        "--backend",
        "cpu",
        "--width",
        "16",
        "--depth",
        "3",
        "--json",
        s(&json),
    ]);
    expect(&o, 0, "");
    assert!(String::from_utf8_lossy(&o.stdout).contains("not compared"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("JSON");
    assert!(v["runs"][0]["verdict"]["cpu_match"].is_null());
    assert!(v["runs"][0]["verdict"]["max_rel_err_cpu"].is_null());
}

/// Starts a CPU-backend init of a 64M-element tensor into `out` and waits
/// until its temporary file exists. The caller waits for the child.
#[allow(clippy::zombie_processes)]
fn start_big_write(dir: &Path, out: &Path) -> Child {
    let mut child = bin()
        .args([
            "init",
            "--backend",
            "cpu",
            "--shape",
            "8192x8192",
            "--out",
            s(out),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let temp = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".deepinit-"));
        if temp {
            return child;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no temporary file appeared");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn interrupted_runs_leave_nothing_behind() {
    use rustix::process::{kill_process, Pid, Signal};
    for (sig, code) in [(Signal::INT, 130), (Signal::TERM, 143)] {
        let d = tempfile::tempdir().expect("tempdir");
        let out = d.path().join("big.npy");
        let child = start_big_write(d.path(), &out);
        let pid = Pid::from_raw(child.id() as i32).expect("pid");
        kill_process(pid, sig).expect("signal");
        let o = child.wait_with_output().expect("wait");
        expect(&o, code, "interrupted");
        assert!(
            snapshot(d.path()).is_empty(),
            "left: {:?}",
            snapshot(d.path())
        );
    }
}

#[test]
fn a_file_that_appears_during_the_run_is_not_clobbered() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = d.path().join("race.npy");
    let child = start_big_write(d.path(), &out);
    std::fs::write(&out, b"theirs").expect("write");
    let o = child.wait_with_output().expect("wait");
    expect(&o, 1, "already exists");
    assert_eq!(std::fs::read(&out).expect("read"), b"theirs");
    assert_eq!(snapshot(d.path()).len(), 1, "{:?}", snapshot(d.path()));
}

#[test]
fn stale_temporaries_of_dead_runs_are_swept() {
    let d = tempfile::tempdir().expect("tempdir");
    // PID 4194999 is above Linux's largest pid_max: no such process.
    let stale = d.path().join(".deepinit-4194999-7.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).expect("write");
    let mine = d.path().join("notes.tmp");
    std::fs::write(&mine, b"keep").expect("write");
    let out = d.path().join("w.npy");
    expect(
        &run(&[
            "init",
            "--backend",
            "cpu",
            "--shape",
            "4x4",
            "--out",
            s(&out),
        ]),
        0,
        "",
    );
    assert!(!stale.exists() && mine.exists() && out.exists());
}

#[test]
fn readers_never_block_and_outputs_of_one_run_never_collide() {
    let d = tempfile::tempdir().expect("tempdir");
    let fifo = d.path().join("spec.fifo");
    mkfifo(&fifo);
    // A checkpoint directory whose index names a FIFO as a shard, and one
    // whose index is a FIFO.
    let shard_fifo = d.path().join("ck1");
    std::fs::create_dir(&shard_fifo).expect("mkdir");
    mkfifo(&shard_fifo.join("model-00001-of-00001.safetensors"));
    std::fs::write(
        shard_fifo.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}"#,
    )
    .expect("write");
    let index_fifo = d.path().join("ck2");
    std::fs::create_dir(&index_fifo).expect("mkdir");
    mkfifo(&index_fifo.join("model.safetensors.index.json"));
    let outside = d.path().join("ck3");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(
        outside.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"w": "../elsewhere.safetensors"}}"#,
    )
    .expect("write");
    // A spec whose tensor has 2^62 elements: refused while parsing.
    let huge = d.path().join("huge.toml");
    std::fs::write(
        &huge,
        "[[tensor]]\nname = \"w\"\nshape = [2147483648, 2147483648]\ninit = \"he\"\n",
    )
    .expect("write");
    let vast = d.path().join("vast.toml");
    std::fs::write(
        &vast,
        "[[tensor]]\nname = \"w\"\nshape = [4194304, 4194304]\ninit = \"he\"\n",
    )
    .expect("write");
    let x = d.path().join("x.npy");
    let ck = d.path().join("ck");
    let ck_file = ck.join("model.safetensors");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["model", "--spec", s(&fifo), "--out", s(&ck)],
            1,
            "not a regular file",
        ),
        (
            vec!["model", "--config", s(&fifo), "--out", s(&ck)],
            1,
            "not a regular file",
        ),
        (vec!["inspect", s(&fifo)], 1, "not a regular file"),
        (vec!["inspect", s(&shard_fifo)], 1, "not a regular file"),
        (vec!["inspect", s(&index_fifo)], 1, "not a regular file"),
        (
            vec!["inspect", s(&outside)],
            1,
            "outside the checkpoint directory",
        ),
        (
            vec!["inspect", s(&shard_fifo), "--spec", s(&fifo)],
            1,
            "not a regular file",
        ),
        (
            vec!["model", "--spec", s(&huge), "--out", s(&ck)],
            1,
            "more than 2^50 elements",
        ),
        // 64 TiB of f32: more than this file system has, refused up front.
        (
            vec!["model", "--spec", s(&vast), "--out", s(&ck)],
            1,
            "free on that file system",
        ),
        // Two outputs of one run naming one file: refused before any work.
        (
            vec!["init", "--shape", "4x4", "--out", s(&x), "--json", s(&x)],
            1,
            "is both the --json report and the --out tensor",
        ),
        (
            vec![
                "init",
                "--shape",
                "4x4",
                "--out",
                s(&x),
                "--json",
                s(&x),
                "--force",
            ],
            1,
            "give them different names",
        ),
        (
            vec![
                "model",
                "--preset",
                "mlp:8x2",
                "--out",
                s(&ck),
                "--json",
                s(&ck_file),
            ],
            1,
            "the checkpoint's model.safetensors",
        ),
        // Range messages name the flag, negative values included.
        (
            vec![
                "model",
                "--preset",
                "gpt2",
                "--out",
                s(&ck),
                "--tp-size",
                "0",
            ],
            2,
            "'--tp-size <TP_SIZE>': must be an integer from 1 to 2^20",
        ),
        (
            vec![
                "model",
                "--preset",
                "gpt2",
                "--out",
                s(&ck),
                "--tp-rank",
                "2",
                "--tp-size",
                "2",
            ],
            1,
            "must be below --tp-size (2)",
        ),
    ];
    refuse_all(d.path(), cases, true);
}

/// Every numeric flag refuses a negative value, zero where zero is out of
/// range, a value past its top and a non-number with one message: the flag
/// and its range, exit status 2, before anything is printed or written.
#[test]
fn every_numeric_flag_names_its_range_for_any_bad_value() {
    let d = tempfile::tempdir().expect("tempdir");
    let ck = d.path().join("ck");
    let ck = s(&ck);
    // (command and other arguments, flag, its range, bad values)
    let table: Vec<(Vec<&str>, &str, &str, Vec<&str>)> = vec![
        (
            vec!["init", "--shape", "4x4"],
            "--seed",
            "0 to 2^64-1",
            vec!["-1", "18446744073709551616", "x"],
        ),
        (
            vec!["init", "--shape", "4x4"],
            "--tensor-id",
            "0 to 2^32-1",
            vec!["-1", "4294967296"],
        ),
        (
            vec!["init", "--shape", "4x4"],
            "--groups",
            "1 to 2^64-1",
            vec!["-2", "0"],
        ),
        (
            vec!["init", "--shape", "4x4"],
            "--chunk-elems",
            "1 to 2^32",
            vec!["-3", "0", "4294967297"],
        ),
        (
            vec!["init", "--shape", "4x4"],
            "--workgroup-size",
            "32 to 1024",
            vec!["-1", "16", "2048"],
        ),
        (
            vec!["forward"],
            "--width",
            "1 to 2^30",
            vec!["-5", "0", "1073741825"],
        ),
        (
            vec!["forward"],
            "--widths",
            "1 to 2^30",
            vec!["4,-1", "0,4"],
        ),
        (
            vec!["forward"],
            "--depth",
            "1 to 100000",
            vec!["-1", "0", "100001"],
        ),
        (vec!["forward"], "--batch", "1 to 2^30", vec!["-1", "0"]),
        (vec!["forward"], "--seed", "0 to 2^64-1", vec!["-1"]),
        (
            vec!["forward", "--preset", "gpt2"],
            "--seq",
            "2 to 4096",
            vec!["-1", "1", "4097"],
        ),
        (vec!["sweep"], "--depth", "1 to 100000", vec!["-1", "0"]),
        (vec!["sweep"], "--width", "1 to 2^30", vec!["-1", "0"]),
        (vec!["sweep"], "--batch", "2 to 2^30", vec!["-4", "0"]),
        (vec!["sweep"], "--seed", "0 to 2^64-1", vec!["-1"]),
        (vec!["demo"], "--seed", "0 to 2^64-1", vec!["-1"]),
        (
            vec!["model", "--preset", "gpt2", "--out", ck],
            "--shards",
            "1 to 2^32-1",
            vec!["-1", "0"],
        ),
        (
            vec!["model", "--preset", "gpt2", "--out", ck],
            "--rank",
            "0 to 2^32-1",
            vec!["-1"],
        ),
        (
            vec!["model", "--preset", "gpt2", "--out", ck],
            "--tp-size",
            "1 to 2^20",
            vec!["-1", "0", "1048577"],
        ),
        (
            vec!["model", "--preset", "gpt2", "--out", ck],
            "--tp-rank",
            "0 to 2^20-1",
            vec!["-1"],
        ),
        (
            vec!["model", "--preset", "gpt2", "--out", ck],
            "--seed",
            "0 to 2^64-1",
            vec!["-1"],
        ),
        (
            vec!["bench"],
            "--repeats",
            "1 to 1000",
            vec!["-1", "0", "1001"],
        ),
    ];
    // Each bad value twice: as a separate word and as `--flag=value`; the
    // first checks the flag is named, the second the range.
    let mut owned: Vec<(Vec<String>, String)> = Vec::new();
    for (args, flag, range, bad) in &table {
        let base: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for v in bad {
            let mut a = base.clone();
            a.extend([flag.to_string(), v.to_string()]);
            owned.push((a, format!("for '{flag} <")));
            let mut a = base.clone();
            a.push(format!("{flag}={v}"));
            owned.push((a, format!("must be an integer from {range}")));
        }
    }
    let cases: Vec<(Vec<&str>, i32, &str)> = owned
        .iter()
        .map(|(a, p)| (a.iter().map(String::as_str).collect(), 2, p.as_str()))
        .collect();
    refuse_all(d.path(), cases, true);
    refuse_all(
        d.path(),
        vec![
            (
                vec!["inspect", ck, "--alpha", "-1"],
                2,
                "'--alpha <ALPHA>': must be a number greater than 0 and less than 0.5",
            ),
            (
                vec!["inspect", ck, "--alpha", "0.5"],
                2,
                "greater than 0 and less than 0.5",
            ),
        ],
        true,
    );
}

/// Starts `deepinit model` with `args` (CPU backend, into `dir`) and returns
/// once its claim on `dir` (the `.deepinit-writing` marker) exists.
#[allow(clippy::zombie_processes)]
fn start_model(dir: &Path, args: &[&str]) -> Child {
    let mut child = bin()
        .args(["model", "--backend", "cpu", "--out", s(dir)])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".deepinit-writing").exists() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run never claimed {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

#[test]
fn concurrent_writers_of_one_directory_never_mix_checkpoints() {
    let d = tempfile::tempdir().expect("tempdir");
    let ck = d.path().join("ck");
    // 8 tensors of 2048 x 2048 (134 MB): long enough to overlap.
    let job = |seed: &'static str, rank: &'static str| {
        vec![
            "--preset",
            "mlp:2048x8",
            "--shards",
            "2",
            "--seed",
            seed,
            "--rank",
            rank,
        ]
    };
    let first = start_model(&ck, &job("1", "0"));
    // A different checkpoint (another seed) is refused while it runs...
    let o = bin()
        .args(["model", "--backend", "cpu", "--out", s(&ck)])
        .args(job("2", "1"))
        .output()
        .expect("run");
    expect(
        &o,
        1,
        "another deepinit run is writing a different checkpoint",
    );
    // ... the other rank of the same job is not.
    let o = bin()
        .args(["model", "--backend", "cpu", "--out", s(&ck)])
        .args(job("1", "1"))
        .output()
        .expect("run");
    expect(&o, 0, "");
    let o = first.wait_with_output().expect("wait");
    expect(&o, 0, "");
    let mut names: Vec<String> = snapshot(&ck)
        .into_keys()
        .map(|p| p.display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
    let o = run(&["inspect", s(&ck)]);
    expect(&o, 0, "");
    // An interrupted checkpoint run leaves nothing, its claim included.
    use rustix::process::{kill_process, Pid, Signal};
    let fresh = d.path().join("fresh");
    let child = start_model(&fresh, &["--preset", "mlp:2048x8"]);
    let pid = Pid::from_raw(child.id() as i32).expect("pid");
    kill_process(pid, Signal::INT).expect("signal");
    let o = child.wait_with_output().expect("wait");
    expect(&o, 130, "interrupted");
    assert!(!fresh.exists(), "left: {:?}", snapshot(&fresh));
}

#[test]
fn messages_name_the_flag_and_verdicts_never_mislead() {
    let d = tempfile::tempdir().expect("tempdir");
    // A checkpoint with an all-NaN tensor and an empty one.
    let ck = d.path().join("odd.safetensors");
    let nan: Vec<u8> = [f32::NAN; 8].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "nan.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 4], &nan)
                .expect("view"),
        ),
        (
            "empty.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![0, 4], &[])
                .expect("view"),
        ),
    ];
    safetensors::serialize_to_file(views, None, &ck).expect("write");
    let o = run(&["inspect", s(&ck)]);
    expect(&o, 3, "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("8 non-finite values"), "{text}");
    assert!(text.contains("empty"), "{text}");
    assert!(!text.contains("NaN"), "{text}");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["sweep", "--batch", "7"],
            1,
            "a sweep needs an even batch",
        ),
        (
            vec!["init", "--shape", "4x4", "--multiplier", "1e308"],
            1,
            "--multiplier 1e308",
        ),
    ];
    refuse_all(d.path(), cases, true);
    // An adapter name matching nothing: the advice fits what exists.
    let o = run(&[
        "--adapter",
        "no-such-adapter-name",
        "init",
        "--shape",
        "4x4",
    ]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    if err.contains("available:") {
        assert!(
            err.contains("deepinit adapters") && !err.contains("install"),
            "{err}"
        );
    } else {
        assert!(err.contains("install a Vulkan driver"), "{err}");
    }
}

#[test]
fn json_to_the_standard_output_by_name_and_links_to_devices_are_never_advised_over() {
    let d = tempfile::tempdir().expect("tempdir");
    // --json naming the file stdout is redirected to writes the report there
    // (as /dev/stdout would), instead of refusing an existing file.
    let out = d.path().join("report.json");
    let f = std::fs::File::create(&out).expect("create");
    let o = bin()
        .args([
            "init",
            "--shape",
            "4x4",
            "--backend",
            "cpu",
            "--json",
            s(&out),
        ])
        .stdout(f)
        .output()
        .expect("run");
    expect(&o, 0, "");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("the report");
    assert_eq!(v["verdict"]["pass"], true, "{v}");
    // A link to a FIFO: refused, and --force is not the advice (it would
    // replace the link, never write where it points).
    let fifo = d.path().join("sink.fifo");
    mkfifo(&fifo);
    let link = d.path().join("w.npy");
    std::os::unix::fs::symlink(&fifo, &link).expect("symlink");
    let before = snapshot(d.path());
    let o = run(&[
        "init",
        "--shape",
        "4x4",
        "--backend",
        "cpu",
        "--out",
        s(&link),
    ]);
    expect(&o, 1, "never writes through links");
    assert!(
        !common::stderr(&o).contains("--force"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(snapshot(d.path()), before);
}
