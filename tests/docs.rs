//! The README and docs/ stay linked and short: every relative link names a
//! file that exists and, with `#anchor`, a heading of that file (GitHub's
//! anchor rules); the README stays within a few screens.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, letters,
/// digits, hyphens and underscores kept, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown file's headings (outside code fences).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `(target, line)` of every inline link `](target)` outside code fences.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut fence = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(j) = after.find(')') else { break };
            out.push((after[..j].to_string(), n + 1));
            rest = &after[j..];
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        let dir = file.parent().expect("parent");
        for (target, line) in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest: PathBuf = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let here = format!("{}:{line}: {target}", file.display());
            if !dest.exists() {
                broken.push(format!("{here} (no such file)"));
                continue;
            }
            if let Some(a) = anchor {
                let text = std::fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&text).contains(a) {
                    broken.push(format!("{here} (no heading with that anchor)"));
                }
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: the parser is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_fits_on_a_few_screens_and_names_the_two_commands() {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README");
    let lines = text.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move detail to docs/"
    );
    assert!(text.contains("cargo run --release ") && text.contains("cargo test --release "));
    // .ci/run runs the README's test command.
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("cargo test --release"),
        ".ci/run must run the README's test command"
    );
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(slug(" The RNG mapping (exact)"), "the-rng-mapping-exact");
    assert_eq!(slug(" `deepinit sweep`"), "deepinit-sweep");
    assert_eq!(
        slug(" Transformers at init: `deepinit forward --preset gpt2`"),
        "transformers-at-init-deepinit-forward---preset-gpt2"
    );
    assert_eq!(
        anchors("# A\n```\n# not\n```\n## B c"),
        ["a", "b-c"].map(String::from).into()
    );
    assert_eq!(
        links("[x](a.md#b) and ![y](c.png)\n```\n[z](no.md)\n```"),
        [("a.md#b".to_string(), 1), ("c.png".to_string(), 1)]
    );
}
