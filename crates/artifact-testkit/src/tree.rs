//! Directory trees in tests: [`TreeBuilder`] makes them, [`snapshot`] reads one back as a
//! value, [`assert_same_tree`] compares two (content, kinds, exec bits, symlink targets).
//!
//! These helpers panic with a message naming the path on any i/o error: they are for tests.

use std::{
    collections::{BTreeMap, hash_map::DefaultHasher},
    fmt, fs,
    hash::Hasher,
    io::Read,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
};

/// Builds a directory tree under a root, creating parents as needed.
///
/// ```
/// use artifact_testkit::{TreeBuilder, assert_same_tree};
///
/// let tmp = tempfile::tempdir().unwrap();
/// let a = TreeBuilder::new(tmp.path().join("a"));
/// a.file("src/main.rs", "fn main() {}").exec("bin/tool", "#!/bin/sh\n").dir("empty");
/// a.symlink("latest", "bin/tool");
/// let b = TreeBuilder::new(tmp.path().join("b"));
/// b.file("src/main.rs", "fn main() {}").exec("bin/tool", "#!/bin/sh\n").dir("empty");
/// b.symlink("latest", "bin/tool");
/// assert_same_tree(a.path(), b.path());
/// ```
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    root: PathBuf,
}

impl TreeBuilder {
    /// A builder for the tree at `root`, which is created (with its parents) if absent.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        TreeBuilder { root }
    }

    /// The root of the tree.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` inside the tree.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn parent_of(&self, rel: &Path) -> PathBuf {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        path
    }

    /// A regular file, mode 0644.
    pub fn file(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> &Self {
        self.file_with_mode(rel, content, 0o644)
    }

    /// An executable regular file, mode 0755.
    pub fn exec(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> &Self {
        self.file_with_mode(rel, content, 0o755)
    }

    /// A regular file with the given permission bits (set after the umask applies).
    pub fn file_with_mode(
        &self,
        rel: impl AsRef<Path>,
        content: impl AsRef<[u8]>,
        mode: u32,
    ) -> &Self {
        let path = self.parent_of(rel.as_ref());
        fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        self
    }

    /// A directory (with its parents).
    pub fn dir(&self, rel: impl AsRef<Path>) -> &Self {
        let path = self.root.join(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        self
    }

    /// A symbolic link `rel -> target` (the target is written as given).
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> &Self {
        let path = self.parent_of(rel.as_ref());
        symlink(target.as_ref(), &path)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
        self
    }

    /// A hard link `rel` to the existing file `target` (both inside the tree).
    pub fn hard_link(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> &Self {
        let path = self.parent_of(rel.as_ref());
        fs::hard_link(self.root.join(target), &path)
            .unwrap_or_else(|e| panic!("hard link {}: {e}", path.display()));
        self
    }

    /// A Unix domain socket file (something a tar stream cannot carry).
    pub fn socket(&self, rel: impl AsRef<Path>) -> &Self {
        let path = self.parent_of(rel.as_ref());
        std::os::unix::net::UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        self
    }
}

/// One entry of a [`Snapshot`].
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file: its executable bit (owner x), size and a hash of its content.
    File {
        /// The owner's executable bit.
        executable: bool,
        /// Size in bytes.
        len: u64,
        /// A 64-bit hash of the content (SipHash with fixed keys).
        hash: u64,
    },
    /// A symbolic link and its target.
    Symlink {
        /// The target, as written in the link.
        target: PathBuf,
    },
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir => write!(f, "dir"),
            Node::File { executable, len, hash } => {
                let x = if *executable { "exec " } else { "" };
                write!(f, "{x}file of {len} bytes (hash {hash:016x})")
            }
            Node::Symlink { target } => write!(f, "symlink -> {}", target.display()),
        }
    }
}

/// A tree as a value: relative path to [`Node`] (the root itself is not listed).
pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Reads the tree at `root` into a [`Snapshot`], without following symlinks. A socket, fifo or
/// device panics.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    visit(root, Path::new(""), &mut out);
    out
}

fn visit(root: &Path, rel: &Path, out: &mut Snapshot) {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let kind = meta.file_type();
        if kind.is_dir() {
            out.insert(rel.clone(), Node::Dir);
            visit(root, &rel, out);
        } else if kind.is_symlink() {
            let target =
                fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
            out.insert(rel, Node::Symlink { target });
        } else if kind.is_file() {
            let (len, hash) = hash_file(&path);
            let executable = meta.permissions().mode() & 0o100 != 0;
            out.insert(rel, Node::File { executable, len, hash });
        } else {
            panic!("{} is neither a file, a directory nor a symlink", path.display());
        }
    }
}

fn hash_file(path: &Path) -> (u64, u64) {
    let mut file =
        fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut hasher = DefaultHasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        len += n as u64;
    }
    (len, hasher.finish())
}

/// The permission bits (`mode & 0o7777`) of every entry below `root`, symlinks excluded.
pub fn modes(root: &Path) -> BTreeMap<PathBuf, u32> {
    snapshot(root)
        .into_iter()
        .filter(|(_, node)| !matches!(node, Node::Symlink { .. }))
        .map(|(rel, _)| {
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            (rel, meta.permissions().mode() & 0o7777)
        })
        .collect()
}

/// Panics, listing the differences, unless the trees at `a` and `b` hold the same paths with
/// the same kinds, contents, executable bits and symlink targets.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (left, right) = (snapshot(a), snapshot(b));
    if left == right {
        return;
    }
    let mut diffs = Vec::new();
    for (path, node) in &left {
        match right.get(path) {
            None => diffs.push(format!("  only in a: {} ({node:?})", path.display())),
            Some(other) if other != node => {
                diffs.push(format!("  differs:   {} (a: {node:?}; b: {other:?})", path.display()));
            }
            Some(_) => {}
        }
    }
    for (path, node) in &right {
        if !left.contains_key(path) {
            diffs.push(format!("  only in b: {} ({node:?})", path.display()));
        }
    }
    let shown = diffs.len().min(20);
    panic!(
        "trees differ\n  a = {}\n  b = {}\n{}{}",
        a.display(),
        b.display(),
        diffs[..shown].join("\n"),
        if diffs.len() > shown {
            format!("\n  ... and {} more", diffs.len() - shown)
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_kinds_bits_content_and_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let t = TreeBuilder::new(tmp.path().join("t"));
        t.file("a/f", "x").exec("x", "y").dir("e").symlink("l", "a/f");
        let snap = snapshot(t.path());
        let kinds: Vec<_> = snap.iter().map(|(p, n)| (p.to_str().unwrap(), n.clone())).collect();
        assert_eq!(kinds.len(), 5);
        assert_eq!(kinds[0], ("a", Node::Dir));
        assert!(matches!(kinds[1].1, Node::File { executable: false, len: 1, .. }));
        assert_eq!(kinds[3].1, Node::Symlink { target: "a/f".into() });
        assert!(matches!(kinds[4].1, Node::File { executable: true, len: 1, .. }));
        assert_eq!(modes(t.path())[Path::new("x")], 0o755);
    }

    #[test]
    fn differences_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let a = TreeBuilder::new(tmp.path().join("a"));
        let b = TreeBuilder::new(tmp.path().join("b"));
        a.file("f", "1");
        b.file("f", "2");
        let err = std::panic::catch_unwind(|| assert_same_tree(a.path(), b.path())).unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert!(message.contains("differs:   f"), "{message}");
        b.file("f", "1").exec("g", "");
        let err = std::panic::catch_unwind(|| assert_same_tree(a.path(), b.path())).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains("only in b: g"));
        a.exec("g", "");
        assert_same_tree(a.path(), b.path());
    }
}
