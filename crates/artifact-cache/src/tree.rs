//! Whole-tree file-system operations: sealing a tree read-only (and fsyncing it), deleting one.

use std::{
    fs, io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::{Error, error::io_error};

/// Makes the tree at `dir` read-only: regular files 0444 (0555 when the owner may execute
/// them), directories 0555, the root included. With `fsync`, also flushes every file and
/// directory to stable storage. Symlinks are left alone (their mode means nothing on Linux).
pub(crate) fn seal(dir: &Path, fsync: bool) -> Result<(), Error> {
    let mut path = dir.to_path_buf();
    seal_dir(&mut path, fsync)
}

fn seal_dir(path: &mut PathBuf, fsync: bool) -> Result<(), Error> {
    let entries = fs::read_dir(&*path).map_err(|e| io_error(path.clone(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(path.clone(), e))?;
        let kind = entry.file_type().map_err(|e| io_error(entry.path(), e))?;
        path.push(entry.file_name());
        if kind.is_dir() {
            seal_dir(path, fsync)?;
        } else if kind.is_file() {
            let mode = entry.metadata().map_err(|e| io_error(path.clone(), e))?.mode();
            let sealed = if mode & 0o100 != 0 { 0o555 } else { 0o444 };
            if mode & 0o7777 != sealed {
                fs::set_permissions(&*path, fs::Permissions::from_mode(sealed))
                    .map_err(|e| io_error(path.clone(), e))?;
            }
            if fsync {
                sync(path)?;
            }
        }
        path.pop();
    }
    let mode = fs::symlink_metadata(&*path).map_err(|e| io_error(path.clone(), e))?.mode();
    if mode & 0o7777 != 0o555 {
        fs::set_permissions(&*path, fs::Permissions::from_mode(0o555))
            .map_err(|e| io_error(path.clone(), e))?;
    }
    if fsync {
        sync(path)?;
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
