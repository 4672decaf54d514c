//! Random trees round-trip exactly, deterministically, with one digest from every side.

use std::{fs, path::Path};

use artifact_testkit::{TreeBuilder, assert_same_tree, modes, tree_spec};
use proptest::prelude::*;
use tarstream::{Error, ReceiveOptions};

/// Proptest cases: `PROPTEST_CASES` when set, else a small number that keeps the suite fast.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pack(dir: &Path) -> (Vec<u8>, tarstream::Summary) {
    let mut stream = Vec::new();
    let summary = tarstream::send(dir, &mut stream).expect("send");
    (stream, summary)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    #[test]
    fn random_trees_round_trip_exactly(spec in tree_spec()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        spec.write(&src);

        let (stream, sent) = pack(&src);
        let (again, _) = pack(&src);
        prop_assert!(stream == again, "packing twice gave different bytes");
        let mut plain = Vec::new();
        let written = tarstream::send_without_digest(&src, &mut plain).expect("send");
        prop_assert!(plain == stream, "send_without_digest wrote other bytes");
        prop_assert_eq!(written, stream.len() as u64);
        prop_assert_eq!(sent.stream_bytes, stream.len() as u64);
        prop_assert_eq!(sent.file_bytes, spec.file_bytes());
        prop_assert_eq!(sent.entries(), spec.entries.len() as u64);

        let dst = tmp.path().join("dst");
        let got = tarstream::receive(&dst, &stream[..]).expect("receive");
        assert_same_tree(&src, &dst);
        prop_assert_eq!(got, sent);
        prop_assert_eq!(tarstream::digest_dir(&src).unwrap().digest, sent.digest);
        prop_assert_eq!(tarstream::digest_dir(&dst).unwrap().digest, sent.digest);
        for (path, mode) in modes(&dst) {
            prop_assert!(mode == 0o644 || mode == 0o755, "{} has mode {:o}", path.display(), mode);
        }

        // The received tree packs to the very same bytes.
        let (repacked, _) = pack(&dst);
        prop_assert!(repacked == stream, "the received tree packs differently");
    }
}

#[test]
fn modes_are_normalised_and_the_exec_bit_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file_with_mode("private", "p", 0o600)
        .file_with_mode("owner-exec", "x", 0o700)
        .file_with_mode("group-exec-only", "g", 0o650)
        .file_with_mode("odd", "o", 0o4751)
        .dir("d");
    fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o700)).unwrap();
    let (stream, _) = pack(src.path());
    let dst = tmp.path().join("dst");
    tarstream::receive(&dst, &stream[..]).unwrap();
    let got = modes(&dst);
    let want = [
        ("d", 0o755),
        ("group-exec-only", 0o644),
        ("odd", 0o755),
        ("owner-exec", 0o755),
        ("private", 0o644),
    ];
    for (path, mode) in want {
        assert_eq!(got[Path::new(path)], mode, "{path}");
    }
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn read_only_option_makes_files_read_only_and_leaves_dirs_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a/f", "f").exec("a/x", "x").dir("e");
    let (stream, sent) = pack(src.path());
    let dst = tmp.path().join("dst");
    let options = ReceiveOptions::default().read_only(true);
    let got = tarstream::receive_with(&dst, &stream[..], &options).unwrap();
    assert_eq!(got.digest, sent.digest);
    let modes = modes(&dst);
    assert_eq!(modes[Path::new("a/f")], 0o444);
    assert_eq!(modes[Path::new("a/x")], 0o555);
    assert_eq!(modes[Path::new("a")], 0o755);
    // The tree can be deleted without a chmod walk.
    fs::remove_dir_all(&dst).unwrap();
}

#[test]
fn hard_links_in_the_source_are_sent_as_separate_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a", "shared").hard_link("b", "a").hard_link("d/c", "a");
    let (stream, sent) = pack(src.path());
    assert_eq!(sent.files, 3);
    assert_eq!(sent.file_bytes, 18);
    let dst = tmp.path().join("dst");
    tarstream::receive(&dst, &stream[..]).unwrap();
    assert_same_tree(src.path(), &dst);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(dst.join("b")).unwrap().nlink(), 1);
}

#[test]
fn sockets_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a", "x").socket("d/sock");
    let err = tarstream::send(src.path(), &mut Vec::new()).unwrap_err();
    match err {
        Error::UnsupportedFileType { path, kind } => {
            assert_eq!(path, src.join("d/sock"));
            assert_eq!(kind, "socket");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(tarstream::digest_dir(src.path()), Err(Error::UnsupportedFileType { .. })));
}

#[test]
fn escaping_symlinks_are_not_sent_and_the_stream_stays_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("a", "x").symlink("z-abs", "/etc/passwd");
    let mut stream = Vec::new();
    let err = tarstream::send(src.path(), &mut stream).unwrap_err();
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err:?}");

    // A chain that escapes only physically: the stream is written, without its end marker.
    let src = TreeBuilder::new(tmp.path().join("chain"));
    src.dir("d").symlink("d/up", "..").symlink("d/e", "up/..");
    let mut stream = Vec::new();
    let err = tarstream::send(src.path(), &mut stream).unwrap_err();
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err:?}");
    let err = tarstream::receive(&tmp.path().join("dst"), &stream[..]).unwrap_err();
    assert!(err.is_truncated(), "{err:?}");
}

#[test]
fn write_errors_name_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let src = TreeBuilder::new(tmp.path().join("src"));
    src.file("big", vec![7u8; 3 << 20]);
    let out = artifact_testkit::Faults::new().error_after(1 << 20).write(Vec::new());
    let err = tarstream::send(src.path(), out).unwrap_err();
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    assert!(err.is_io());
}

#[test]
fn empty_trees_are_just_the_end_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let (stream, sent) = pack(tmp.path());
    assert_eq!(stream, vec![0u8; 1024]);
    assert_eq!(sent.entries(), 0);
    let got = tarstream::receive(&tmp.path().join("dst"), &stream[..]).unwrap();
    assert_eq!(got.digest, sent.digest);
}
