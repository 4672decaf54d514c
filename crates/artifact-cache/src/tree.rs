//! Whole-tree file-system operations: sealing a tree read-only (and fsyncing it), deleting one.
//!
//! Both work with fd-relative calls through a [`Descent`], so a tree deeper than any path the
//! kernel resolves is sealed and deleted like any other, with a bounded number of open
//! descriptors and no recursion.

mod descent;

use std::{
    fs, io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags, chmodat, fchmod, fstat, openat, statat, unlinkat},
    io::Errno,
};

use self::descent::{Descent, dir_flags};
use crate::{Error, error::io_error};

/// Trees with more regular files than this are flushed with one `syncfs` rather than an
/// `fsync` per file (see [`seal`]).
const FSYNC_PER_FILE_MAX: u64 = 64;

/// Makes the tree at `dir` read-only: regular files 0444 (0555 when the owner may execute
/// them), directories 0555, the root included. Symlinks are left alone (their mode means
/// nothing on Linux); anything else is left for the digest to reject.
///
/// With `fsync`, also flushes the tree to stable storage: an `fsync` per file and directory
/// for small trees, one `syncfs` of the file system for trees with more than
/// [`FSYNC_PER_FILE_MAX`] files (thousands of fsyncs cost seconds; one `syncfs` also flushes
/// whatever else is dirty on that file system, which is usually less).
///
/// Works relative to open directory descriptors (`openat`, `fstatat`, `fchmodat`), so each
/// entry costs one `statx` and at most one `chmod`, without resolving long paths.
pub(crate) fn seal(dir: &Path, fsync: bool) -> Result<(), Error> {
    let fd = rustix::fs::open(dir, dir_flags(), Mode::empty())
        .map_err(|e| io_error(dir.to_owned(), e.into()))?;
    let per_file = fsync.then_some(FSYNC_PER_FILE_MAX);
    let mut files = 0;
    let mut walk = Descent::new(dir, fd)?;
    loop {
        let Some((name, mut kind)) = walk.next() else {
            // Every entry of the current directory is sealed: seal the directory itself.
            let dirfd = walk.dir();
            let st = fstat(dirfd).map_err(|e| walk.fail(None, e))?;
            if st.st_mode & 0o7777 != 0o555 {
                fchmod(dirfd, Mode::from_raw_mode(0o555)).map_err(|e| walk.fail(None, e))?;
            }
            if per_file.is_some_and(|max| files <= max) {
                rustix::fs::fsync(dirfd).map_err(|e| walk.fail(None, e))?;
            }
            if walk.depth() == 0 {
                break;
            }
            walk.leave()?;
            continue;
        };
        let dirfd = walk.dir();
        let fail = |e| walk.fail(Some(&name), e);
        let mut stat = None;
        if kind == FileType::Unknown {
            let st = statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?;
            kind = FileType::from_raw_mode(st.st_mode);
            stat = Some(st);
        }
        match kind {
            FileType::Directory => {
                let sub = openat(dirfd, &name, dir_flags(), Mode::empty()).map_err(fail)?;
                walk.enter(name, sub)?;
            }
            FileType::RegularFile => {
                files += 1;
                let st = match stat {
                    Some(st) => st,
                    None => statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?,
                };
                let mode = st.st_mode & 0o7777;
                let sealed = if mode & 0o100 != 0 { 0o555 } else { 0o444 };
                if mode != sealed {
                    chmodat(dirfd, &name, Mode::from_raw_mode(sealed), AtFlags::empty())
                        .map_err(fail)?;
                }
                if per_file.is_some_and(|max| files <= max) {
                    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let file = openat(dirfd, &name, flags, Mode::empty()).map_err(fail)?;
                    rustix::fs::fsync(&file).map_err(fail)?;
                }
            }
            _ => {}
        }
    }
    drop(walk);
    if fsync && files > FSYNC_PER_FILE_MAX {
        let fd = rustix::fs::open(dir, dir_flags(), Mode::empty())
            .map_err(|e| io_error(dir.to_owned(), e.into()))?;
        rustix::fs::syncfs(&fd).map_err(|e| io_error(dir.to_owned(), e.into()))?;
    }
    Ok(())
}

/// `fsync`s the file or directory at `path`.
pub(crate) fn sync(path: &Path) -> Result<(), Error> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io_error(path.to_owned(), e))
}

/// Deletes the file or tree at `path`, making read-only directories writable first. Entries
/// that vanish meanwhile (another process deleting the same trash) are fine.
///
/// Below `path`, everything is deleted relative to open directory descriptors (`unlinkat`),
/// so a tree too deep to name by path goes like any other.
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(path.to_owned(), err)),
    };
    if !meta.is_dir() {
        return ignore_missing(fs::remove_file(path), path);
    }
    if meta.mode() & 0o700 != 0o700 {
        ignore_missing(fs::set_permissions(path, fs::Permissions::from_mode(0o700)), path)?;
    }
    let emptied = match rustix::fs::open(path, dir_flags(), Mode::empty()) {
        Ok(fd) => empty(path, fd),
        Err(errno) => Err(io_error(path.to_owned(), errno.into())),
    };
    match emptied {
        Ok(()) => ignore_missing(fs::remove_dir(path), path),
        // Someone else (another process emptying the same trash) deleted it meanwhile.
        Err(_)
            if fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Deletes everything in the directory open as `fd` (at `path`).
fn empty(path: &Path, fd: rustix::fd::OwnedFd) -> Result<(), Error> {
    let gone = |result: Result<(), Errno>| match result {
        Err(Errno::NOENT) => Ok(()),
        other => other,
    };
    let mut walk = Descent::new(path, fd)?;
    loop {
        let Some((name, mut kind)) = walk.next() else {
            if walk.depth() == 0 {
                return Ok(());
            }
            let name = walk.leave()?;
            gone(unlinkat(walk.dir(), &name, AtFlags::REMOVEDIR))
                .map_err(|e| walk.fail(Some(&name), e))?;
            continue;
        };
        let dirfd = walk.dir();
        if kind == FileType::Unknown {
            match statat(dirfd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => kind = FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(errno) => return Err(walk.fail(Some(&name), errno)),
            }
        }
        if kind != FileType::Directory {
            gone(unlinkat(dirfd, &name, AtFlags::empty()))
                .map_err(|e| walk.fail(Some(&name), e))?;
            continue;
        }
        // Directories may be sealed (0555) or worse: make each one ours to list and empty.
        let mut opened = openat(dirfd, &name, dir_flags(), Mode::empty());
        if matches!(opened, Err(Errno::ACCESS)) {
            // Only a directory that we may not read gets here; it was listed as one.
            gone(chmodat(dirfd, &name, Mode::from_raw_mode(0o700), AtFlags::empty()))
                .map_err(|e| walk.fail(Some(&name), e))?;
            opened = openat(dirfd, &name, dir_flags(), Mode::empty());
        }
        let sub = match opened {
            Ok(sub) => sub,
            Err(Errno::NOENT) => continue,
            Err(errno) => return Err(walk.fail(Some(&name), errno)),
        };
        let st = fstat(&sub).map_err(|e| walk.fail(Some(&name), e))?;
        if st.st_mode & 0o700 != 0o700 {
            fchmod(&sub, Mode::from_raw_mode(0o700)).map_err(|e| walk.fail(Some(&name), e))?;
        }
        walk.enter(name, sub)?;
    }
}

fn ignore_missing(result: io::Result<()>, path: &Path) -> Result<(), Error> {
    match result {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error(path.to_owned(), err)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn seal_then_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/file"), "x").unwrap();
        fs::write(root.join("tool"), "#!").unwrap();
        fs::set_permissions(root.join("tool"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("a/b/file", root.join("link")).unwrap();
        seal(&root, true).unwrap();
        assert_eq!(mode(&root), 0o555);
        assert_eq!(mode(&root.join("a/b")), 0o555);
        assert_eq!(mode(&root.join("a/b/file")), 0o444);
        assert_eq!(mode(&root.join("tool")), 0o555);
        assert_eq!(fs::read_link(root.join("link")).unwrap(), Path::new("a/b/file"));
        remove(&root).unwrap();
        assert!(!root.exists());
        remove(&root).unwrap();
    }

    #[test]
    fn remove_copes_with_unreadable_dirs_and_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("locked/inner")).unwrap();
        fs::write(root.join("locked/inner/f"), "x").unwrap();
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        remove(&root).unwrap();
        assert!(!root.exists());
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        remove(&file).unwrap();
        assert!(!file.exists());
    }

    /// A directory name of 200 bytes: 21 levels of them make a path longer than `PATH_MAX`.
    const LONG: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    /// Builds a chain of `depth` directories named [`LONG`] below `root`, with a file at the
    /// bottom, by fd-relative calls (the path of the bottom is longer than any path the
    /// kernel takes).
    fn deep_chain(root: &Path, depth: usize) {
        let name = std::ffi::CString::new(LONG).unwrap();
        fs::create_dir(root).unwrap();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(root, flags, Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&fd, &name, Mode::from_raw_mode(0o755)).unwrap();
            fd = openat(&fd, &name, flags, Mode::empty()).unwrap();
        }
        let file = openat(&fd, c"f", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644));
        rustix::io::write(file.unwrap(), b"deep").unwrap();
    }

    #[test]
    fn a_tree_deeper_than_any_path_is_sealed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        // 40 levels of 201 bytes ("<LONG>/"): 8,040 bytes, twice PATH_MAX, and deeper than
        // the descriptors the walk keeps open.
        let depth = 40;
        assert!(depth > descent::MAX_OPEN);
        deep_chain(&root, depth);
        let bottom = root.join(format!("{LONG}/").repeat(depth)).join("f");
        let err = fs::metadata(&bottom).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::NAMETOOLONG.raw_os_error()));
        seal(&root, true).unwrap();
        assert_eq!(mode(&root), 0o555);
        assert_eq!(mode(&root.join(LONG)), 0o555);
        remove(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn remove_reopens_closed_directories_on_the_way_up() {
        // Deeper than MAX_OPEN, so the walk back up reopens closed directories; a file in
        // every directory makes each one need its descriptor again after its child is gone.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let mut path = root.clone();
        for i in 0..3 * descent::MAX_OPEN {
            path.push(format!("d{i}"));
            fs::create_dir_all(&path).unwrap();
            fs::write(path.join("zz"), "x").unwrap();
        }
        seal(&root, false).unwrap();
        remove(&root).unwrap();
        assert!(!root.exists());
    }
}
