//! The entry index of committed artifacts: written at commit, built and kept on first need,
//! rebuilt when damaged, and never trusted over the recorded digest.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use artifact_cache::Error;
use artifact_testkit::cache::{TempCache, commit_known, fill_known, test_id};

fn index_file(tree: &Path) -> std::path::PathBuf {
    tree.with_file_name("index")
}

fn whole(dir: &Path) -> Vec<u8> {
    let mut stream = Vec::new();
    tarstream::send(dir, &mut stream).unwrap();
    stream
}

#[test]
fn commit_writes_the_index_and_ranges_come_from_it() {
    let cache = TempCache::new();
    let meta = commit_known(&cache, &test_id(1), 5).unwrap();
    let reader = cache.get(&test_id(1)).unwrap();
    assert!(index_file(reader.path()).is_file(), "commit wrote no index");
    let index = reader.index().unwrap();
    assert_eq!(index.digest(), meta.digest);
    assert_eq!(index, tarstream::index_dir(reader.path()).unwrap());

    let stream = whole(reader.path());
    assert_eq!(index.stream_len(), stream.len() as u64);
    let mut part = Vec::new();
    tarstream::send_range(reader.path(), &index, 700..stream.len() as u64 - 3, &mut part).unwrap();
    assert!(part == stream[700..stream.len() - 3]);
}

#[test]
fn commit_with_leaves_the_index_to_the_first_reader_who_keeps_it() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(2)).unwrap();
    fill_known(writer.path(), &test_id(2), 3).unwrap();
    let summary = tarstream::digest_dir(writer.path()).unwrap();
    writer.commit_with(&summary).unwrap();

    let reader = cache.get(&test_id(2)).unwrap();
    assert!(!index_file(reader.path()).exists());
    let index = reader.index().unwrap();
    assert_eq!(index.digest(), summary.digest);
    assert!(index_file(reader.path()).is_file(), "the built index was not kept");
    let leftovers: Vec<_> = fs::read_dir(reader.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("index."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(reader.index().unwrap(), index);
}

#[test]
fn a_damaged_index_file_is_rebuilt() {
    let cache = TempCache::new();
    commit_known(&cache, &test_id(3), 4).unwrap();
    let reader = cache.get(&test_id(3)).unwrap();
    let good = reader.index().unwrap();
    let path = index_file(reader.path());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert_eq!(reader.index().unwrap(), good);
    assert_eq!(fs::read(&path).unwrap().len(), bytes.len());
    assert_ne!(fs::read(&path).unwrap(), bytes, "the damaged file was kept");
}

#[test]
fn a_tree_that_no_longer_has_its_digest_gets_no_index() {
    let cache = TempCache::new();
    let writer = cache.create(&test_id(4)).unwrap();
    fill_known(writer.path(), &test_id(4), 2).unwrap();
    let summary = tarstream::digest_dir(writer.path()).unwrap();
    writer.commit_with(&summary).unwrap();
    let reader = cache.get(&test_id(4)).unwrap();

    let victim = fs::read_dir(reader.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("the known tree has a file at its top");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    bytes.push(b'!');
    fs::write(&victim, bytes).unwrap();

    let err = reader.index().unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(!index_file(reader.path()).exists(), "an index of a corrupt tree was kept");
}

#[test]
fn commit_with_index_keeps_what_receive_built() {
    let cache = TempCache::new();
    let src = cache.scratch("src");
    fill_known(&src, &test_id(5), 4).unwrap();
    let stream = whole(&src);
    let writer = cache.create(&test_id(5)).unwrap();
    let (_, index) =
        tarstream::receive_with_index(writer.path(), &stream[..], &Default::default()).unwrap();
    let meta = writer.commit_with_index(&index).unwrap();
    assert_eq!(meta.digest, index.digest());
    let reader = cache.get(&test_id(5)).unwrap();
    let on_disk = fs::read(index_file(reader.path())).unwrap();
    let mut written = Vec::new();
    index.write_to(&mut written).unwrap();
    assert_eq!(on_disk, written);
    assert_eq!(reader.index().unwrap(), index);
}
