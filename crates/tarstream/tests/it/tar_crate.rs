//! The `tar` crate, what a Rust user would pick instead: `receive` takes exactly what
//! `tar::Builder` writes, and `tar::Archive` unpacks exactly what `send` writes.

use std::path::Path;

use artifact_testkit::{assert_same_tree, tree_spec};
use proptest::prelude::*;
use tarstream::ReceiveOptions;

use crate::roundtrip::cases;

/// The tree at `src` as `tar::Builder` writes it (GNU long names, full metadata, symlinks
/// kept as symlinks), with the root as `.`.
fn tar_crate_archive(src: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", src).expect("tar::Builder::append_dir_all");
    builder.into_inner().expect("tar::Builder::finish")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    #[test]
    fn receive_takes_what_the_tar_crate_writes(spec in tree_spec()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        spec.write(&src);
        let archive = tar_crate_archive(&src);

        let dst = tmp.path().join("dst");
        let got = tarstream::receive_with(&dst, &archive[..], &ReceiveOptions::default())
            .expect("receive a tar crate archive");
        assert_same_tree(&src, &dst);
        prop_assert_eq!(got.digest, tarstream::digest_dir(&src).unwrap().digest);
        prop_assert_eq!(got.entries(), spec.entries.len() as u64);
    }

    #[test]
    fn the_tar_crate_unpacks_what_send_writes(spec in tree_spec()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        spec.write(&src);
        let mut stream = Vec::new();
        tarstream::send(&src, &mut stream).unwrap();

        let dst = tmp.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let mut archive = tar::Archive::new(&stream[..]);
        let mut entries = 0;
        for entry in archive.entries().expect("tar::Archive::entries") {
            let mut entry = entry.expect("a tar crate entry");
            prop_assert!(entry.unpack_in(&dst).expect("unpack_in"), "the tar crate skipped an entry");
            entries += 1;
        }
        prop_assert_eq!(entries, spec.entries.len());
        assert_same_tree(&src, &dst);
    }
}
