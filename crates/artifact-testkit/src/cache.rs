//! A temporary cache, and artifacts with content that is known from their id.
//!
//! ```
//! use artifact_testkit::cache::{TempCache, commit_known, test_id};
//!
//! let cache = TempCache::new();
//! let meta = commit_known(&cache, &test_id(1), 3).unwrap();
//! assert_eq!(meta.files, 4); // and an executable
//! let other_process = cache.reopen();
//! artifact_testkit::cache::assert_known(other_process.get(&test_id(1)).unwrap().path(), &test_id(1), 3);
//! ```

use std::{
    fs,
    ops::Deref,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use artifact_cache::{ArtifactId, Cache, Error, Metadata, Options};
use tempfile::TempDir;

/// A [`Cache`] in a temporary directory, deleted on drop. Derefs to the cache.
#[derive(Debug)]
pub struct TempCache {
    cache: Cache,
    // Dropped last: the cache's files live here.
    dir: TempDir,
}

impl TempCache {
    /// A new, empty cache with default options.
    pub fn new() -> TempCache {
        TempCache::with_options(Options::default())
    }

    /// A new, empty cache with `options`.
    pub fn with_options(options: Options) -> TempCache {
        let dir = tempfile::Builder::new().prefix("artifact-cache-").tempdir().expect("tempdir");
        let cache = Cache::open_with(dir.path().join("cache"), options).expect("open a new cache");
        TempCache { cache, dir }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cache's root.
    pub fn root(&self) -> &Path {
        self.cache.root()
    }

    /// A scratch directory next to the cache (inside the temporary directory).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).expect("create scratch dir");
        path
    }

    /// Another handle on the same root, with its own in-process state: to the first handle it
    /// behaves like another process.
    pub fn reopen(&self) -> Cache {
        self.reopen_with(Options::default())
    }

    /// [`reopen`](TempCache::reopen) with `options`.
    pub fn reopen_with(&self, options: Options) -> Cache {
        Cache::open_with(self.root(), options).expect("reopen the cache")
    }
}

impl Default for TempCache {
    fn default() -> Self {
        TempCache::new()
    }
}

impl Deref for TempCache {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        &self.cache
    }
}

impl Drop for TempCache {
    fn drop(&mut self) {
        // Committed trees are read-only; make them deletable for the TempDir.
        let _ = make_writable(self.dir.path());
    }
}

fn make_writable(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(path)? {
            make_writable(&entry?.path())?;
        }
    }
    Ok(())
}

/// Calls `op` until it ends other than in a lock conflict (`Error::is_locked`), as callers
/// that share a cache with busy readers, writers or other processes' recovery do; panics on
/// any other error.
///
/// ```
/// use artifact_testkit::cache::{TempCache, test_id, until_unlocked};
///
/// let cache = TempCache::new();
/// let writer = until_unlocked(|| cache.create(&test_id(1)));
/// writer.commit().unwrap();
/// until_unlocked(|| cache.remove(&test_id(1)));
/// ```
pub fn until_unlocked<T>(mut op: impl FnMut() -> Result<T, Error>) -> T {
    loop {
        match op() {
            Ok(value) => return value,
            Err(err) if err.is_locked() => std::thread::yield_now(),
            Err(err) => panic!("{err}"),
        }
    }
}

/// The id numbered `n` (8 bytes, big-endian), for tests.
pub fn test_id(n: u64) -> ArtifactId {
    ArtifactId::try_from(&n.to_be_bytes()[..]).expect("8 bytes is a valid id")
}

/// Fills `dir` with `files` files (in a nested directory, with a symlink and an executable)
/// whose content is a function of `id`: [`assert_known`] checks a tree made this way.
pub fn fill_known(dir: &Path, id: &ArtifactId, files: usize) -> std::io::Result<()> {
    fs::create_dir_all(dir.join("sub/deeper"))?;
    for i in 0..files {
        let name = if i % 3 == 0 { format!("sub/deeper/f{i}") } else { format!("f{i}") };
        fs::write(dir.join(name), content(id, i))?;
    }
    std::os::unix::fs::symlink("sub", dir.join("link"))?;
    fs::write(dir.join("tool"), b"#!/bin/sh\necho tool\n")?;
    fs::set_permissions(dir.join("tool"), fs::Permissions::from_mode(0o755))
}

/// Creates, fills (see [`fill_known`]) and commits `id`.
pub fn commit_known(cache: &Cache, id: &ArtifactId, files: usize) -> Result<Metadata, Error> {
    let writer = cache.create(id)?;
    fill_known(writer.path(), id, files).expect("fill the staging directory");
    writer.commit()
}

/// Flips the first byte of the file `name` (a path inside the tree) of the committed artifact
/// `id` in the cache at `root`, as a disk error would: the file is made writable for it and
/// read-only again.
pub fn flip_byte(root: &Path, id: &ArtifactId, name: &str) {
    let file = root.join("objects").join(id.to_string()).join("tree").join(name);
    let mode = fs::metadata(&file).expect("the file to damage").permissions().mode();
    fs::set_permissions(&file, fs::Permissions::from_mode(mode | 0o200)).expect("chmod u+w");
    let mut bytes = fs::read(&file).expect("read the file to damage");
    bytes[0] ^= 1;
    fs::write(&file, bytes).expect("write the damaged file");
    fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod back");
}

/// Panics unless `dir` holds exactly what [`fill_known`]`(dir, id, files)` wrote.
pub fn assert_known(dir: &Path, id: &ArtifactId, files: usize) {
    for i in 0..files {
        let name = if i % 3 == 0 { format!("sub/deeper/f{i}") } else { format!("f{i}") };
        let got = fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{id}: reading {name}: {e}"));
        assert_eq!(got, content(id, i), "{id}: content of {name}");
    }
    assert_eq!(fs::read_link(dir.join("link")).expect("link"), Path::new("sub"));
    let tool = fs::metadata(dir.join("tool")).expect("tool");
    assert!(tool.permissions().mode() & 0o100 != 0, "{id}: tool lost its exec bit");
    let count = count_files(dir);
    assert_eq!(count, files + 1, "{id}: number of files");
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let kind = e.file_type().expect("type");
            if kind.is_dir() { count_files(&e.path()) } else { usize::from(kind.is_file()) }
        })
        .sum()
}

/// The content of file `i` of the artifact `id`: a few hundred bytes unique to both.
fn content(id: &ArtifactId, i: usize) -> Vec<u8> {
    let line = format!("artifact {id} file {i}\n");
    line.repeat(1 + i % 7).into_bytes()
}
