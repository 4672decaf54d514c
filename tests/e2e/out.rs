//! `get --out DIR`: checked before downloading; copies that share nothing with the cache by
//! default, read-only hard links with `--link`.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use artifact_testkit::assert_same_tree;

use crate::{
    net::{Server, cli, json, ok, stdout, tree},
    support::{code, stderr},
};

#[test]
fn a_non_empty_out_is_refused_before_anything_is_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "n");
    let server = Server::start(&remote, &[]);
    ok(&cli(&remote, &["add", "e1", src.to_str().unwrap()]));
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    fs::write(out_dir.join("mine.txt"), "keep me").unwrap();

    let out =
        cli(&local, &["get", "e1", "--from", &server.url, "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    // Nothing was downloaded, and the directory is as it was.
    let listed = cli(&local, &["--json", "ls"]);
    ok(&listed);
    assert_eq!(stdout(&listed), "", "the artifact was not fetched");
    assert_eq!(fs::read_to_string(out_dir.join("mine.txt")).unwrap(), "keep me");
    let a_file = dir.path().join("a-file");
    fs::write(&a_file, "").unwrap();
    let out = cli(&local, &["get", "e1", "--from", &server.url, "--out", a_file.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn out_is_a_copy_that_a_write_cannot_turn_into_cache_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "w");
    let server = Server::start(&remote, &[]);
    ok(&cli(&remote, &["add", "e2", src.to_str().unwrap()]));
    let out_dir = dir.path().join("out");
    let got = cli(
        &local,
        &["--json", "get", "e2", "--from", &server.url, "--out", out_dir.to_str().unwrap()],
    );
    ok(&got);
    let cached = Path::new(json(&got)["path"].as_str().unwrap()).join("data.txt");
    let placed = out_dir.join("data.txt");
    assert_ne!(fs::metadata(&cached).unwrap().ino(), fs::metadata(&placed).unwrap().ino());
    // The user edits the output: the cache's copy stays as it was.
    fs::write(&placed, "edited").unwrap();
    assert_eq!(fs::read_to_string(&cached).unwrap(), "w".repeat(10_000));
    ok(&cli(&local, &["verify", "e2"]));
}

#[test]
fn link_places_read_only_hard_links_to_the_cache_files() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    let src = tree(dir.path(), "l");
    let server = Server::start(&remote, &[]);
    ok(&cli(&remote, &["add", "e3", src.to_str().unwrap()]));
    let out_dir = dir.path().join("out");
    let got = cli(
        &local,
        &[
            "--json",
            "get",
            "e3",
            "--from",
            &server.url,
            "--out",
            out_dir.to_str().unwrap(),
            "--link",
        ],
    );
    ok(&got);
    assert_same_tree(&src, &out_dir);
    let cached = Path::new(json(&got)["path"].as_str().unwrap()).to_owned();
    for file in ["data.txt", "bin/tool"] {
        let (a, b) =
            (fs::metadata(cached.join(file)).unwrap(), fs::metadata(out_dir.join(file)).unwrap());
        assert_eq!(a.ino(), b.ino(), "{file} is the cache's own inode");
    }
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out_dir.join("data.txt")), 0o444);
    assert_eq!(mode(&out_dir.join("bin/tool")), 0o555);
    // --link means nothing without --out.
    let out = cli(&local, &["get", "e3", "--from", &server.url, "--link"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // The help says what a link shares.
    let help = cli(&local, &["get", "--help"]);
    ok(&help);
    assert!(stdout(&help).contains("share the cache's inodes"), "{}", stdout(&help));
}
