//! The import rules of `docs/ARCHITECTURE.md`, checked on the source:
//! every `crate::…` path in a module names a module it may depend on.
//! A new sideways or upward import fails here with the file and the path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules and what each may import (besides itself).
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    const PURE_LEAVES: [&str; 5] = ["pattern", "clock", "progress", "fingerprint", "stop"];
    let pure = || {
        let mut v = PURE_LEAVES.to_vec();
        v.extend(["kato", "selection", "format", "records", "plan"]);
        v
    };
    let with = |mut base: Vec<&'static str>, more: &[&'static str]| {
        base.extend_from_slice(more);
        base
    };
    let mut rules = BTreeMap::new();
    for leaf in PURE_LEAVES {
        rules.insert(leaf, vec![]);
    }
    rules.insert("kato", vec!["pattern"]);
    rules.insert("selection", vec!["kato", "pattern"]);
    rules.insert("format", vec!["kato", "pattern"]);
    rules.insert("records", vec!["format"]);
    rules.insert("plan", vec!["format", "kato"]);
    rules.insert("net", pure());
    rules.insert("source", with(pure(), &["net"]));
    rules.insert("sink", with(pure(), &["net"]));
    rules.insert("flow", with(pure(), &["net", "source", "sink"]));
    rules.insert("cli", vec!["kato"]);
    rules.insert(
        "app",
        with(pure(), &["net", "source", "sink", "flow", "cli"]),
    );
    rules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file relative to `src/` (`flow/diff.rs` is
/// `["flow", "diff"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b` in the text (code and doc links alike: a doc link
/// to a module above is a dependency in the reader's head too).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let path: Vec<String> = rest
            .split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty() && seg.chars().all(|c| !c.is_ascii_uppercase()))
            .collect();
        if !path.is_empty() {
            paths.push(path);
        }
    }
    paths
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_a_module_above_or_beside_it() {
    let src = source_dir();
    let rules = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(top) = module.first() else { continue };
        if top == "lib" || top == "main" {
            continue;
        }
        let may = rules
            .get(top.as_str())
            .unwrap_or_else(|| panic!("{top} (in {}) has no import rule", file.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let target = path[0].as_str();
            if target != top && !may.contains(&target) {
                broken.push(format!("{}: crate::{}", file.display(), path.join("::")));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the map:\n{}",
        broken.join("\n")
    );
}

/// Modules that compose the other modules of their floor: `flow::backups`
/// runs export + verify and restore + diff for a backup directory. They may
/// use their siblings; no sibling may use them (they are not shared).
const COMPOSERS: [(&str, &str); 1] = [("flow", "backups")];

/// Inside `flow/` and `app/`, one command's module does not reach into
/// another's: shared code lives in a module of its own.
#[test]
fn commands_and_flows_do_not_import_each_other() {
    let src = source_dir();
    let mut broken = Vec::new();
    for (floor, shared) in [
        ("flow", &[][..]),
        (
            "app",
            &["common", "options", "report", "progress", "interrupt"][..],
        ),
    ] {
        let mut files = Vec::new();
        rust_files(&src.join(floor), &mut files);
        for file in &files {
            let module = module_of(&src, file);
            let own = module.get(1).cloned().unwrap_or_default();
            let text = std::fs::read_to_string(file).unwrap();
            let mut used: Vec<String> = crate_paths(&text)
                .into_iter()
                .filter(|p| p[0] == floor && p.len() > 1)
                .map(|p| p[1].clone())
                .collect();
            if module.len() == 2 {
                used.extend(
                    text.match_indices("super::")
                        .map(|(at, _)| {
                            text[at + 7..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect()
                        })
                        .filter(|s: &String| {
                            !s.is_empty() && s.chars().all(|c| c.is_lowercase() || c == '_')
                        }),
                );
            }
            for other in used {
                let is_module = src.join(floor).join(format!("{other}.rs")).exists()
                    || src.join(floor).join(&other).is_dir();
                let composes = COMPOSERS.contains(&(floor, own.as_str()));
                if is_module && other != own && !shared.contains(&other.as_str()) && !composes {
                    broken.push(format!("{}: uses {floor}::{other}", file.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "sideways imports:\n{}",
        broken.join("\n")
    );
}

/// clap is the command line's business: the library never derives or
/// parses arguments.
#[test]
fn only_the_command_line_knows_clap() {
    let src = source_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("cli")) && !f.ends_with("main.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("clap::") || text.contains("use clap")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "clap outside cli/: {offenders:?}");
}
