//! Symlink safety: the lexical check of one target as an entry arrives, and the physical check
//! of every symlink in a finished tree (following symlinks inside it, depth-limited).
//!
//! A target that stays inside the tree lexically can still escape through other symlinks
//! (`d/up -> ..` and `d/e -> up/..` resolve to the parent of the root), so once a tree is
//! complete every symlink in it is resolved component by component against the disk.

use std::path::Path;

use rustix::{
    fd::BorrowedFd,
    fs::{AtFlags, FileType},
    io::Errno,
};

use crate::{
    Error,
    error::{IoResultExt, entry_path},
    walk::{self, Files, Item},
};

/// How many symlinks one resolution follows before giving up. Above the kernel's own limit
/// (40), so a path the kernel can resolve is always resolved here; one that needs more fails
/// with `ELOOP` when used, and cannot escape.
const MAX_FOLLOW: u32 = 64;

/// How many bytes of symlink paths [`Symlinks`] keeps before it falls back to walking the tree.
const MAX_LISTED: usize = 4 << 20;

/// Why a symlink target is refused, lexically, or `None` when it is fine: a target must be
/// non-empty, relative, free of NUL, and resolve (from the link's directory, treating every
/// component as a plain directory) to a path inside the tree.
pub(crate) fn lexical_escape(link: &[u8], target: &[u8]) -> bool {
    if target.is_empty() || target.starts_with(b"/") || target.contains(&0) {
        return true;
    }
    let mut depth = link.split(|&b| b == b'/').count() - 1;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

/// The symlinks of a tree being written, for [`Symlinks::check`] once it is complete.
///
/// Keeps their paths while they fit in a few MiB; past that it only remembers that there were
/// some, and the check walks the tree instead.
#[derive(Debug, Default)]
pub(crate) struct Symlinks {
    /// NUL-terminated relative paths.
    paths: Vec<u8>,
    overflow: bool,
    count: u64,
}

impl Symlinks {
    pub(crate) fn push(&mut self, rel: &[u8]) {
        self.count += 1;
        if self.overflow {
            return;
        }
        if self.paths.len() + rel.len() + 1 > MAX_LISTED {
            self.overflow = true;
            self.paths = Vec::new();
            return;
        }
        self.paths.extend_from_slice(rel);
        self.paths.push(0);
    }

    /// Checks that every symlink listed resolves inside the tree at `root`.
    pub(crate) fn check(&self, root: BorrowedFd<'_>, root_path: &Path) -> Result<(), Error> {
        if self.count == 0 {
            return Ok(());
        }
        if self.overflow {
            return walk::walk(root, root_path, Files::Skip, |rel, item| match item {
                Item::Symlink { .. } => check_one(root, root_path, rel),
                _ => Ok(()),
            });
        }
        for rel in self.paths.split(|&b| b == 0).filter(|p| !p.is_empty()) {
            check_one(root, root_path, rel)?;
        }
        Ok(())
    }
}

fn check_one(root: BorrowedFd<'_>, root_path: &Path, link: &[u8]) -> Result<(), Error> {
    let on_disk = || root_path.join(entry_path(link));
    let target = rustix::fs::readlinkat(root, link, Vec::new()).with_path(on_disk())?;
    match resolves_inside(root, link, target.as_bytes()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::SymlinkEscape {
            entry: entry_path(link),
            target: entry_path(target.as_bytes()),
        }),
        Err(errno) => Err(errno).with_path(on_disk()),
    }
}

/// Resolves the symlink at `link` (relative to `root`) with target `target` physically:
/// `true` when every step stays inside the tree.
fn resolves_inside(root: BorrowedFd<'_>, link: &[u8], target: &[u8]) -> Result<bool, Errno> {
    // The directory reached so far: components known to be real directories (or, past a
    // missing one, lexical names).
    let mut path: Vec<Vec<u8>> = link.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
    path.pop();
    // Components still to resolve, the next one last.
    let mut todo: Vec<Vec<u8>> = target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect();
    let mut follows = 1;
    let mut joined = Vec::new();
    while let Some(component) = todo.pop() {
        match &component[..] {
            b"" | b"." => continue,
            b".." => {
                if path.pop().is_none() {
                    return Ok(false);
                }
                continue;
            }
            _ => {}
        }
        path.push(component);
        joined.clear();
        for (i, c) in path.iter().enumerate() {
            if i > 0 {
                joined.push(b'/');
            }
            joined.extend_from_slice(c);
        }
        let stat = match rustix::fs::statat(root, &joined[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Missing: the rest resolves lexically (stricter than the kernel, which stops).
            Err(Errno::NOENT | Errno::NOTDIR) => continue,
            Err(other) => return Err(other),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            follows += 1;
            if follows > MAX_FOLLOW {
                return Ok(true);
            }
            let next = rustix::fs::readlinkat(root, &joined[..], Vec::new())?;
            let next = next.into_bytes();
            if next.starts_with(b"/") {
                return Ok(false);
            }
            path.pop();
            todo.extend(next.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_escapes() {
        let inside: &[(&[u8], &[u8])] = &[
            (b"l", b"a"),
            (b"l", b"./a/../b"),
            (b"d/l", b".."),
            (b"d/l", b"../x"),
            (b"d/e/l", b"../../x"),
            (b"l", b"a//b/"),
        ];
        for (link, target) in inside {
            assert!(!lexical_escape(link, target), "{link:?} -> {target:?}");
        }
        let outside: &[(&[u8], &[u8])] = &[
            (b"l", b".."),
            (b"l", b"/etc"),
            (b"l", b""),
            (b"d/l", b"../.."),
            (b"d/l", b"x/../../.."),
            (b"l", b"a\0b"),
        ];
        for (link, target) in outside {
            assert!(lexical_escape(link, target), "{link:?} -> {target:?}");
        }
    }

    fn tree(links: &[(&str, &str)], dirs: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for (link, target) in links {
            std::os::unix::fs::symlink(target, dir.path().join(link)).unwrap();
        }
        dir
    }

    fn check(links: &[(&str, &str)], dirs: &[&str]) -> Result<(), Error> {
        let dir = tree(links, dirs);
        let root = walk::open_root(dir.path()).unwrap();
        let mut list = Symlinks::default();
        for (link, _) in links {
            list.push(link.as_bytes());
        }
        list.check(rustix::fd::AsFd::as_fd(&root), dir.path())
    }

    #[test]
    fn chains_that_escape_are_caught() {
        check(&[("d/up", ".."), ("d/e", "up/x")], &["d"]).unwrap();
        let err = check(&[("d/up", ".."), ("d/e", "up/..")], &["d"]).unwrap_err();
        assert!(
            matches!(err, Error::SymlinkEscape { ref entry, .. } if entry == Path::new("d/e")),
            "{err}"
        );
        let err = check(&[("a", "b/.."), ("b", "c"), ("c", ".")], &[]).unwrap_err();
        assert!(matches!(err, Error::SymlinkEscape { .. }), "{err}");
    }

    #[test]
    fn loops_and_dangling_links_are_fine() {
        check(&[("a", "b"), ("b", "a")], &[]).unwrap();
        check(&[("a", "missing/x/y"), ("d/b", "../nothing")], &["d"]).unwrap();
        let err = check(&[("a", "missing/../..")], &[]).unwrap_err();
        assert!(matches!(err, Error::SymlinkEscape { .. }));
    }

    #[test]
    fn overflowing_lists_fall_back_to_a_walk() {
        let dir = tree(&[("d/up", ".."), ("d/e", "up/..")], &["d"]);
        let root = walk::open_root(dir.path()).unwrap();
        let mut list = Symlinks { overflow: true, count: 2, ..Symlinks::default() };
        list.paths.clear();
        let err = list.check(rustix::fd::AsFd::as_fd(&root), dir.path()).unwrap_err();
        assert!(matches!(err, Error::SymlinkEscape { .. }));
    }
}
