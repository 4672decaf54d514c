//! The entry index and `send_range`: every range of a tree's stream equals the same slice of
//! the whole stream; an index survives its file format and refuses to be wrong.

use std::{ops::Range, path::Path};

use artifact_testkit::{TreeBuilder, tree_spec};
use proptest::prelude::*;
use tarstream::{EntryKind, Error, Index};

use crate::roundtrip::cases;

fn whole(dir: &Path) -> Vec<u8> {
    let mut stream = Vec::new();
    tarstream::send(dir, &mut stream).expect("send");
    stream
}

fn range(dir: &Path, index: &Index, range: Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = tarstream::send_range(dir, index, range.clone(), &mut out).expect("send_range");
    assert_eq!(n, range.end - range.start);
    out
}

/// Checks `send_range` against the slice of the whole stream for each of `ranges`.
fn check(dir: &Path, ranges: impl IntoIterator<Item = Range<u64>>) {
    let stream = whole(dir);
    let index = tarstream::index_dir(dir).expect("index_dir");
    assert_eq!(index.stream_len(), stream.len() as u64);
    assert_eq!(index.digest(), tarstream::digest_dir(dir).unwrap().digest);
    for r in ranges {
        let got = range(dir, &index, r.clone());
        let want = &stream[r.start as usize..r.end as usize];
        assert!(got == want, "range {r:?} of {} bytes differs", stream.len());
    }
}

/// Every boundary an entry has (its start, data, padding, end), one byte either side.
fn edges(index: &Index) -> Vec<u64> {
    let mut points = vec![0, 1, index.stream_len() - 1, index.stream_len()];
    for entry in index.entries() {
        for p in [entry.offset, entry.data_offset(), entry.end()] {
            points.extend([p.saturating_sub(1), p, p + 1]);
        }
        if let EntryKind::File { size, .. } = entry.kind {
            points.push(entry.data_offset() + size);
        }
    }
    points.retain(|&p| p <= index.stream_len());
    points.sort_unstable();
    points.dedup();
    points
}

#[test]
fn ranges_at_every_edge_of_headers_padding_and_end_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "d".repeat(120);
    TreeBuilder::new(tmp.path())
        .file("empty", b"")
        .file("one", b"x")
        .file("block", vec![7u8; 512])
        .exec("tool", vec![1u8; 1500])
        .dir("sub/deeper")
        .file(format!("sub/{long}/f"), b"pax path")
        .symlink("sub/link", "../one")
        .symlink(format!("sub/{}", "l".repeat(110)), "x".repeat(150));
    let index = tarstream::index_dir(tmp.path()).unwrap();
    let points = edges(&index);
    let mut ranges = Vec::new();
    for (i, &a) in points.iter().enumerate() {
        for &b in &points[i..] {
            ranges.push(a..b);
        }
    }
    check(tmp.path(), ranges);
}

#[test]
fn an_empty_tree_is_its_end_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tarstream::index_dir(tmp.path()).unwrap();
    assert!(index.is_empty());
    assert_eq!(index.stream_len(), 1024);
    assert_eq!(index.find(0), None);
    check(tmp.path(), [0..0, 0..1024, 1000..1024, 1024..1024]);
}

#[test]
fn a_range_beyond_the_stream_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    TreeBuilder::new(tmp.path()).file("f", b"data");
    let index = tarstream::index_dir(tmp.path()).unwrap();
    let len = index.stream_len();
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 10..5;
    for bad in [0..len + 1, len + 1..len + 2, reversed] {
        let err = tarstream::send_range(tmp.path(), &index, bad.clone(), Vec::new()).unwrap_err();
        assert!(
            matches!(err, Error::BadRange { start, end, len: l } if start == bad.start && end == bad.end && l == len),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn a_file_that_changed_since_indexing_stops_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    TreeBuilder::new(tmp.path()).file("a", vec![1u8; 4096]).file("b", vec![2u8; 4096]);
    let index = tarstream::index_dir(tmp.path()).unwrap();
    std::fs::write(tmp.path().join("b"), b"short").unwrap();
    let err =
        tarstream::send_range(tmp.path(), &index, 0..index.stream_len(), Vec::new()).unwrap_err();
    assert!(matches!(&err, Error::FileChanged { path } if path.ends_with("b")), "{err:?}");
    // A range that does not reach the changed file is still served.
    let a = index.entries().next().unwrap();
    range(tmp.path(), &index, 0..a.end());
    // A symlink put where a file was is not followed.
    std::fs::remove_file(tmp.path().join("b")).unwrap();
    std::os::unix::fs::symlink("a", tmp.path().join("b")).unwrap();
    let err =
        tarstream::send_range(tmp.path(), &index, 0..index.stream_len(), Vec::new()).unwrap_err();
    assert!(matches!(&err, Error::FileChanged { path } if path.ends_with("b")), "{err:?}");
}

#[test]
fn files_deeper_than_path_max_are_served() {
    use rustix::fs::{Mode, OFlags};
    let tmp = tempfile::tempdir().unwrap();
    // 300 levels of 15-byte names: a 4,800-byte path, more than one open(2) takes, so it is
    // built (and must be served) one component at a time.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(tmp.path(), flags, Mode::empty()).unwrap();
    for i in 0..300 {
        let name = format!("level-{i:04}-abcd");
        rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, name.as_str(), flags, Mode::empty()).unwrap();
    }
    let file_flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let file = rustix::fs::openat(&dir, "deep.txt", file_flags, Mode::from_raw_mode(0o644));
    rustix::io::write(file.unwrap(), b"deep data").unwrap();
    let index = tarstream::index_dir(tmp.path()).unwrap();
    let last = index.entry(index.len() - 1);
    assert!(last.path.len() > 4096 && last.path.ends_with(b"deep.txt"));
    check(tmp.path(), [0..index.stream_len(), last.data_offset()..last.data_offset() + 4]);
}

#[test]
fn the_index_file_round_trips_and_refuses_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    TreeBuilder::new(tmp.path())
        .exec("bin/tool", b"#!/bin/sh\n")
        .file("lib/a.so", vec![3u8; 10_000])
        .symlink("current", "bin/tool")
        .dir("empty");
    let index = tarstream::index_dir(tmp.path()).unwrap();
    let mut bytes = Vec::new();
    index.write_to(&mut bytes).unwrap();
    assert_eq!(Index::read_from(&bytes[..]).unwrap(), index);

    // Every truncation, and every single flipped byte, is refused (a flip inside a hash or a
    // size changes the digest; anywhere else it breaks the format).
    for cut in 0..bytes.len() {
        let err = Index::read_from(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, Error::BadIndex { .. }), "cut at {cut}: {err:?}");
    }
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        if let Ok(read) = Index::read_from(&bad[..]) {
            panic!("flip at {at} accepted: {read:?}");
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(Index::read_from(&longer[..]), Err(Error::BadIndex { .. })));
}

#[test]
fn a_lying_entry_count_allocates_nothing_up_front() {
    let mut bytes = Vec::new();
    tarstream::IndexBuilder::new().finish().write_to(&mut bytes).unwrap();
    bytes[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = Index::read_from(&bytes[..]).unwrap_err();
    assert!(matches!(err, Error::BadIndex { .. }), "{err:?}");
}

#[test]
fn the_builder_refuses_unclean_paths_and_disorder() {
    for bad in [&b""[..], b"/abs", b"a//b", b"a/../b", b"./a", b"a/", b"nul\0"] {
        let err = tarstream::IndexBuilder::new().dir(bad).unwrap_err();
        assert!(matches!(err, Error::BadIndex { .. }), "{bad:?}: {err:?}");
    }
    let mut builder = tarstream::IndexBuilder::new();
    builder.dir(b"b").unwrap();
    assert!(builder.dir(b"a").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    #[test]
    fn every_range_of_random_trees_is_the_slice_of_the_whole(
        spec in tree_spec(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 16),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        spec.write(tmp.path());
        let index = tarstream::index_dir(tmp.path()).unwrap();
        let len = index.stream_len() as usize + 1;
        let mut ranges: Vec<Range<u64>> = cuts
            .iter()
            .map(|(a, b)| {
                let (a, b) = (a.index(len) as u64, b.index(len) as u64);
                a.min(b)..a.max(b)
            })
            .collect();
        ranges.push(0..index.stream_len());
        let points = edges(&index);
        ranges.extend(points.windows(2).map(|w| w[0]..w[1]));
        check(tmp.path(), ranges);

        let mut bytes = Vec::new();
        index.write_to(&mut bytes).unwrap();
        prop_assert_eq!(Index::read_from(&bytes[..]).unwrap(), index);
    }
}

#[test]
fn receive_builds_the_same_index_in_and_out_of_canonical_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    TreeBuilder::new(&src)
        .file("b/later", b"b")
        .file("a-file", vec![9u8; 3000])
        .exec("c/tool", b"#!/bin/sh\n")
        .symlink("c/link", "tool")
        .dir("empty");
    let want = tarstream::index_dir(&src).unwrap();
    let options = tarstream::ReceiveOptions::default();

    // Ours, in canonical order: built as the bytes pass.
    let dst = tmp.path().join("ours");
    let (summary, index) = tarstream::receive_with_index(&dst, &whole(&src)[..], &options).unwrap();
    assert_eq!(index, want);
    assert_eq!(summary.digest, want.digest());

    // GNU tar's, in directory order with `./` names: built from the received tree.
    let archive = std::process::Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&src)
        .args(["--sort=none", "."])
        .output()
        .expect("GNU tar is needed");
    assert!(archive.status.success());
    let dst = tmp.path().join("gnu");
    let (summary, index) =
        tarstream::receive_with_index(&dst, &archive.stdout[..], &options).unwrap();
    assert_eq!(index, want);
    assert_eq!(summary.digest, want.digest());
    assert_eq!(summary.stream_bytes, archive.stdout.len() as u64);
}
