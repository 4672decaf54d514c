//! `cargo xtask tidy`: layout rules that the compiler does not check.
//!
//! - Every Rust file opens with a `//!` line that says what it is.
//! - No `mod.rs`: a module is `foo.rs` plus `foo/`.
//! - Crates depend on each other only along the allowed edges (`STYLE.md`, "Crate
//!   boundaries"), and `artifact-testkit` is never a normal dependency.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::project_root;

/// Which of our crates each crate may depend on (normal and dev dependencies alike, except
/// that `artifact-testkit` may only ever be a dev-dependency).
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("tarstream", &["artifact-testkit"]),
    ("artifact-cache", &["tarstream", "artifact-testkit"]),
    ("artifact-store", &["tarstream", "artifact-cache", "artifact-testkit"]),
    ("artifact-http", &["tarstream", "artifact-cache", "artifact-store", "artifact-testkit"]),
    (
        "artifact-jobs",
        &["tarstream", "artifact-cache", "artifact-store", "artifact-http", "artifact-testkit"],
    ),
    ("artifact-testkit", &["tarstream", "artifact-cache", "artifact-store", "artifact-http"]),
    (
        "artifact",
        &[
            "tarstream",
            "artifact-cache",
            "artifact-store",
            "artifact-http",
            "artifact-jobs",
            "artifact-testkit",
        ],
    ),
    (
        "artifact-e2e",
        &[
            "tarstream",
            "artifact-cache",
            "artifact-store",
            "artifact-http",
            "artifact-jobs",
            "artifact-testkit",
            "artifact",
        ],
    ),
    ("xtask", &[]),
];

const OURS: &[&str] = &[
    "tarstream",
    "artifact-cache",
    "artifact-store",
    "artifact-http",
    "artifact-jobs",
    "artifact-testkit",
    "artifact",
    "artifact-e2e",
];

pub(crate) fn run() -> anyhow::Result<()> {
    let problems = check()?;
    if problems.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    bail!("tidy: {} problem(s)", problems.len())
}

/// Every rule broken, one line each; empty when the tree is tidy.
pub(crate) fn check() -> anyhow::Result<Vec<String>> {
    let root = project_root();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        if file.file_name().is_some_and(|n| n == "mod.rs") {
            problems.push(format!("{rel}: use `foo.rs` + `foo/` instead of `mod.rs`"));
        }
        let text = fs::read_to_string(file).with_context(|| format!("reading {rel}"))?;
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: must start with a `//!` line saying what it is"));
        }
    }
    for manifest in manifests(&root)? {
        problems.extend(check_edges(&root, &manifest)?);
    }
    Ok(problems)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            if name != "target" && name != "data" && name != "proptest-regressions" {
                rust_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn manifests(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = vec![root.join("xtask/Cargo.toml"), root.join("tests/Cargo.toml")];
    for entry in fs::read_dir(root.join("crates"))? {
        let manifest = entry?.path().join("Cargo.toml");
        if manifest.exists() {
            out.push(manifest);
        }
    }
    Ok(out)
}

/// Checks one manifest's dependencies on our crates against [`ALLOWED_EDGES`].
fn check_edges(root: &Path, manifest: &Path) -> anyhow::Result<Vec<String>> {
    let rel = manifest.strip_prefix(root).unwrap_or(manifest).display().to_string();
    let text = fs::read_to_string(manifest).with_context(|| format!("reading {rel}"))?;
    let mut problems = Vec::new();
    let mut package = None;
    let mut section = String::new();
    let mut edges = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            package = Some(value.trim().trim_matches('"').to_owned());
        }
        let kind = if section.ends_with("dev-dependencies") {
            "dev"
        } else if section.ends_with("dependencies") {
            "normal"
        } else {
            continue;
        };
        let dep = key.split('.').next().unwrap_or(key).trim_matches('"');
        if OURS.contains(&dep) {
            edges.push((dep.to_owned(), kind));
        }
    }
    let Some(package) = package else {
        problems.push(format!("{rel}: no [package] name"));
        return Ok(problems);
    };
    let Some((_, allowed)) = ALLOWED_EDGES.iter().find(|(name, _)| *name == package) else {
        problems.push(format!("{rel}: `{package}` is not in xtask/src/tidy.rs ALLOWED_EDGES"));
        return Ok(problems);
    };
    for (dep, kind) in edges {
        if !allowed.contains(&dep.as_str()) {
            problems.push(format!("{rel}: `{package}` must not depend on `{dep}`"));
        } else if dep == "artifact-testkit" && kind != "dev" {
            problems.push(format!("{rel}: `artifact-testkit` may only be a dev-dependency"));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tree_is_tidy() {
        let problems = super::check().expect("tidy could read the tree");
        assert!(problems.is_empty(), "tidy problems:\n{}", problems.join("\n"));
    }
}
