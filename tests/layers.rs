//! The library's modules form one layer order, written down in
//! docs/architecture.md: a module may use only modules below it. Read from
//! the sources' `crate::` paths (comments excluded), so a new upward
//! reference, and with it any cycle, fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The order as docs/architecture.md states it: the line that starts with
/// "`error -> ".
fn documented_order() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).expect("architecture");
    let line = doc
        .lines()
        .find(|l| l.starts_with("`error -> "))
        .expect("docs/architecture.md states the layer order on a line starting with `error -> ");
    line.trim_matches('`')
        .split("->")
        .map(|m| m.trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`src/gpu/tune.rs` ->
/// `gpu`, `src/backend.rs` -> `backend`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(root().join("src")).expect("under src");
    let first = rel.components().next().expect("component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a source file without its comments.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.starts_with("//"))
        .map(|l| l.split(" //").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first path segment of each item of a `{ a::x, b, c::{..} }` group
/// starting just after its `{`.
fn group_heads(after_brace: &str) -> Vec<String> {
    let (mut depth, mut item, mut out) = (1usize, String::new(), Vec::new());
    for c in after_brace.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => break,
            '}' => depth -= 1,
            ',' if depth == 1 => {
                out.push(ident(&item));
                item.clear();
                continue;
            }
            _ => {}
        }
        if depth == 1 {
            item.push(c);
        }
    }
    out.push(ident(&item));
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// Every top-level module (or crate-root item) the code names: through
/// `crate::NAME`, `crate::{A, B::..}` groups (across lines), and `super::`
/// chains that climb to the crate root from a file `depth` modules deep
/// (`src/a.rs` and `src/a/mod.rs`: 1; `src/a/b.rs`: 2).
fn crate_refs(text: &str, depth: usize) -> Vec<String> {
    let code = code_of(text);
    let mut out = Vec::new();
    let mut paths: Vec<&str> = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        paths.push(rest);
    }
    let climb = "super::".repeat(depth);
    if !climb.is_empty() {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(&climb) {
            let before_ok = i == 0 || !rest[..i].ends_with("::");
            rest = &rest[i + climb.len()..];
            if before_ok && !rest.starts_with("super::") {
                paths.push(rest);
            }
        }
    }
    for p in paths {
        if let Some(group) = p.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            let name = ident(p);
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// How many modules deep a source file is (see [`crate_refs`]).
fn depth_of(file: &Path) -> usize {
    let rel = file.strip_prefix(root().join("src")).expect("under src");
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let order = documented_order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut unlisted = std::collections::BTreeSet::new();
    for f in &files {
        let m = module_of(f);
        // The binary (main.rs, cli/) sits above everything; lib.rs only
        // declares and re-exports.
        if ["main", "cli", "lib"].contains(&m.as_str()) {
            continue;
        }
        let Some(&mine) = rank.get(m.as_str()) else {
            unlisted.insert(m);
            continue;
        };
        let text = std::fs::read_to_string(f).expect("read");
        for dep in crate_refs(&text, depth_of(f)) {
            match rank.get(dep.as_str()) {
                Some(&r) if r > mine => upward.push(format!(
                    "{}: {m} uses {dep}, a layer above it",
                    f.strip_prefix(root()).unwrap_or(f).display()
                )),
                Some(_) => {}
                // The error type every layer returns.
                None if dep == "Error" || dep == "Result" => {}
                // Another crate-root re-export would hide its layer.
                None => {
                    unlisted.insert(dep);
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "modules missing from the documented order: {unlisted:?}"
    );
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
}

#[test]
fn the_reader_sees_crate_paths_groups_and_super_chains_and_skips_comments() {
    assert_eq!(
        crate_refs(
            "use crate::gpu::x; // crate::net\n//! crate::app\nlet a = crate::io::f(crate::Error);",
            1
        ),
        ["gpu", "io", "Error"]
    );
    assert_eq!(
        crate_refs("use crate::{\n    app::{a, b},\n    net,\n    self,\n};", 2),
        ["app", "net"]
    );
    // From src/a/b.rs, super::super:: is the crate root; super:: is `a`.
    assert_eq!(
        crate_refs("use super::super::report::x; use super::sibling;", 2),
        ["report"]
    );
    assert_eq!(crate_refs("use super::app::x;", 1), ["app"]);
    assert_eq!(module_of(&root().join("src/gpu/tune.rs")), "gpu");
    assert_eq!(module_of(&root().join("src/backend.rs")), "backend");
    assert_eq!(depth_of(&root().join("src/gpu/mod.rs")), 1);
    assert_eq!(depth_of(&root().join("src/gpu/tune.rs")), 2);
    assert_eq!(depth_of(&root().join("src/backend.rs")), 1);
}
