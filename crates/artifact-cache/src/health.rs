//! [`Cache::check_usable`]: whether the root is still there and writable, for the health checks
//! of long-running processes.

use std::{fs, io};

use crate::{Cache, Error, RootProblem};

impl Cache {
    /// Checks that the cache can still be used: its root and layout directories are there and
    /// a file can be created and removed where writers stage.
    ///
    /// [`Cache::open`] checks this once; a process that runs for days (a server) calls this to
    /// notice a root deleted, unmounted or remounted read-only behind its back. It costs a few
    /// `stat`s and one empty file, and reads no artifact.
    ///
    /// # Errors
    ///
    /// [`Error::RootNotUsable`] with [`RootProblem::Missing`] when the root or part of its
    /// layout is gone, [`RootProblem::NotADirectory`], [`RootProblem::NotWritable`] (a
    /// read-only file system, or permissions), or [`RootProblem::Io`].
    pub fn check_usable(&self) -> Result<(), Error> {
        let layout = &self.inner.layout;
        let fail = |problem: RootProblem, source: Option<io::Error>| Error::RootNotUsable {
            path: layout.root.clone(),
            problem,
            source,
        };
        let io_fail = |err: io::Error| {
            let problem = match err.kind() {
                io::ErrorKind::NotFound => RootProblem::Missing,
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    RootProblem::NotWritable
                }
                io::ErrorKind::NotADirectory => RootProblem::NotADirectory,
                _ => RootProblem::Io,
            };
            fail(problem, Some(err))
        };
        for dir in [&layout.root, &layout.objects, &layout.locks, &layout.tmp] {
            match fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {
                    if dir == &layout.objects {
                        self.inner.absences.check_dir(&meta);
                    }
                }
                Ok(_) => return Err(fail(RootProblem::NotADirectory, None)),
                Err(err) => return Err(io_fail(err)),
            }
        }
        let unique = layout.unique(&layout.tmp, None);
        let name = unique.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
        // Named like `Cache::open`'s probe, so that recovery removes one left by a crash (and
        // may remove this one first: that is fine).
        let probe = layout.tmp.join(format!(".probe.health.{name}"));
        fs::File::create_new(&probe).map_err(io_fail)?;
        match fs::remove_file(&probe) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_fail(err)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_root_is_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = Cache::open(&root).unwrap();
        cache.check_usable().unwrap();
        fs::remove_dir_all(&root).unwrap();
        let err = cache.check_usable().unwrap_err();
        assert!(
            matches!(err, Error::RootNotUsable { problem: RootProblem::Missing, .. }),
            "{err:?}"
        );
        // A root that is there again but empty lacks its layout.
        fs::create_dir(&root).unwrap();
        let err = cache.check_usable().unwrap_err();
        assert!(
            matches!(err, Error::RootNotUsable { problem: RootProblem::Missing, .. }),
            "{err:?}"
        );
    }
}
