//! The documentation stands alone: it names only files the repository has, refers to no
//! outside document, and its figures agree from one page to another.

use std::{fs, path::Path};

/// The workspace root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root")
}

/// README.md and docs/*.md, with their text.
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_owned(), read("README.md"))];
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
            pages.push((name.clone(), read(&name)));
        }
    }
    pages
}

fn read(name: &str) -> String {
    fs::read_to_string(root().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The `code spans` of `text`.
fn code_spans(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

#[test]
fn docs_refer_to_no_outside_document() {
    for (name, text) in pages() {
        for word in ["SPEC", "../shared", "§"] {
            assert!(!text.contains(word), "{name} mentions {word:?}");
        }
    }
}

#[test]
fn paths_the_docs_name_exist() {
    let roots = ["README.md", "docs/", "crates/", "xtask/", "tests/", "fuzz/", ".ci/"];
    let mut checked = 0;
    for (name, text) in pages() {
        for span in code_spans(&text) {
            let looks_like_a_path = roots.iter().any(|root| span.starts_with(root))
                && !span.contains([' ', '*', '<', '{']);
            if looks_like_a_path {
                checked += 1;
                let path = span.trim_end_matches('/');
                // ARCHITECTURE.md names a crate's files under its heading, relative to it.
                let in_a_crate = || {
                    fs::read_dir(root().join("crates"))
                        .unwrap()
                        .any(|krate| krate.unwrap().path().join(path).exists())
                };
                assert!(
                    root().join(path).exists() || in_a_crate(),
                    "{name} names `{span}`, which is not there"
                );
            }
        }
    }
    assert!(checked > 10, "only {checked} paths found: is the check still looking?");
}

#[test]
fn figures_agree_between_operations_and_benchmarks() {
    let operations = read("docs/operations.md");
    let benchmarks = read("docs/benchmarks.md");
    // "(946 ms for 100,000 artifacts ...": the first `usage()` of the cache benchmark.
    let index = figure_before(&operations, " for 100,000 artifacts");
    assert!(
        benchmarks.contains(&format!("reads every metadata file once) | {index} |")),
        "operations.md says {index} to index 100,000 artifacts; benchmarks.md disagrees"
    );
    // "about 0.82 MiB of server RSS per concurrent download", measured from 1 to 64 streams.
    let per_stream = figure_before(&operations, " of server RSS per concurrent download");
    assert!(
        benchmarks.contains(&format!("{per_stream} from 1 to 64")),
        "operations.md says {per_stream} per stream; benchmarks.md disagrees"
    );
}

/// The figure (number and unit) just before `marker` in `text`.
fn figure_before<'t>(text: &'t str, marker: &str) -> &'t str {
    let end = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"));
    let head = &text[..end];
    let unit_start = head.rfind(' ').unwrap();
    let number_start = head[..unit_start].rfind([' ', '(']).unwrap() + 1;
    &head[number_start..]
}
