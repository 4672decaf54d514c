//! [`Descent`]: a depth-first walk down a directory tree with fd-relative calls, holding a
//! bounded number of directory descriptors however deep the tree is.
//!
//! A tree may be deeper than any path the kernel resolves (`PATH_MAX`, 4096 bytes), so nothing
//! here builds a path to reach an entry: each directory is opened relative to its parent's
//! descriptor. Only the deepest [`MAX_OPEN`] directories of the current path (and the root)
//! stay open; a directory whose descriptor was closed on the way down is reopened through
//! `..` on the way back up (checked by device and inode), or, should that fail, from the
//! nearest open ancestor by name. The walk uses no recursion, so its stack use does not grow
//! with depth either.

use std::{
    ffi::{CStr, CString, OsStr},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use rustix::{
    fs::{FileType, Mode, OFlags, RawDir, Stat, fstat, openat},
    io::Errno,
};

use crate::{Error, error::io_error};

/// How many directories below the root keep their descriptors open.
pub(super) const MAX_OPEN: usize = 32;

/// Flags for opening a directory of the tree.
pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// One directory on the current path.
struct Level {
    /// Open for the root and (at most) the deepest [`MAX_OPEN`] levels.
    fd: Option<OwnedFd>,
    /// The directory's name in its parent (empty for the root).
    name: CString,
    /// Device and inode, to check a directory reopened through `..`.
    ident: (u64, u64),
    /// Entries not visited yet: their NUL-terminated names back to back, and (start, type).
    names: Vec<u8>,
    entries: Vec<(usize, FileType)>,
}

/// A walk down the tree below a root directory.
pub(super) struct Descent {
    root_path: PathBuf,
    /// The root, then each directory on the path to the current one.
    levels: Vec<Level>,
    dirbuf: Vec<MaybeUninit<u8>>,
}

impl Descent {
    /// Starts at the directory open as `fd`, whose path (for error messages) is `root_path`.
    pub(super) fn new(root_path: &Path, fd: OwnedFd) -> Result<Descent, Error> {
        let mut descent = Descent {
            root_path: root_path.to_owned(),
            levels: Vec::new(),
            dirbuf: vec![MaybeUninit::uninit(); 32 * 1024],
        };
        let stat = fstat(&fd).map_err(|e| descent.fail(None, e))?;
        descent.push(CString::default(), fd, &stat)?;
        Ok(descent)
    }

    /// How far below the root the current directory is (0: the root).
    pub(super) fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    /// The current directory's descriptor.
    pub(super) fn dir(&self) -> BorrowedFd<'_> {
        self.levels
            .last()
            .and_then(|level| level.fd.as_ref())
            .expect("the current directory is always open")
            .as_fd()
    }

    /// Takes the next entry of the current directory not visited yet (name, type from the
    /// directory entry, possibly `Unknown`); `None` once all were taken.
    pub(super) fn next(&mut self) -> Option<(CString, FileType)> {
        let level = self.levels.last_mut().expect("the root is never left");
        let (start, kind) = level.entries.pop()?;
        let name = CStr::from_bytes_until_nul(&level.names[start..])
            .expect("names are stored NUL-terminated")
            .to_owned();
        Some((name, kind))
    }

    /// Goes down into `name`, a directory of the current one, open as `fd`; lists it and
    /// returns its status.
    pub(super) fn enter(&mut self, name: CString, fd: OwnedFd) -> Result<Stat, Error> {
        let stat = fstat(&fd).map_err(|e| self.fail(Some(&name), e))?;
        self.push(name, fd, &stat)?;
        // Keep at most MAX_OPEN levels below the root open: close the one leaving the window.
        if let Some(far) = self.levels.len().checked_sub(MAX_OPEN + 1).filter(|&i| i > 0) {
            self.levels[far].fd = None;
        }
        Ok(stat)
    }

    /// Goes back up from the current directory (not the root) to its parent; returns the
    /// name of the directory left, as an entry of the (now current) parent.
    pub(super) fn leave(&mut self) -> Result<CString, Error> {
        assert!(self.depth() > 0, "the root is never left");
        let child = self.levels.pop().expect("checked above");
        if self.levels.last().is_some_and(|parent| parent.fd.is_none()) {
            let child_fd = child.fd.as_ref().expect("the current directory is always open");
            self.reopen_parent(child_fd).map_err(|e| self.fail(None, e))?;
        }
        Ok(child.name)
    }

    /// The path of `name` in the current directory (or of the directory itself), for messages.
    pub(super) fn path(&self, name: Option<&CStr>) -> PathBuf {
        let mut path = self.root_path.clone();
        for level in &self.levels[1..] {
            path.push(OsStr::from_bytes(level.name.to_bytes()));
        }
        if let Some(name) = name {
            path.push(OsStr::from_bytes(name.to_bytes()));
        }
        path
    }

    /// An error about `name` in the current directory (or about the directory itself).
    pub(super) fn fail(&self, name: Option<&CStr>, errno: Errno) -> Error {
        io_error(self.path(name), errno.into())
    }

    fn push(&mut self, name: CString, fd: OwnedFd, stat: &Stat) -> Result<(), Error> {
        let mut level = Level {
            fd: None,
            name,
            ident: (stat.st_dev, stat.st_ino),
            names: Vec::new(),
            entries: Vec::new(),
        };
        let mut failed = None;
        let mut dir = RawDir::new(&fd, &mut self.dirbuf);
        while let Some(entry) = dir.next() {
            let entry = match entry {
                Ok(entry) => entry,
                // Deleted while we read it (another process emptying the same trash).
                Err(Errno::NOENT) => break,
                Err(errno) => {
                    failed = Some(errno);
                    break;
                }
            };
            let name = entry.file_name().to_bytes_with_nul();
            if name == b".\0" || name == b"..\0" {
                continue;
            }
            level.entries.push((level.names.len(), entry.file_type()));
            level.names.extend_from_slice(name);
        }
        if let Some(errno) = failed {
            let mut path = self.path(None);
            if !level.name.is_empty() {
                path.push(OsStr::from_bytes(level.name.to_bytes()));
            }
            return Err(io_error(path, errno.into()));
        }
        level.fd = Some(fd);
        self.levels.push(level);
        Ok(())
    }

    /// Reopens the current directory, whose descriptor was closed, from its child `child`.
    fn reopen_parent(&mut self, child: &OwnedFd) -> Result<(), Errno> {
        let top = self.levels.len() - 1;
        let want = self.levels[top].ident;
        let up = openat(
            child,
            c"..",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(|fd| Ok((fstat(&fd)?, fd)));
        let fd = match up {
            Ok((stat, fd)) if (stat.st_dev, stat.st_ino) == want => fd,
            // The child was moved (or deleted): go down again from the nearest open ancestor.
            _ => {
                let open = (0..top).rev().find(|&i| self.levels[i].fd.is_some()).expect("root");
                let mut fd = openat(
                    self.levels[open].fd.as_ref().expect("found open"),
                    self.levels[open + 1].name.as_c_str(),
                    dir_flags(),
                    Mode::empty(),
                )?;
                for level in &self.levels[open + 2..=top] {
                    fd = openat(&fd, level.name.as_c_str(), dir_flags(), Mode::empty())?;
                }
                let stat = fstat(&fd)?;
                if (stat.st_dev, stat.st_ino) != want {
                    // Not the directory we left: the tree changed under us.
                    return Err(Errno::NOENT);
                }
                fd
            }
        };
        self.levels[top].fd = Some(fd);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_descriptors_open() {
        let dir = tempfile::tempdir().unwrap();
        let depth = 3 * MAX_OPEN;
        let chain = (0..depth).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
        std::fs::create_dir_all(dir.path().join(chain)).unwrap();
        let open = |walk: &Descent| walk.levels.iter().filter(|l| l.fd.is_some()).count();
        let fd = rustix::fs::open(dir.path(), dir_flags(), Mode::empty()).unwrap();
        let mut walk = Descent::new(dir.path(), fd).unwrap();
        while let Some((name, kind)) = walk.next() {
            assert_eq!(kind, FileType::Directory);
            let sub = openat(walk.dir(), &name, dir_flags(), Mode::empty()).unwrap();
            walk.enter(name, sub).unwrap();
            assert!(open(&walk) <= MAX_OPEN + 1, "{} open at depth {}", open(&walk), walk.depth());
        }
        assert_eq!(walk.depth(), depth);
        assert_eq!(
            walk.path(None),
            dir.path().join((0..depth).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/"))
        );
        // Back up: each directory is reopened (through `..`) when it becomes current again.
        let mut up = depth;
        let mut leave = |walk: &mut Descent| {
            up -= 1;
            assert_eq!(walk.leave().unwrap().to_str().unwrap(), format!("d{up}"));
            assert!(open(walk) <= MAX_OPEN + 1);
            let st = fstat(walk.dir()).unwrap();
            assert_eq!((st.st_dev, st.st_ino), walk.levels.last().unwrap().ident);
        };
        while walk.levels[walk.levels.len() - 2].fd.is_some() {
            leave(&mut walk);
        }
        // Move the current directory elsewhere: its `..` is no longer the directory we came
        // from, which is then reopened by name from the nearest open ancestor.
        let moved = dir.path().join("moved");
        std::fs::rename(walk.path(None), &moved).unwrap();
        leave(&mut walk);
        std::fs::remove_dir_all(moved).unwrap();
        while walk.depth() > 0 {
            leave(&mut walk);
        }
        assert_eq!(walk.depth(), 0);
    }
}
