//! GNU tar, bsdtar and Python's tarfile: they extract what `send` writes into the same tree,
//! and `receive` accepts what they write (ustar, gnu and pax formats).
//!
//! These tools are test requirements (`.ci/run` installs bsdtar from libarchive-tools); a
//! missing one fails the test with the package to install.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use artifact_testkit::{TreeBuilder, assert_same_tree};

/// A tree with what interop must survive: long and unicode names, a long symlink target, an
/// executable, an empty directory, nesting, an empty file.
fn fixture(root: &Path) -> TreeBuilder {
    let tree = TreeBuilder::new(root);
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}/{}", "日本語".repeat(10), "n".repeat(150));
    tree.file("src/main.rs", "fn main() {}\n")
        .exec("bin/tool", "#!/bin/sh\necho hi\n")
        .dir("empty/nested")
        .file("empty-file", "")
        .file("unicode/héllo wörld.txt", "ü")
        .file(&long_name, vec![42u8; 70_000])
        .symlink("latest", "bin/tool")
        .symlink("deep/link", format!("../{long_dir}/{}", "日本語".repeat(10)))
        .symlink("dangling", "no/such/thing");
    tree
}

/// Runs `program args...` with `input` on stdin; returns stdout; panics with stderr on failure.
fn run(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| match program {
            "bsdtar" => panic!("bsdtar is needed (Debian: apt-get install libarchive-tools): {e}"),
            _ => panic!("{program} is needed: {e}"),
        });
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const PY_EXTRACT: &str = "
import sys, tarfile
kw = {'filter': 'tar'} if hasattr(tarfile, 'tar_filter') else {}
with tarfile.open(fileobj=sys.stdin.buffer, mode='r|') as t:
    t.extractall(sys.argv[1], **kw)
";

const PY_CREATE: &str = "
import sys, tarfile
fmt = {'gnu': tarfile.GNU_FORMAT, 'pax': tarfile.PAX_FORMAT, 'ustar': tarfile.USTAR_FORMAT}[sys.argv[2]]
with tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=fmt) as t:
    t.add(sys.argv[1], arcname='.')
";

#[test]
fn gnu_tar_bsdtar_and_python_extract_what_send_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    let mut stream = Vec::new();
    tarstream::send(src.path(), &mut stream).unwrap();
    for tool in ["tar", "bsdtar", "python3"] {
        let out = tmp.path().join(format!("out-{tool}"));
        std::fs::create_dir(&out).unwrap();
        let dir = out.to_str().unwrap();
        match tool {
            "python3" => run(tool, &["-c", PY_EXTRACT, dir], &stream),
            _ => run(tool, &["-xf", "-", "-C", dir], &stream),
        };
        assert_same_tree(src.path(), &out);
    }
    // They also list exactly our entries, with no complaint about the format.
    let listing = String::from_utf8(run("tar", &["-tvf", "-"], &stream)).unwrap();
    assert!(listing.contains("0/0"), "{listing}");
    assert!(listing.lines().all(|l| l.contains("1970-01-01 00:00")), "{listing}");
}

fn check_receive(src: &Path, stream: &[u8], what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    let got = tarstream::receive(&dst, stream).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_same_tree(src, &dst);
    assert_eq!(got.digest, tarstream::digest_dir(src).unwrap().digest, "{what}");
    assert_eq!(got.stream_bytes, stream.len() as u64, "{what}");
}

#[test]
fn receive_accepts_gnu_tar_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    let dir = src.path().to_str().unwrap();
    for format in ["gnu", "oldgnu", "pax", "posix"] {
        let stream = run("tar", &[&format!("--format={format}"), "-cf", "-", "-C", dir, "."], b"");
        check_receive(src.path(), &stream, &format!("GNU tar --format={format}"));
        let sorted = run(
            "tar",
            &[&format!("--format={format}"), "--sort=name", "-cf", "-", "-C", dir, "."],
            b"",
        );
        check_receive(src.path(), &sorted, &format!("GNU tar --format={format} --sort=name"));
    }
    let short = short_fixture(&tmp.path().join("short"));
    let dir = short.path().to_str().unwrap();
    for format in ["ustar", "v7"] {
        let stream = run("tar", &[&format!("--format={format}"), "-cf", "-", "-C", dir, "."], b"");
        if format == "v7" {
            // Old v7 headers carry no magic: refused as an unknown format.
            let err = tarstream::receive(&tmp.path().join("v7"), &stream[..]).unwrap_err();
            assert!(matches!(err, tarstream::Error::BadHeader { .. }), "{err:?}");
        } else {
            check_receive(short.path(), &stream, "GNU tar --format=ustar");
        }
    }
}

/// A tree whose names fit plain ustar.
fn short_fixture(root: &Path) -> TreeBuilder {
    let tree = TreeBuilder::new(root);
    tree.file("a/b.txt", "b").exec("x", "#!").dir("e").symlink("l", "a/b.txt");
    tree
}

#[test]
fn receive_accepts_bsdtar_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    let dir = src.path().to_str().unwrap();
    for format in ["pax", "gnutar", "paxr"] {
        let stream = run("bsdtar", &["--format", format, "-cf", "-", "-C", dir, "."], b"");
        check_receive(src.path(), &stream, &format!("bsdtar --format {format}"));
    }
    let short = short_fixture(&tmp.path().join("short"));
    let stream = run(
        "bsdtar",
        &["--format", "ustar", "-cf", "-", "-C", short.path().to_str().unwrap(), "."],
        b"",
    );
    check_receive(short.path(), &stream, "bsdtar --format ustar");
}

#[test]
fn receive_accepts_python_tarfile_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture(&tmp.path().join("src"));
    for format in ["gnu", "pax"] {
        let stream = run("python3", &["-c", PY_CREATE, src.path().to_str().unwrap(), format], b"");
        check_receive(src.path(), &stream, &format!("python tarfile {format}"));
    }
    let short = short_fixture(&tmp.path().join("short"));
    let stream = run("python3", &["-c", PY_CREATE, short.path().to_str().unwrap(), "ustar"], b"");
    check_receive(short.path(), &stream, "python tarfile ustar");
}

#[test]
fn receive_materialises_hard_links_from_other_tars() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a", "shared").hard_link("d/b", "a").exec("x", "#!");
    let dir = src.path().to_str().unwrap();
    let stream = run("tar", &["-cf", "-", "-C", dir, "."], b"");
    check_receive(src.path(), &stream, "GNU tar with a hard link");
    let stream = run("bsdtar", &["-cf", "-", "-C", dir, "."], b"");
    check_receive(src.path(), &stream, "bsdtar with a hard link");
}
