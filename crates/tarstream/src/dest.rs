//! The destination of `receive`: creates entries relative to the destination's fd, never
//! following a symlink, with a stack of open directory fds reused across consecutive entries.
//!
//! Every component of every path is opened with `O_NOFOLLOW | O_DIRECTORY` from its parent's
//! fd, so a symlink received earlier (or planted by a racing process) can never redirect a
//! write outside the tree: opening it fails with `ELOOP`, which is reported as
//! [`Error::ThroughSymlink`]. Files are created with `O_CREAT | O_EXCL`, so nothing is ever
//! overwritten.

use std::{
    fs::File,
    io,
    mem::MaybeUninit,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use rustix::{
    fd::{AsFd, BorrowedFd},
    fs::{AtFlags, FileType, Mode, OFlags, RawDir},
    io::Errno,
};

use crate::{
    Error,
    error::{IoResultExt, entry_path},
};

/// The open destination tree.
pub(crate) struct Dest {
    root: OwnedFd,
    root_path: PathBuf,
    /// The directories of the last entry's parent path, from the root down.
    stack: Vec<(Vec<u8>, OwnedFd)>,
    /// Modes for new regular files: (plain, executable).
    file_modes: (u32, u32),
    umask: Option<u32>,
}

const DIR_MODE: u32 = 0o755;

impl Dest {
    /// Opens `dir` as the destination: creates it (one level) if absent; otherwise it must be
    /// an empty directory.
    pub(crate) fn open(dir: &Path, read_only: bool) -> Result<Dest, Error> {
        match rustix::fs::mkdir(dir, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => return Err(errno).with_path(dir),
        }
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::NOTDIR => Error::DestinationNotEmpty { path: dir.to_path_buf() },
            other => Error::Io { path: dir.to_path_buf(), source: other.into() },
        })?;
        if !is_empty_dir(root.as_fd()).with_path(dir)? {
            return Err(Error::DestinationNotEmpty { path: dir.to_path_buf() });
        }
        let file_modes = if read_only { (0o444, 0o555) } else { (0o644, 0o755) };
        Ok(Dest {
            root,
            root_path: dir.to_path_buf(),
            stack: Vec::new(),
            file_modes,
            umask: umask(),
        })
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    pub(crate) fn on_disk(&self, path: &[u8]) -> PathBuf {
        self.root_path.join(entry_path(path))
    }

    /// Opens (creating where missing, each after `on_create(prefix)` agreed) the parent
    /// directories of `path`, and returns where the last component starts.
    fn enter_parent(
        &mut self,
        path: &[u8],
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let name_start = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let parent = &path[..name_start.saturating_sub(1)];
        let mut depth = 0;
        let mut pos = 0;
        let components = if parent.is_empty() { None } else { Some(parent.split(|&b| b == b'/')) };
        for component in components.into_iter().flatten() {
            let end = pos + component.len();
            if depth < self.stack.len() && self.stack[depth].0 == component {
                depth += 1;
            } else {
                self.stack.truncate(depth);
                let fd = self.open_or_create_dir(path, &path[..end], component, on_create)?;
                self.stack.push((component.to_vec(), fd));
                depth += 1;
            }
            pos = end + 1;
        }
        self.stack.truncate(depth);
        Ok(name_start)
    }

    fn parent_fd(&self) -> BorrowedFd<'_> {
        self.stack.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd())
    }

    /// Opens the directory `name` (whose path is `prefix`) inside the current parent for the
    /// entry `entry`, creating it if absent.
    fn open_or_create_dir(
        &self,
        entry: &[u8],
        prefix: &[u8],
        name: &[u8],
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<OwnedFd, Error> {
        let parent = self.parent_fd();
        let mut tried = false;
        let mut created = false;
        loop {
            match open_dir_nofollow(parent, name) {
                Ok(fd) => {
                    if created {
                        self.fix_mode(&fd, DIR_MODE, prefix)?;
                    }
                    return Ok(fd);
                }
                Err(Errno::NOENT) if !tried => {
                    tried = true;
                    on_create(prefix)?;
                    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
                        Ok(()) => created = true,
                        Err(Errno::EXIST) => {}
                        Err(errno) => return Err(errno).with_path(self.on_disk(prefix)),
                    }
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(self.not_a_dir(parent, name, entry, prefix));
                }
                Err(errno) => return Err(errno).with_path(self.on_disk(prefix)),
            }
        }
    }

    /// The error for a parent component that exists but is not a directory.
    fn not_a_dir(&self, parent: BorrowedFd<'_>, name: &[u8], entry: &[u8], prefix: &[u8]) -> Error {
        if is_symlink(parent, name) {
            Error::ThroughSymlink { entry: entry_path(entry), symlink: entry_path(prefix) }
        } else {
            Error::Conflict { entry: entry_path(entry), reason: "a parent is not a directory" }
        }
    }

    /// Sets the mode with `fchmod` when the umask took bits away at creation.
    fn fix_mode(&self, fd: &OwnedFd, mode: u32, path: &[u8]) -> Result<(), Error> {
        if self.umask.is_none_or(|umask| umask & mode != 0) {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).with_path(self.on_disk(path))?;
        }
        Ok(())
    }

    /// Creates the directory `path`; `Ok(false)` if a directory is there already.
    pub(crate) fn mkdir(
        &mut self,
        path: &[u8],
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let start = self.enter_parent(path, on_create)?;
        let name = &path[start..];
        let parent = self.parent_fd();
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) => {
                if self.umask.is_none_or(|umask| umask & DIR_MODE != 0) {
                    let fd = open_dir_nofollow(parent, name).with_path(self.on_disk(path))?;
                    self.fix_mode(&fd, DIR_MODE, path)?;
                }
                Ok(true)
            }
            Err(Errno::EXIST) => {
                let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .with_path(self.on_disk(path))?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                    Ok(false)
                } else {
                    Err(Error::Conflict { entry: entry_path(path), reason: "already exists" })
                }
            }
            Err(errno) => Err(errno).with_path(self.on_disk(path)),
        }
    }

    /// Creates the regular file `path`, open for writing.
    pub(crate) fn create_file(
        &mut self,
        path: &[u8],
        executable: bool,
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<File, Error> {
        let start = self.enter_parent(path, on_create)?;
        let mode = if executable { self.file_modes.1 } else { self.file_modes.0 };
        let fd = rustix::fs::openat(
            self.parent_fd(),
            &path[start..],
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|errno| self.create_error(errno, path))?;
        self.fix_mode(&fd, mode, path)?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `path -> target`.
    pub(crate) fn symlink(
        &mut self,
        path: &[u8],
        target: &[u8],
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.enter_parent(path, on_create)?;
        rustix::fs::symlinkat(target, self.parent_fd(), &path[start..])
            .map_err(|errno| self.create_error(errno, path))
    }

    /// Creates `path` as a hard link to the regular file `target` (both normalised paths in
    /// the tree), or as a copy of it where the file system refuses the link.
    pub(crate) fn hard_link(
        &mut self,
        path: &[u8],
        target: &[u8],
        on_create: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let bad = |reason| Error::BadHardLink {
            entry: entry_path(path),
            target: entry_path(target),
            reason,
        };
        if path == target {
            return Err(bad("links to itself"));
        }
        let start = self.enter_parent(path, on_create)?;
        // Open the target's directory without following links and without creating anything.
        let tname_start = target.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let mut tparent: Option<OwnedFd> = None;
        if tname_start > 0 {
            for component in target[..tname_start - 1].split(|&b| b == b'/') {
                let at = tparent.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
                tparent = Some(open_dir_nofollow(at, component).map_err(|errno| match errno {
                    Errno::LOOP | Errno::NOTDIR if is_symlink(at, component) => {
                        bad("the target's path goes through a symlink")
                    }
                    Errno::NOENT | Errno::NOTDIR | Errno::LOOP => bad("the target does not exist"),
                    other => Error::Io { path: self.on_disk(target), source: other.into() },
                })?);
            }
        }
        let tdir = tparent.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
        let tname = &target[tname_start..];
        let stat =
            rustix::fs::statat(tdir, tname, AtFlags::SYMLINK_NOFOLLOW).map_err(
                |errno| match errno {
                    Errno::NOENT | Errno::NOTDIR => bad("the target does not exist"),
                    other => Error::Io { path: self.on_disk(target), source: other.into() },
                },
            )?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(bad("the target is not a regular file"));
        }
        let parent = self.parent_fd();
        let name = &path[start..];
        match rustix::fs::linkat(tdir, tname, parent, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(errno @ Errno::EXIST) => Err(self.create_error(errno, path)),
            Err(Errno::PERM | Errno::MLINK | Errno::XDEV | Errno::NOTSUP | Errno::ACCESS) => {
                let mut from = File::from(
                    rustix::fs::openat(
                        tdir,
                        tname,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .with_path(self.on_disk(target))?,
                );
                let mode = stat.st_mode & 0o777;
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                )
                .map_err(|errno| self.create_error(errno, path))?;
                self.fix_mode(&fd, mode, path)?;
                io::copy(&mut from, &mut File::from(fd)).with_path(self.on_disk(path))?;
                Ok(())
            }
            Err(errno) => Err(errno).with_path(self.on_disk(path)),
        }
    }

    fn create_error(&self, errno: Errno, path: &[u8]) -> Error {
        match errno {
            Errno::EXIST => Error::Conflict { entry: entry_path(path), reason: "already exists" },
            other => Error::Io { path: self.on_disk(path), source: other.into() },
        }
    }
}

fn is_symlink(parent: BorrowedFd<'_>, name: &[u8]) -> bool {
    rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink)
}

fn open_dir_nofollow(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// True when the directory holds nothing but `.` and `..`.
fn is_empty_dir(fd: BorrowedFd<'_>) -> rustix::io::Result<bool> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut iter = RawDir::new(fd, &mut buf);
    while let Some(entry) = iter.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The process umask, read once from `/proc/self/status` (changing it to read it would race
/// with other threads creating files). `None` when unknown: modes are then always set with
/// `fchmod`.
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_umask(&status)
    })
}

fn parse_umask(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_is_parsed_from_proc_status() {
        assert_eq!(parse_umask("Name:\tx\nUmask:\t0027\nState:\tR\n"), Some(0o027));
        assert_eq!(parse_umask("Name:\tx\n"), None);
        assert!(umask().is_some());
    }
}
