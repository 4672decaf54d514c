//! [`Options`] and [`Durability`]: how a [`Cache`](crate::Cache) is configured.

use std::time::Duration;

/// How a [`Cache`](crate::Cache) is opened: size bound, free-space floor, durability.
///
/// ```
/// use artifact_cache::{Cache, Durability, Options};
///
/// let dir = tempfile::tempdir()?;
/// let options = Options::default()
///     .max_bytes(Some(10 << 30))
///     .min_free_bytes(1 << 30)
///     .durability(Durability::Fsync);
/// let cache = Cache::open_with(dir.path(), options)?;
/// assert_eq!(cache.options().get_max_bytes(), Some(10 << 30));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    pub(crate) max_bytes: Option<u64>,
    pub(crate) min_free_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) last_used_resolution: Duration,
    pub(crate) quarantine_keep: usize,
}

impl Default for Options {
    /// No size bound, no free-space floor, [`Durability::CrashConsistent`], last-used times
    /// persisted at most once a minute per artifact, the newest 8 quarantined artifacts kept.
    fn default() -> Self {
        Options {
            max_bytes: None,
            min_free_bytes: 0,
            durability: Durability::CrashConsistent,
            last_used_resolution: Duration::from_secs(60),
            quarantine_keep: 8,
        }
    }
}

impl Options {
    /// Bounds the bytes of file content the cache keeps: after a commit takes it over, least
    /// recently used artifacts that nobody holds are evicted. `None` (the default): unbounded.
    pub fn max_bytes(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// A floor on the free space of the cache's file system: `create` and `commit` fail with
    /// [`Error::DiskFull`](crate::Error::DiskFull) rather than go below it. Default 0.
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    /// How hard a commit works to survive a crash (see [`Durability`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How stale an artifact's last-used time on disk may get: a `get` writes it (by touching
    /// a file's mtime) at most once per this interval per artifact. Default one minute.
    pub fn last_used_resolution(mut self, resolution: Duration) -> Self {
        self.last_used_resolution = resolution;
        self
    }

    /// How many quarantined artifacts (see [`Cache::quarantine`](crate::Cache::quarantine))
    /// are kept for inspection, the newest first; older ones are deleted by the next
    /// quarantine, and [`Cache::gc`](crate::Cache::gc) deletes them all. Default 8; 0 deletes
    /// each one as soon as it is out of the way. Their files are not counted in the size
    /// bound.
    pub fn quarantine_keep(mut self, artifacts: usize) -> Self {
        self.quarantine_keep = artifacts;
        self
    }

    /// The count set by [`quarantine_keep`](Options::quarantine_keep).
    pub fn get_quarantine_keep(&self) -> usize {
        self.quarantine_keep
    }

    /// The size bound set by [`max_bytes`](Options::max_bytes).
    pub fn get_max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// The floor set by [`min_free_bytes`](Options::min_free_bytes).
    pub fn get_min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    /// The mode set by [`durability`](Options::durability).
    pub fn get_durability(&self) -> Durability {
        self.durability
    }
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Atomic renames only: after the process is killed (`kill -9`) at any point, every
    /// artifact is whole or absent. After a power loss or kernel crash, a recently committed
    /// artifact may be lost or damaged (`verify` finds it). The default.
    #[default]
    CrashConsistent,
    /// Also `fsync` every file and directory of the tree, the metadata and the parents of
    /// every rename before a commit or removal returns, so a committed artifact survives a
    /// power loss. Costs an fsync per file.
    Fsync,
}
