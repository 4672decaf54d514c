//! [`Layout`]: the directories and file names under a cache root, and setting them up.
//!
//! ```text
//! <root>/CACHEDIR.TAG              cache tag (backup tools skip the directory) + layout version
//! <root>/repair.lock               taken to unlink lock files left behind by a dead remover
//! <root>/objects/<hex>/tree/       a committed artifact, read-only (files 0444/0555, dirs 0555)
//! <root>/objects/<hex>/meta        its metadata (JSON); the file's mtime is the last-used time
//! <root>/locks/<hex>               its lock file (flock; 8-byte generation)
//! <root>/tmp/<hex>/<pid>.<n>/      a writer's staging directory: tree/ (filled), then meta
//! <root>/trash/<hex>.<pid>.<n>/    something being deleted (an artifact removed, a dead writer's staging)
//! <root>/quarantine/<hex>.<pid>.<n>/  a corrupt artifact moved out of objects/: tree/, meta, why
//! ```
//!
//! Committing is one `rename(tmp/<hex>/<pid>.<n>, objects/<hex>)`, so an artifact is whole or
//! absent. `tmp/<hex>/` is only touched by the holder of `<hex>`'s exclusive lock, so whatever
//! it finds there when it takes the lock was left by a dead writer. Only the hex form of a
//! validated [`ArtifactId`] ever becomes a file name.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{ArtifactId, Error, RootProblem, id::MAX_ID_BYTES};

/// The cache tag (<https://bford.info/cachedir/>) plus our layout line.
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by artifact-cache.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";
const LAYOUT_LINE: &str = "# artifact-cache layout 1";
const TAG_NAME: &str = "CACHEDIR.TAG";
const TAG_TEMP_PREFIX: &str = ".CACHEDIR.TAG.";

/// Where everything lives under one root.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) objects: PathBuf,
    pub(crate) locks: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) trash: PathBuf,
    pub(crate) quarantine: PathBuf,
    pub(crate) repair_lock: PathBuf,
    pid: u32,
}

/// Numbers the temporary names this process makes (shared by every `Layout`: two caches on one
/// root in one process must not pick the same names).
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout {
            objects: root.join("objects"),
            locks: root.join("locks"),
            tmp: root.join("tmp"),
            trash: root.join("trash"),
            quarantine: root.join("quarantine"),
            repair_lock: root.join("repair.lock"),
            root,
            pid: std::process::id(),
        }
    }

    /// `objects/<hex>`: the committed artifact's directory.
    pub(crate) fn object(&self, id: &ArtifactId) -> PathBuf {
        self.objects.join(id.hex(&mut [0; 2 * MAX_ID_BYTES]))
    }

    /// `objects/<hex>/tree`.
    pub(crate) fn tree(&self, id: &ArtifactId) -> PathBuf {
        self.object(id).join("tree")
    }

    /// `objects/<hex>/meta`.
    pub(crate) fn meta(&self, id: &ArtifactId) -> PathBuf {
        self.object(id).join("meta")
    }

    /// Calls `f` with [`meta`](Self::meta)'s path, built on the stack when it fits (the lookup
    /// of every miss of a server: no allocation).
    pub(crate) fn with_meta<R>(&self, id: &ArtifactId, f: impl FnOnce(&Path) -> R) -> R {
        use std::os::unix::ffi::OsStrExt;
        let objects = self.objects.as_os_str().as_bytes();
        let mut hex = [0; 2 * MAX_ID_BYTES];
        let hex = id.hex(&mut hex).as_bytes();
        let mut buf = [0u8; 512];
        let len = objects.len() + 1 + hex.len() + "/meta".len();
        if len > buf.len() {
            return f(&self.meta(id));
        }
        let mut at = 0;
        for part in [objects, b"/", hex, b"/meta"] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        f(Path::new(std::ffi::OsStr::from_bytes(&buf[..len])))
    }

    /// `locks/<hex>`.
    pub(crate) fn lock(&self, id: &ArtifactId) -> PathBuf {
        self.locks.join(id.hex(&mut [0; 2 * MAX_ID_BYTES]))
    }

    /// `tmp/<hex>`: where writers of `id` stage, one at a time.
    pub(crate) fn staging_dir(&self, id: &ArtifactId) -> PathBuf {
        self.tmp.join(id.hex(&mut [0; 2 * MAX_ID_BYTES]))
    }

    /// A fresh name under `dir`, unique in this process: `<hex>.<pid>.<n>` with an id (for
    /// trash), `<pid>.<n>` without (for a staging directory inside `tmp/<hex>/`).
    pub(crate) fn unique(&self, dir: &Path, id: Option<&ArtifactId>) -> PathBuf {
        let n = next();
        match id {
            Some(id) => dir.join(format!("{id}.{}.{n}", self.pid)),
            None => dir.join(format!("{}.{n}", self.pid)),
        }
    }

    /// Creates the root and its layout if needed, and checks that it is ours and writable.
    pub(crate) fn init(&self) -> Result<(), Error> {
        let fail = |problem: RootProblem, source: Option<io::Error>| Error::RootNotUsable {
            path: self.root.clone(),
            problem,
            source,
        };
        let io_fail = |err: io::Error| {
            let problem = match err.kind() {
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    RootProblem::NotWritable
                }
                io::ErrorKind::NotADirectory => RootProblem::NotADirectory,
                _ => RootProblem::Io,
            };
            fail(problem, Some(err))
        };
        match fs::metadata(&self.root) {
            Ok(meta) if !meta.is_dir() => return Err(fail(RootProblem::NotADirectory, None)),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.root).map_err(io_fail)?;
            }
            Err(err) => return Err(io_fail(err)),
        }
        self.check_tag().map_err(|e| match e {
            TagError::Io(err) => io_fail(err),
            TagError::Problem(problem) => fail(problem, None),
        })?;
        for dir in [&self.objects, &self.locks, &self.tmp, &self.trash, &self.quarantine] {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io_fail(err)),
            }
        }
        // Readable and writable as a whole: create and remove a probe where writers stage.
        let probe = self.tmp.join(format!(".probe.{}.{}", self.pid, next()));
        fs::write(&probe, b"").map_err(io_fail)?;
        match fs::remove_file(&probe) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_fail(err)),
        }
    }

    /// Reads (or, in an empty root, writes) the cache tag and checks the layout version.
    ///
    /// The tag is written to a temporary name and hard-linked into place, so a concurrent
    /// opener sees either no tag or the whole tag. The tag comes before any other entry, so a
    /// root whose listing shows entries is foreign only if it still has no tag after the
    /// listing.
    fn check_tag(&self) -> Result<(), TagError> {
        let path = self.root.join(TAG_NAME);
        loop {
            match fs::read_to_string(&path) {
                Ok(text) => {
                    return match text.lines().find(|l| l.starts_with("# artifact-cache layout")) {
                        Some(LAYOUT_LINE) => Ok(()),
                        Some(other) => Err(TagError::Problem(RootProblem::UnknownLayout {
                            found: other.into(),
                        })),
                        None => Err(TagError::Problem(RootProblem::NotACache)),
                    };
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(TagError::Io(err)),
            }
            let foreign = fs::read_dir(&self.root)
                .map_err(TagError::Io)?
                .filter_map(Result::ok)
                .any(|e| !e.file_name().to_string_lossy().starts_with(TAG_TEMP_PREFIX));
            if foreign {
                // Another opener may have tagged the root and created its layout between our
                // read of the tag and the listing: it writes the tag first, so a tag present
                // now means the entries listed may be its own. Read the tag again.
                match fs::symlink_metadata(&path) {
                    Ok(_) => continue,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        return Err(TagError::Problem(RootProblem::NotACache));
                    }
                    Err(err) => return Err(TagError::Io(err)),
                }
            }
            let n = next();
            let temp = self.root.join(format!("{TAG_TEMP_PREFIX}{}.{n}", self.pid));
            fs::write(&temp, format!("{TAG}{LAYOUT_LINE}\n")).map_err(TagError::Io)?;
            let linked = fs::hard_link(&temp, &path);
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => return Ok(()),
                // Lost the race to another opener: read what it wrote.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(TagError::Io(err)),
            }
        }
    }
}

enum TagError {
    Io(io::Error),
    Problem(RootProblem),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let layout = Layout::new("/r".into());
        let id: ArtifactId = "abcd".parse().unwrap();
        let a = layout.unique(&layout.trash, Some(&id));
        let b = layout.unique(&layout.trash, Some(&id));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("abcd."), "{name}");
        let staging = layout.unique(&layout.staging_dir(&id), None);
        assert_eq!(staging.parent().unwrap(), Path::new("/r/tmp/abcd"));
        assert_eq!(layout.tree(&id), Path::new("/r/objects/abcd/tree"));
        assert_eq!(layout.lock(&id), Path::new("/r/locks/abcd"));
    }

    #[test]
    fn the_meta_path_on_the_stack_is_the_meta_path() {
        let long_id: ArtifactId = "ab".repeat(MAX_ID_BYTES).parse().unwrap();
        for root in
            ["/r".to_owned(), format!("/{}", "d".repeat(300)), format!("/{}", "d".repeat(600))]
        {
            let layout = Layout::new(root.clone().into());
            for id in ["00".parse().unwrap(), long_id] {
                assert_eq!(layout.with_meta(&id, Path::to_owned), layout.meta(&id), "{root} {id}");
            }
        }
    }
}
