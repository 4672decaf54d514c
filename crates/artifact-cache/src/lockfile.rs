//! [`LockFile`]: one artifact's OS lock (`locks/<hex id>`), with its generation counter.
//!
//! Readers take a shared `flock`, writers and removers an exclusive one, always without
//! blocking (`try_lock*`). The file holds an 8-byte little-endian generation, bumped under the
//! exclusive lock by every commit, so a process can trust what it cached about the artifact
//! while the generation is unchanged. A remover writes [`TOMBSTONE`] into the file and unlinks
//! it before unlocking; whoever then locks the old inode sees the tombstone and reopens the
//! path. A tombstone still at the path is a remover that died between the two steps; it is
//! unlinked under the root's repair lock (see `docs/operations.md`, "Locking"). Where the
//! tombstone cannot be written (a full disk), the remover empties the file instead, and
//! whoever locks an empty file checks that its path still names it.

use std::{
    fs::{self, File, TryLockError},
    io,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

/// The generation of a lock file that has been unlinked.
pub(crate) const TOMBSTONE: u64 = u64::MAX;

/// An open lock file.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
}

impl LockFile {
    /// Opens the lock file at `path`, creating it when `create`; `Ok(None)` if absent.
    pub(crate) fn open(path: &Path, create: bool) -> io::Result<Option<LockFile>> {
        match File::options().read(true).write(true).create(create).open(path) {
            Ok(file) => Ok(Some(LockFile { file })),
            Err(err) if err.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            // On a file system remounted read-only, readers can still lock (`flock` needs no
            // write access) and read committed artifacts; writers fail where they write.
            Err(err) if err.kind() == io::ErrorKind::ReadOnlyFilesystem && !create => {
                Ok(Some(LockFile { file: File::open(path)? }))
            }
            Err(err) => Err(err),
        }
    }

    /// Takes a shared lock; `false` if someone holds it exclusively.
    pub(crate) fn try_shared(&self) -> io::Result<bool> {
        match self.file.try_lock_shared() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    /// Takes the exclusive lock; `false` if someone holds it (shared or exclusive).
    pub(crate) fn try_exclusive(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    /// Releases whatever lock this handle holds.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        self.file.unlock()
    }

    /// The current generation (0 for a new, empty file).
    pub(crate) fn generation(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        match filled {
            0 => Ok(0),
            8 => Ok(u64::from_le_bytes(buf)),
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "lock file is not 8 bytes")),
        }
    }

    /// The generation, read after taking a lock: [`TOMBSTONE`] also for an empty file that
    /// `path()` no longer names. A remover that cannot write the tombstone (a full disk)
    /// empties the file instead, which needs no space; an empty file is otherwise only a new
    /// one, so the extra check costs nothing on the paths that matter.
    pub(crate) fn locked_generation(&self, path: impl FnOnce() -> PathBuf) -> io::Result<u64> {
        match self.generation()? {
            0 if !self.is_at(&path())? => Ok(TOMBSTONE),
            generation => Ok(generation),
        }
    }

    /// Empties the file: the tombstone of last resort (see [`LockFile::locked_generation`]).
    pub(crate) fn clear(&self) -> io::Result<()> {
        self.file.set_len(0)
    }

    /// Writes the generation (hold the exclusive lock).
    pub(crate) fn set_generation(&self, generation: u64) -> io::Result<()> {
        self.file.write_all_at(&generation.to_le_bytes(), 0)
    }

    /// Whether `path` still names this file.
    pub(crate) fn is_at(&self, path: &Path) -> io::Result<bool> {
        let mine = self.file.metadata()?;
        match fs::symlink_metadata(path) {
            Ok(there) => Ok(there.dev() == mine.dev() && there.ino() == mine.ino()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_exclusive_exclude_each_other_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert!(LockFile::open(&path, false).unwrap().is_none());
        let a = LockFile::open(&path, true).unwrap().unwrap();
        let b = LockFile::open(&path, false).unwrap().unwrap();
        assert!(a.try_shared().unwrap());
        assert!(b.try_shared().unwrap());
        let c = LockFile::open(&path, false).unwrap().unwrap();
        assert!(!c.try_exclusive().unwrap());
        a.unlock().unwrap();
        b.unlock().unwrap();
        assert!(a.try_exclusive().unwrap());
        assert!(!b.try_shared().unwrap());
        assert!(!b.try_exclusive().unwrap());
        a.unlock().unwrap();
        assert!(b.try_exclusive().unwrap());
    }

    #[test]
    fn generation_round_trips_and_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = LockFile::open(&path, true).unwrap().unwrap();
        assert_eq!(lock.generation().unwrap(), 0);
        lock.set_generation(41).unwrap();
        lock.set_generation(42).unwrap();
        assert_eq!(LockFile::open(&path, false).unwrap().unwrap().generation().unwrap(), 42);
        assert!(lock.is_at(&path).unwrap());
        fs::remove_file(&path).unwrap();
        assert!(!lock.is_at(&path).unwrap());
        LockFile::open(&path, true).unwrap();
        assert!(!lock.is_at(&path).unwrap());
    }

    #[test]
    fn an_emptied_and_unlinked_file_reads_as_a_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let remover = LockFile::open(&path, true).unwrap().unwrap();
        remover.set_generation(7).unwrap();
        // Opened before the remover unlinks, locked after it lets go.
        let late = LockFile::open(&path, false).unwrap().unwrap();
        assert!(remover.try_exclusive().unwrap());
        remover.clear().unwrap();
        assert_eq!(remover.locked_generation(|| path.clone()).unwrap(), 0);
        fs::remove_file(&path).unwrap();
        remover.unlock().unwrap();
        assert!(late.try_exclusive().unwrap());
        assert_eq!(late.locked_generation(|| path.clone()).unwrap(), TOMBSTONE);
        // A new, empty file at the path is generation 0, as is a new one anywhere.
        let fresh = LockFile::open(&path, true).unwrap().unwrap();
        assert!(fresh.try_exclusive().unwrap());
        assert_eq!(fresh.locked_generation(|| path.clone()).unwrap(), 0);
        assert_eq!(late.locked_generation(|| path.clone()).unwrap(), TOMBSTONE);
    }
}
