//! Faulty input: errors and EOF at every offset of a small stream, short reads, bit flips.
//! Every case fails cleanly (or, for short reads, succeeds identically) and none hangs.

use std::{path::Path, time::Duration};

use artifact_testkit::{Faults, TreeBuilder, assert_same_tree, watchdog};
use tarstream::{Error, Summary};

use crate::forge::Sandbox;

/// A small tree whose stream has every kind of part: dirs, files with padding, an empty
/// file, a symlink, a PAX header for a long name.
fn small_tree(root: &Path) -> (Vec<u8>, Summary) {
    let tree = TreeBuilder::new(root);
    tree.file("a/b.txt", "hello")
        .exec("a/run", "#!/bin/sh\n")
        .file("empty", "")
        .symlink("link", "a/b.txt")
        .file("l".repeat(101), vec![1u8; 600]);
    let mut stream = Vec::new();
    let summary = tarstream::send(root, &mut stream).unwrap();
    (stream, summary)
}

#[test]
fn errors_and_eof_at_every_offset_fail_cleanly() {
    watchdog(Duration::from_secs(240), || {
        let tmp = tempfile::tempdir().unwrap();
        let (stream, _) = small_tree(&tmp.path().join("src"));
        let sandbox = Sandbox::new();
        std::fs::create_dir(&sandbox.dest).unwrap();
        for n in 0..stream.len() as u64 {
            let dest = sandbox.dest.join(format!("eof-{n}"));
            let err = tarstream::receive(&dest, Faults::new().eof_after(n).read(&stream[..]))
                .expect_err("a truncated stream was accepted");
            assert!(err.is_truncated(), "EOF at {n}: {err:?}");

            let dest = sandbox.dest.join(format!("err-{n}"));
            let err = tarstream::receive(&dest, Faults::new().error_after(n).read(&stream[..]))
                .expect_err("a failing stream was accepted");
            match err {
                Error::Read { offset, .. } => assert_eq!(offset, n),
                other => panic!("error at {n}: {other:?}"),
            }
        }
        // Also an error right at the end: the reader must be read to its end.
        let dest = sandbox.dest.join("err-end");
        let faulty = Faults::new().error_after(stream.len() as u64).read(&stream[..]);
        assert!(matches!(tarstream::receive(&dest, faulty), Err(Error::Read { .. })));
        sandbox.assert_outside_untouched();
    });
}

#[test]
fn short_reads_change_nothing() {
    watchdog(Duration::from_secs(120), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let (stream, sent) = small_tree(&src);
        for (seed, max) in [(1, 1), (2, 3), (3, 511), (4, 513), (5, 4096)] {
            let dst = tmp.path().join(format!("dst-{seed}"));
            let reader = Faults::new().short_reads(max).seed(seed).read(&stream[..]);
            let got = tarstream::receive(&dst, reader).unwrap();
            assert_eq!(got, sent);
            assert_same_tree(&src, &dst);
        }
    });
}

#[test]
fn bit_flips_fail_cleanly_or_change_the_digest() {
    watchdog(Duration::from_secs(240), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let (stream, sent) = small_tree(&src);
        let sandbox = Sandbox::new();
        std::fs::create_dir(&sandbox.dest).unwrap();
        let (mut failed, mut differed, mut same) = (0, 0, 0);
        for offset in 0..stream.len() as u64 {
            let mask = 1u8 << (offset % 8);
            let dest = sandbox.dest.join(format!("flip-{offset}"));
            let reader = Faults::new().flip(offset, mask).read(&stream[..]);
            match tarstream::receive(&dest, reader) {
                Err(err) => {
                    assert!(err.is_hostile(), "flip at {offset}: {err:?}");
                    failed += 1;
                }
                Ok(got) => {
                    // Whatever was accepted is exactly what the digest says.
                    assert_eq!(got.digest, tarstream::digest_dir(&dest).unwrap().digest);
                    if got.digest == sent.digest {
                        assert_same_tree(&src, &dest);
                        same += 1;
                    } else {
                        differed += 1;
                    }
                }
            }
        }
        sandbox.assert_outside_untouched();
        // Headers are checksummed, data is covered by the digest; padding and ignored header
        // fields (mtime digits are checksummed, but padding is not) may flip harmlessly.
        assert!(failed > 0 && differed > 0 && same > 0, "{failed} {differed} {same}");
    });
}

#[test]
fn large_files_fail_cleanly_too() {
    watchdog(Duration::from_secs(120), || {
        let tmp = tempfile::tempdir().unwrap();
        let src = TreeBuilder::new(tmp.path().join("src"));
        src.file("big", artifact_testkit::strategy::content(9, (5 << 20) + 7));
        let mut stream = Vec::new();
        let sent = tarstream::send(src.path(), &mut stream).unwrap();
        let data_start = 512u64;
        for cut in [data_start, data_start + 1, data_start + (1 << 20), data_start + (5 << 20) + 6]
        {
            let dest = tmp.path().join(format!("eof-{cut}"));
            let err = tarstream::receive(&dest, Faults::new().eof_after(cut).read(&stream[..]))
                .unwrap_err();
            assert!(
                matches!(err, Error::Truncated { within: tarstream::Section::Data, .. }),
                "{cut}: {err:?}"
            );
            let dest = tmp.path().join(format!("err-{cut}"));
            let err = tarstream::receive(&dest, Faults::new().error_after(cut).read(&stream[..]))
                .unwrap_err();
            assert!(matches!(err, Error::Read { offset, .. } if offset == cut), "{cut}: {err:?}");
        }
        let dst = tmp.path().join("short-reads");
        let got =
            tarstream::receive(&dst, Faults::new().short_reads(70_000).read(&stream[..])).unwrap();
        assert_eq!(got, sent);
        assert_same_tree(src.path(), &dst);
    });
}
