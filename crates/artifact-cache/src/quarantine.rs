//! [`Cache::quarantine`]: moving a corrupt artifact out of `objects/` into `quarantine/`, with a
//! `why` file beside its metadata; [`Cache::quarantined`], [`Quarantined`]; and the in-process
//! condemnation that hides an artifact from this process's readers until it is moved.
//!
//! A quarantine takes the artifact's exclusive lock, exactly like [`Cache::remove`]: it waits
//! for no reader, and fails with [`Error::ReadLocked`] while one holds the artifact. Before
//! trying, it *condemns* the id in this process: `get` and `get_quick` answer
//! [`Error::NotFound`] and `create` [`Error::WriteLocked`] from then on, so no new reader of
//! this process opens the corrupt tree, and [`Cache::quarantine_wait`] only has to wait for the
//! readers already there. The condemnation ends when the artifact leaves `objects/` (by this
//! quarantine or any removal), which lets a writer re-create the id at once. Readers in other
//! processes are not condemned: they may open the artifact until the quarantine succeeds.

use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
    sync::{
        PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::{
    ArtifactId, Cache, Durability, Error, Metadata, cache::Inner, error::IoResultExt, metadata,
    tree,
};

/// An artifact moved into quarantine: what [`Cache::quarantine`] did, and what
/// [`Cache::quarantined`] lists.
///
/// Serialises (for `--json` output and a server's status) with the id as hex and the time as
/// RFC 3339 text in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Quarantined {
    /// The artifact's id.
    pub id: ArtifactId,
    /// Why it was quarantined, as the caller said (for example the digests that differ).
    pub reason: String,
    /// When it was quarantined.
    #[serde(with = "crate::metadata::rfc3339")]
    pub at: SystemTime,
    /// Its metadata as recorded at commit (with the digest it should have), when readable.
    pub metadata: Option<Metadata>,
    /// Where it lies now: a directory under the root's `quarantine/`, holding `tree/`, `meta`
    /// and `why`.
    pub path: PathBuf,
}

/// The `why` file of a quarantined artifact.
#[derive(Debug, Serialize, Deserialize)]
struct WhyFile {
    v: u32,
    id: ArtifactId,
    reason: String,
    /// Nanoseconds since the Unix epoch.
    at_ns: u64,
}

/// The ids this process has condemned (see the module docs), with a count that spares the
/// lookup while there are none.
#[derive(Debug, Default)]
pub(crate) struct Condemned {
    count: AtomicUsize,
    ids: std::sync::Mutex<HashSet<ArtifactId>>,
}

impl Condemned {
    /// Whether `id` is condemned (no lock taken while nothing is).
    pub(crate) fn contains(&self, id: &ArtifactId) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.ids().contains(id)
    }

    fn insert(&self, id: &ArtifactId) {
        let mut ids = self.ids();
        if ids.insert(*id) {
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    /// Ends the condemnation of `id` (it has left `objects/`).
    pub(crate) fn remove(&self, id: &ArtifactId) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut ids = self.ids();
        if ids.remove(id) {
            self.count.fetch_sub(1, Ordering::Release);
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<ArtifactId>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Cache {
    /// Moves the committed artifact `id` out of the cache into its quarantine area, recording
    /// `reason` and the time beside its metadata, so that it is never served again and the id
    /// can be created afresh (by a download of a good copy, say).
    ///
    /// Meant for an artifact that [`verify`](Cache::verify) found [`Error::Corrupt`]. The move
    /// is one `rename` under the artifact's exclusive lock, like [`remove`](Cache::remove);
    /// the newest [`Options::quarantine_keep`](crate::Options::quarantine_keep) quarantined
    /// artifacts are kept for inspection, older ones deleted.
    ///
    /// From the first call on, this process treats `id` as absent to readers
    /// ([`Error::NotFound`]) and busy to writers ([`Error::WriteLocked`]) until the artifact
    /// is out of `objects/`, even when this call fails with [`Error::ReadLocked`] because
    /// readers still hold it: call again once they are done, or use
    /// [`quarantine_wait`](Cache::quarantine_wait). Errors: [`Error::NotFound`] (nothing to
    /// move), [`Error::ReadLocked`], [`Error::WriteLocked`], [`Error::Io`].
    ///
    /// ```
    /// use artifact_cache::{ArtifactId, Cache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::open(dir.path().join("cache"))?;
    /// let id: ArtifactId = "bad0".parse()?;
    /// let writer = cache.create(&id)?;
    /// std::fs::write(writer.path().join("f"), "data")?;
    /// writer.commit()?;
    ///
    /// let moved = cache.quarantine(&id, "digest mismatch")?;
    /// assert!(cache.get(&id).unwrap_err().is_not_found());
    /// assert_eq!(cache.quarantined()?[0].reason, "digest mismatch");
    /// assert_eq!(moved.metadata.unwrap().size, 4);
    /// // The id can be filled again.
    /// cache.create(&id)?.commit()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quarantine(&self, id: &ArtifactId, reason: &str) -> Result<Quarantined, Error> {
        let _span = tracing::info_span!("quarantine", id = %id).entered();
        let inner = &self.inner;
        inner.condemned.insert(id);
        let result = inner.quarantine(id, reason);
        match &result {
            Ok(moved) => {
                warn!(id = %id, reason, path = %moved.path.display(), "artifact quarantined");
                if let Err(err) = inner.prune_quarantine(inner.options.quarantine_keep) {
                    warn!(error = %err, "cannot delete old quarantined artifacts");
                }
            }
            Err(Error::NotFound { .. }) => inner.condemned.remove(id),
            Err(err) => debug!(id = %id, error = %err, "cannot quarantine yet"),
        }
        result
    }

    /// The quarantined artifacts, newest first.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let cache = artifact_cache::Cache::open(dir.path())?;
    /// assert!(cache.quarantined()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, Error> {
        self.inner.list_quarantine()
    }

    /// Whether this process condemned `id` (see [`quarantine`](Cache::quarantine)) and it is
    /// still waiting to be moved out.
    pub fn is_condemned(&self, id: &ArtifactId) -> bool {
        self.inner.condemned.contains(id)
    }
}

impl Inner {
    fn quarantine(&self, id: &ArtifactId, reason: &str) -> Result<Quarantined, Error> {
        // The record on disk, not a cached one: this is the artifact being moved.
        let (meta, dest) = self.move_out(id, &self.layout.quarantine, |_| {
            metadata::read(&self.layout.meta(id), id).ok().flatten()
        })?;
        let at = SystemTime::now();
        let why = WhyFile { v: 1, id: *id, reason: reason.to_owned(), at_ns: nanos(at) };
        if let Err(err) = write_why(&dest.join("why"), &why, self.options.durability) {
            // The artifact is out of the way, which is what matters; the listing copes.
            warn!(id = %id, error = %err, "cannot record why the artifact was quarantined");
        }
        Ok(Quarantined { id: *id, reason: reason.to_owned(), at, metadata: meta, path: dest })
    }

    /// Reads the quarantine area, newest first.
    fn list_quarantine(&self) -> Result<Vec<Quarantined>, Error> {
        let dir = &self.layout.quarantine;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).with_path(dir),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_path(dir)?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.split('.').next()?.parse().ok()) else {
                continue;
            };
            found.push(read_entry(path, id));
        }
        found.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.path.cmp(&a.path)));
        Ok(found)
    }

    /// Deletes all but the newest `keep` quarantined artifacts; returns how many went.
    pub(crate) fn prune_quarantine(&self, keep: usize) -> Result<u64, Error> {
        let mut removed = 0;
        for old in self.list_quarantine()?.into_iter().skip(keep) {
            // Out of the listing in one rename, then deleted; another process pruning the
            // same entry makes the rename fail, which is fine.
            let trash = self.layout.unique(&self.layout.trash, Some(&old.id));
            match fs::rename(&old.path, &trash) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).with_path(&old.path),
            }
            tree::remove(&trash)?;
            debug!(id = %old.id, "deleted a quarantined artifact");
            removed += 1;
        }
        Ok(removed)
    }
}

/// One entry of the quarantine area; an entry without a readable `why` (a crash between the
/// move and its writing) gets its directory's mtime and an unknown reason.
fn read_entry(path: PathBuf, id: ArtifactId) -> Quarantined {
    let why: Option<WhyFile> = fs::read(path.join("why"))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .filter(|why: &WhyFile| why.v == 1 && why.id == id);
    let metadata = metadata::read(&path.join("meta"), &id).ok().flatten();
    let (reason, at) = match why {
        Some(why) => (why.reason, SystemTime::UNIX_EPOCH + Duration::from_nanos(why.at_ns)),
        None => (
            "unknown (the reason was never recorded)".to_owned(),
            fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH),
        ),
    };
    Quarantined { id, reason, at, metadata, path }
}

fn write_why(path: &Path, why: &WhyFile, durability: Durability) -> Result<(), Error> {
    let mut text = serde_json::to_vec(why).expect("the record serialises");
    text.push(b'\n');
    fs::write(path, &text).with_path(path)?;
    if durability == Durability::Fsync {
        tree::sync(path)?;
    }
    Ok(())
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
