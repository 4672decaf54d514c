//! The local cache commands: `add`, `ls`, `rm`, `gc`, `verify`, and their exit statuses.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use artifact::cache::{ArtifactId, Cache};
use artifact_testkit::TreeBuilder;

use crate::{
    net::statuses,
    support::{artifact, code, run, stderr},
};

const ID: &str = "00ff00ff";

/// A small tree to import: nested files, an executable, a symlink, an empty directory.
fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("readme.txt"), "hello").unwrap();
    std::os::unix::fs::symlink("bin/tool", src.join("tool")).unwrap();
    src
}

/// Runs `artifact --root <root> args...`.
fn cli(root: &Path, args: &[&str]) -> std::process::Output {
    run(artifact(["--root".as_ref(), root.as_os_str()]).args(args))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn add_then_ls_json_describes_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    let out = cli(&root, &["add", ID, src.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("added {ID}: 2 files")), "{}", stdout(&out));

    let out = cli(&root, &["ls", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    let meta = &lines[0];
    assert_eq!(meta["id"], ID);
    assert_eq!(meta["files"], 2);
    assert_eq!(meta["dirs"], 2);
    assert_eq!(meta["symlinks"], 1);
    assert_eq!(meta["size"], 5 + 18);
    let digest = tarstream_digest(&src);
    assert_eq!(meta["digest"], digest);
    assert!(meta["created"].as_str().unwrap().ends_with('Z'));

    // The library sees the same artifact, with the same tree.
    let cache = Cache::open(&root).unwrap();
    let reader = cache.get(&ID.parse::<ArtifactId>().unwrap()).unwrap();
    assert_eq!(fs::read_to_string(reader.path().join("readme.txt")).unwrap(), "hello");
    assert!(reader.path().join("empty").is_dir());
    assert_eq!(fs::read_link(reader.path().join("tool")).unwrap(), Path::new("bin/tool"));

    let out = cli(&root, &["ls"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with(ID), "{text}");
}

fn tarstream_digest(dir: &Path) -> String {
    artifact::tar::digest_dir(dir).unwrap().digest.to_string()
}

#[test]
fn a_second_add_says_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    assert_eq!(code(&cli(&root, &["add", ID, src.to_str().unwrap()])), 0);
    let out = cli(&root, &["add", &ID.to_uppercase(), src.to_str().unwrap()]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn a_malformed_id_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    for args in [
        vec!["add", "xyz", src.to_str().unwrap()],
        vec!["add", "abc", src.to_str().unwrap()],
        vec!["rm", "../etc"],
        vec!["verify", ""],
    ] {
        let out = cli(&root, &args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("artifact id"), "{args:?}: {}", stderr(&out));
    }
    // Nothing was created for a bad id.
    assert!(
        !root.join("objects").exists() || fs::read_dir(root.join("objects")).unwrap().count() == 0
    );
}

#[test]
fn rm_and_verify_of_an_absent_id_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    for args in [["rm", ID], ["verify", ID]] {
        let out = cli(&root, &args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    }
}

#[test]
fn rm_removes_and_a_reader_elsewhere_makes_it_busy() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    assert_eq!(code(&cli(&root, &["add", ID, src.to_str().unwrap()])), 0);
    let cache = Cache::open(&root).unwrap();
    let reader = cache.get(&ID.parse().unwrap()).unwrap();
    let out = cli(&root, &["rm", ID]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    drop(reader);
    let out = cli(&root, &["rm", ID]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&cli(&root, &["verify", ID])), 3);
}

#[test]
fn verify_detects_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    assert_eq!(code(&cli(&root, &["add", ID, src.to_str().unwrap()])), 0);
    assert_eq!(code(&cli(&root, &["add", "01", src.to_str().unwrap()])), 0);
    let out = cli(&root, &["verify", ID]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let file = root.join(format!("objects/{ID}/tree/readme.txt"));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&file, "hellO").unwrap();
    let out = cli(&root, &["verify", ID]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    // Verifying everything checks the others too and still fails.
    let out = cli(&root, &["--json", "verify"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert_eq!(statuses(&out), [(ID.into(), "corrupt".into()), ("01".into(), "ok".into())]);
}

#[test]
fn gc_evicts_down_to_the_size_given() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = source(dir.path());
    for id in ["01", "02", "03"] {
        assert_eq!(code(&cli(&root, &["add", id, src.to_str().unwrap()])), 0);
    }
    let out = cli(&root, &["--json", "gc", "--max-size", "50B"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["evicted"], serde_json::json!(["01"]));
    assert_eq!(report["usage"]["artifacts"], 2);
    let out = cli(&root, &["gc", "--max-size", "lots"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid size"), "{}", stderr(&out));
}

#[test]
fn add_refuses_what_a_transfer_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let src = dir.path().join("escape");
    TreeBuilder::new(&src).file("ok.txt", "fine").symlink("out", "../../etc/passwd");
    let out = cli(&root, &["add", ID, src.to_str().unwrap()]);
    // Refused as a transfer refuses it (exit 1, a bad input), naming the link and its target,
    // with nothing on standard output.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("artifact: importing {} as {ID}: ", src.display())), "{err}");
    assert!(
        err.contains(r#"symlink "out" points outside the tree (target "../../etc/passwd")"#),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    // Nothing was added, and nothing of the attempt is left behind.
    let cache = Cache::open(&root).unwrap();
    assert!(cache.get(&ID.parse().unwrap()).unwrap_err().is_not_found());
    for dir in ["objects", "tmp", "trash", "locks"] {
        let left: Vec<_> = fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}/ keeps {left:?}");
    }
    assert_eq!(stdout(&cli(&root, &["ls", "--json"])), "");
    let out = cli(&root, &["add", ID, dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}
