//! `artifact get --allow-no-digest` against a fake of the original seed server (a bare tar
//! answer, no headers, 400 "artifact not found" for a missing id).

use std::{fs, path::Path, process::Output};

use artifact_testkit::{TreeBuilder, assert_same_tree, seed::SeedServer};

use crate::support::{artifact, code, run, stderr};

fn cli(root: &Path, args: &[&str]) -> Output {
    run(artifact(["--root".as_ref(), root.as_os_str()]).args(args))
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("{err}: {text:?}"))
}

#[test]
fn get_reads_a_bare_tar_only_with_allow_no_digest() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seed = runtime.block_on(SeedServer::start());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    TreeBuilder::new(&src)
        .file("bin/tool", "#!/bin/sh\necho seed\n")
        .file("data.txt", "seed ".repeat(20_000))
        .dir("empty");
    let mut stream = Vec::new();
    let sent = tarstream_send(&src, &mut stream);
    seed.insert("5eed", stream);
    let local = dir.path().join("local");

    // Strict by default: no digest header, no artifact.
    let out = cli(&local, &["get", "5eed", "--from", seed.url()]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("no x-artifact-digest header"), "{}", stderr(&out));

    let out = cli(&local, &["--json", "get", "5eed", "--from", seed.url(), "--allow-no-digest"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let result = json(&out);
    assert_eq!(result["verified"], false);
    assert_eq!(result["digest"], sent.as_str(), "committed with the digest computed on receipt");
    let path = result["path"].as_str().unwrap();
    assert_same_tree(&src, Path::new(path));

    // A missing id: the seed's 400 "artifact not found" is a miss (exit 3) with the flag.
    let out = cli(&local, &["get", "0bad", "--from", seed.url(), "--allow-no-digest"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let out = cli(&local, &["get", "0bad", "--from", seed.url()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(fs::read_dir(&local).is_ok());
}

/// Writes the tar stream of `src` into `out` and returns its tree digest, as text.
fn tarstream_send(src: &Path, out: &mut Vec<u8>) -> String {
    artifact::tar::send(src, out).expect("send").digest.to_string()
}
