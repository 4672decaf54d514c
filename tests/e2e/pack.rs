//! `artifact pack DIR` and `artifact unpack DIR`: round trips, refusals, clean failure.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

use artifact::tar::digest_dir;
use artifact_testkit::{Snapshot, TreeBuilder, assert_same_tree, modes, snapshot};

use crate::support::{self, artifact_bin, code, run_with_stdin as run, stderr};

/// Runs `artifact args...` with `input` on stdin.
fn artifact(args: &[&str], input: &[u8]) -> Output {
    run(&mut support::artifact(args), input)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(root: &Path) -> TreeBuilder {
    let tree = TreeBuilder::new(root);
    tree.file("src/lib.rs", "pub fn f() {}\n")
        .exec("bin/tool", "#!/bin/sh\n")
        .file(format!("{}/deep.o", "nested/".repeat(20)), vec![9u8; 100_000])
        .dir("empty")
        .symlink("latest", "bin/tool");
    tree
}

fn json_digest(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let at = text.find("\"digest\":\"").expect("a digest in the JSON") + 10;
    text[at..at + 64].to_owned()
}

#[test]
fn pack_then_unpack_round_trips_with_the_same_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    let packed = artifact(&["--json", "pack", path(src.path())], b"");
    assert!(packed.status.success(), "{}", stderr(&packed));
    let dst = tmp.path().join("a/b/dst-absent-parent-is-an-error");
    let failed = artifact(&["unpack", path(&dst)], &packed.stdout);
    assert!(!failed.status.success(), "unpack creates DIR, not its parents");

    let dst = tmp.path().join("dst");
    let unpacked = artifact(&["--json", "unpack", path(&dst)], &packed.stdout);
    assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    assert_same_tree(src.path(), &dst);
    let want = digest_dir(src.path()).unwrap().digest.to_string();
    assert_eq!(json_digest(&packed.stderr), want, "pack --json reports on stderr");
    assert_eq!(json_digest(&unpacked.stdout), want);

    // An existing empty directory is fine too.
    let empty = tmp.path().join("empty-dst");
    fs::create_dir(&empty).unwrap();
    assert!(artifact(&["unpack", path(&empty)], &packed.stdout).status.success());
    assert_same_tree(src.path(), &empty);
}

#[test]
fn gnu_tar_reads_pack_and_unpack_reads_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    let packed = artifact(&["pack", path(src.path())], b"");
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let tar = run(Command::new("tar").args(["-xf", "-", "-C", path(&out)]), &packed.stdout);
    assert!(tar.status.success(), "{}", stderr(&tar));
    assert_same_tree(src.path(), &out);

    let stream = run(Command::new("tar").args(["-cf", "-", "-C", path(src.path()), "."]), b"");
    let dst = tmp.path().join("dst");
    let unpacked = artifact(&["unpack", path(&dst)], &stream.stdout);
    assert!(unpacked.status.success(), "{}", stderr(&unpacked));
    assert_same_tree(src.path(), &dst);
}

#[test]
fn results_do_not_depend_on_either_sides_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let bin = artifact_bin().to_str().unwrap();
    let script = format!(
        "set -e; umask 077; mkdir -p {src}/d; echo x > {src}/d/f; printf '#!' > {src}/x; \
         chmod u+x {src}/x; {bin} pack {src} | {bin} unpack {dst}",
        src = path(&src),
        dst = path(&dst),
    );
    let out = run(Command::new("sh").args(["-c", &script]), b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(modes(&src)[Path::new("d/f")], 0o600, "the source really had a strict umask");
    let got = modes(&dst);
    assert_eq!(got[Path::new("d")], 0o755);
    assert_eq!(got[Path::new("d/f")], 0o644);
    assert_eq!(got[Path::new("x")], 0o755);
}

/// A one-entry ustar stream with the given name, its end marker included.
fn stream_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = entry(name, data);
    out.extend_from_slice(&[0; 1024]);
    out
}

/// One ustar entry: header, data, padding.
fn entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..265].copy_from_slice(b"ustar\x0000");
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn outside(tmp: &Path) -> Snapshot {
    let mut snap = snapshot(tmp);
    snap.retain(|p, _| !p.starts_with("dst"));
    snap
}

#[track_caller]
fn assert_one_line_failure(out: &Output, status: i32, needle: &str) {
    assert_eq!(code(out), status, "{}", stderr(out));
    let stderr = stderr(out);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.starts_with("artifact: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr:?} should mention {needle:?}");
}

#[test]
fn hostile_or_broken_input_fails_with_one_line_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    TreeBuilder::new(tmp.path()).file("sentinel", "keep");
    let before = outside(tmp.path());
    let mut good = stream_with("ok", b"fine");
    good.truncate(good.len() - 512);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("dot-dot", [entry("a", b"a"), stream_with("../escape", b"x")].concat(), "'..'"),
        ("absolute", stream_with(&format!("{}/pwned", path(tmp.path())), b"x"), "absolute"),
        ("truncated", good, "truncated"),
        ("garbage", vec![7u8; 2048], "checksum"),
    ];
    for (what, stream, needle) in cases {
        // DIR absent: created, then removed again.
        let dst = tmp.path().join("dst");
        let out = artifact(&["unpack", path(&dst)], &stream);
        assert_one_line_failure(&out, 1, needle);
        assert!(!dst.exists(), "{what}: the directory unpack created is removed");
        // DIR present and empty: left empty.
        fs::create_dir(&dst).unwrap();
        let out = artifact(&["unpack", path(&dst)], &stream);
        assert_one_line_failure(&out, 1, needle);
        assert_eq!(fs::read_dir(&dst).unwrap().count(), 0, "{what}: DIR is emptied again");
        fs::remove_dir(&dst).unwrap();
        assert_eq!(outside(tmp.path()), before, "{what}: something outside DIR changed");
    }
}

#[test]
fn unpack_refuses_a_non_empty_dir_and_pack_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let full = TreeBuilder::new(tmp.path().join("full"));
    full.file("keep", "me");
    let before = snapshot(full.path());
    let out = artifact(&["unpack", path(full.path())], &stream_with("x", b""));
    assert_one_line_failure(&out, 2, "not empty");
    assert_eq!(snapshot(full.path()), before);

    let out = artifact(&["unpack", path(&full.join("keep"))], &stream_with("x", b""));
    assert_one_line_failure(&out, 2, "not a directory");

    let out = artifact(&["pack", path(&tmp.path().join("missing"))], b"");
    assert_one_line_failure(&out, 2, "not a directory");
    assert!(out.stdout.is_empty());
}
