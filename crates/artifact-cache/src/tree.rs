//! Whole-tree file-system operations: sealing a tree read-only (and fsyncing it), deleting one.

use std::{
    ffi::OsStr,
    fs, io,
    os::{
        fd::OwnedFd,
        unix::{
            ffi::OsStrExt,
            fs::{MetadataExt, PermissionsExt},
        },
    },
    path::{Path, PathBuf},
};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, chmodat, fchmod, fstat, fsync, openat, statat,
};

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
    let mut path = dir.to_path_buf();
    let mut files = 0;
    let per_file = fsync.then_some(FSYNC_PER_FILE_MAX);
    seal_at(fd, &mut path, per_file, &mut files)?;
    if fsync && files > FSYNC_PER_FILE_MAX {
        let fd = rustix::fs::open(dir, dir_flags(), Mode::empty())
            .map_err(|e| io_error(dir.to_owned(), e.into()))?;
        rustix::fs::syncfs(&fd).map_err(|e| io_error(dir.to_owned(), e.into()))?;
    }
    Ok(())
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Seals the directory open as `fd` (at `path`, for errors); counts regular files in `files`
/// and fsyncs each while the count stays within `per_file`.
fn seal_at(
    fd: OwnedFd,
    path: &mut PathBuf,
    per_file: Option<u64>,
    files: &mut u64,
) -> Result<(), Error> {
    let fail = |path: &Path, err: rustix::io::Errno| io_error(path.to_owned(), err.into());
    let mut dir = Dir::new(fd).map_err(|e| fail(path, e))?;
    let dirfd = dir
        .fd()
        .map_err(|e| fail(path, e))?
        .try_clone_to_owned()
        .map_err(|e| io_error(path.clone(), e))?;
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(|e| fail(path, e))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        path.push(OsStr::from_bytes(name.to_bytes()));
        let mut kind = entry.file_type();
        let mut stat = None;
        if kind == FileType::Unknown {
            let st = statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail(path, e))?;
            kind = FileType::from_raw_mode(st.st_mode);
            stat = Some(st);
        }
        match kind {
            FileType::Directory => {
                let sub =
                    openat(&dirfd, name, dir_flags(), Mode::empty()).map_err(|e| fail(path, e))?;
                seal_at(sub, path, per_file, files)?;
            }
            FileType::RegularFile => {
                *files += 1;
                let st = match stat {
                    Some(st) => st,
                    None => statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| fail(path, e))?,
                };
                let mode = st.st_mode & 0o7777;
                let sealed = if mode & 0o100 != 0 { 0o555 } else { 0o444 };
                if mode != sealed {
                    chmodat(&dirfd, name, Mode::from_raw_mode(sealed), AtFlags::empty())
                        .map_err(|e| fail(path, e))?;
                }
                if per_file.is_some_and(|max| *files <= max) {
                    let file = openat(
                        &dirfd,
                        name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| fail(path, e))?;
                    fsync(&file).map_err(|e| fail(path, e))?;
                }
            }
            _ => {}
        }
        path.pop();
    }
    let st = fstat(&dirfd).map_err(|e| fail(path, e))?;
    if st.st_mode & 0o7777 != 0o555 {
        fchmod(&dirfd, Mode::from_raw_mode(0o555)).map_err(|e| fail(path, e))?;
    }
    if per_file.is_some_and(|max| *files <= max) {
        fsync(&dirfd).map_err(|e| fail(path, e))?;
    }
    Ok(())
}

/// `fsync`s the file or directory at `path`.
pub(crate) fn sync(path: &Path) -> Result<(), Error> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io_error(path.to_owned(), e))
}

/// Deletes the file or tree at `path`, making read-only directories writable first. Entries
/// that vanish meanwhile (another process deleting the same trash) are fine.
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(path.to_owned(), err)),
    };
    if !meta.is_dir() {
        return ignore_missing(fs::remove_file(path), path);
    }
    let mut path = path.to_path_buf();
    remove_dir(&mut path, meta.mode())
}

fn remove_dir(path: &mut PathBuf, mode: u32) -> Result<(), Error> {
    if mode & 0o700 != 0o700 {
        ignore_missing(fs::set_permissions(&*path, fs::Permissions::from_mode(0o700)), path)?;
    }
    let entries = match fs::read_dir(&*path) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(path.clone(), err)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_error(path.clone(), err)),
        };
        path.push(entry.file_name());
        match fs::symlink_metadata(&*path) {
            Ok(meta) if meta.is_dir() => remove_dir(path, meta.mode())?,
            Ok(_) => ignore_missing(fs::remove_file(&*path), path)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(path.clone(), err)),
        }
        path.pop();
    }
    ignore_missing(fs::remove_dir(&*path), path)
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
}
