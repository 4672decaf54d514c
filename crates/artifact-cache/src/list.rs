//! [`List`]: iterating the ids of committed artifacts.

use std::{fs, path::PathBuf};

use crate::{ArtifactId, Cache, Error, error::IoResultExt};

/// An iterator over the ids of the committed artifacts, in no particular order (the seed's
/// `Range`). It reads the directory as it goes, so it holds no list in memory; artifacts
/// committed or removed meanwhile may or may not be seen.
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path().join("cache"))?;
/// for hex in ["aa", "bb"] {
///     cache.create(&hex.parse()?)?.commit()?;
/// }
/// let mut ids = cache.list()?.collect::<Result<Vec<ArtifactId>, _>>()?;
/// ids.sort();
/// assert_eq!(ids, ["aa".parse()?, "bb".parse()?]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct List {
    dir: PathBuf,
    entries: fs::ReadDir,
}

impl Cache {
    /// The ids of the committed artifacts.
    pub fn list(&self) -> Result<List, Error> {
        let dir = self.inner.layout.objects.clone();
        let entries = fs::read_dir(&dir).with_path(&dir)?;
        Ok(List { dir, entries })
    }
}

impl Iterator for List {
    type Item = Result<ArtifactId, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match self.entries.next()? {
                Ok(entry) => entry,
                Err(err) => return Some(Err(err).with_path(&self.dir)),
            };
            // Only `rename` of a whole staging directory makes names here; skip anything else.
            if let Some(id) = entry.file_name().to_str().and_then(|name| name.parse().ok()) {
                return Some(Ok(id));
            }
        }
    }
}
