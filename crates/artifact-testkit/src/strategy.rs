//! Proptest strategies for random directory trees: [`tree_spec`] generates a [`TreeSpec`],
//! which [`TreeSpec::write`] materialises.
//!
//! Trees have unicode and long names (past the 100 bytes of a ustar name field), empty
//! directories, symlinks to other entries of the tree (relative, so they stay inside;
//! chains included) or to nothing, executable files, and file sizes from 0 to a few MiB with
//! most files small. File contents come from a seed, so a shrunk case stays small to print.

use std::{collections::BTreeMap, fmt, path::Path};

use proptest::{collection, prelude::*};

use crate::tree::TreeBuilder;

/// One entry of a [`TreeSpec`].
#[derive(Clone, PartialEq, Eq)]
pub enum EntrySpec {
    /// A directory (listed before anything inside it).
    Dir,
    /// A regular file of `size` pseudo-random bytes from `seed`.
    File {
        /// Size in bytes.
        size: usize,
        /// Seed of the content (see [`content`]).
        seed: u64,
        /// Mode 0755 instead of 0644.
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// The relative target.
        target: String,
    },
}

impl fmt::Debug for EntrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntrySpec::Dir => write!(f, "Dir"),
            EntrySpec::File { size, seed, executable } => {
                write!(
                    f,
                    "File({size} bytes, seed {seed}{})",
                    if *executable { ", exec" } else { "" }
                )
            }
            EntrySpec::Symlink { target } => write!(f, "Symlink({target:?})"),
        }
    }
}

/// A directory tree as a list of entries, parents before children, paths `/`-separated and
/// relative to the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSpec {
    /// The entries, in an order where every parent comes before its children.
    pub entries: Vec<(String, EntrySpec)>,
}

impl TreeSpec {
    /// Creates the tree under `root` (created if absent; it should be empty).
    pub fn write(&self, root: &Path) {
        let tree = TreeBuilder::new(root);
        for (path, entry) in &self.entries {
            match entry {
                EntrySpec::Dir => {
                    tree.dir(path);
                }
                EntrySpec::File { size, seed, executable } => {
                    let mode = if *executable { 0o755 } else { 0o644 };
                    tree.file_with_mode(path, content(*seed, *size), mode);
                }
                EntrySpec::Symlink { target } => {
                    tree.symlink(path, target);
                }
            }
        }
    }

    /// The total size of the files.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, e)| match e {
                EntrySpec::File { size, .. } => *size as u64,
                _ => 0,
            })
            .sum()
    }
}

/// `size` pseudo-random bytes from `seed` (xorshift64*), the content of a generated file.
pub fn content(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    if state == 0 {
        state = 1;
    }
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A file or directory name: short ASCII, unicode, or long (101 to 255 bytes).
pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9_][a-z0-9_. -]{0,11}",
        2 => "[a-zé日本語ßΩñ😀_-]{1,8}",
        1 => (101usize..=255).prop_map(|n| "l".repeat(n)),
        1 => (34usize..=85).prop_map(|n| "日".repeat(n)),
    ]
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// A file size: mostly under 1 KiB, sometimes up to 64 KiB, rarely up to 3 MiB.
pub fn file_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        40 => 0usize..1024,
        8 => 1024usize..65_536,
        1 => 65_536usize..3 << 20,
    ]
}

#[derive(Clone, Debug)]
enum Node {
    File {
        size: usize,
        seed: u64,
        executable: bool,
    },
    /// A symlink to the entry picked by `pick` among all entries, or (when `dangling`) to a
    /// name that does not exist.
    Symlink {
        pick: usize,
        dangling: bool,
    },
    Dir(BTreeMap<String, Node>),
}

/// Random trees of up to about `max_entries` entries, nested up to 4 directories deep.
pub fn tree_spec_with(max_entries: u32) -> impl Strategy<Value = TreeSpec> {
    let leaf = prop_oneof![
        8 => (file_size(), any::<u64>(), prop::bool::weighted(0.25))
            .prop_map(|(size, seed, executable)| Node::File { size, seed, executable }),
        1 => Just(Node::Dir(BTreeMap::new())),
        2 => (any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, dangling)| Node::Symlink { pick, dangling }),
    ];
    let node = leaf.prop_recursive(4, max_entries, 8, |inner| {
        collection::btree_map(name(), inner, 0..8).prop_map(Node::Dir)
    });
    collection::btree_map(name(), node, 0..10).prop_map(|root| flatten(&root))
}

/// [`tree_spec_with`] with the default size (about 48 entries).
pub fn tree_spec() -> impl Strategy<Value = TreeSpec> {
    tree_spec_with(48)
}

fn flatten(root: &BTreeMap<String, Node>) -> TreeSpec {
    let mut nodes = Vec::new();
    collect(root, "", &mut nodes);
    let targets: Vec<String> = nodes.iter().map(|(path, _)| path.clone()).collect();
    let entries = nodes
        .into_iter()
        .map(|(path, node)| {
            let entry = match node {
                &Node::File { size, seed, executable } => {
                    EntrySpec::File { size, seed, executable }
                }
                Node::Dir(_) => EntrySpec::Dir,
                &Node::Symlink { pick, dangling } => {
                    let target = if dangling {
                        relative(&path, "no-such-entry")
                    } else {
                        relative(&path, &targets[pick % targets.len()])
                    };
                    EntrySpec::Symlink { target }
                }
            };
            (path, entry)
        })
        .collect();
    TreeSpec { entries }
}

fn collect<'a>(dir: &'a BTreeMap<String, Node>, prefix: &str, out: &mut Vec<(String, &'a Node)>) {
    for (name, node) in dir {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        out.push((path.clone(), node));
        if let Node::Dir(children) = node {
            collect(children, &path, out);
        }
    }
}

/// The relative path from the directory holding `link` to `target` (both relative to the
/// root): `..` up to the common ancestor, then down.
pub fn relative(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.split('/').collect();
    let from = &from[..from.len() - 1];
    let to: Vec<&str> = target.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() { ".".to_owned() } else { parts.join("/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_targets_climb_to_the_common_ancestor() {
        assert_eq!(relative("l", "a/b"), "a/b");
        assert_eq!(relative("a/l", "a/b"), "b");
        assert_eq!(relative("a/x/l", "b/c"), "../../b/c");
        assert_eq!(relative("a/l", "a"), ".");
        assert_eq!(relative("l", "l"), "l");
    }

    #[test]
    fn content_is_deterministic() {
        assert_eq!(content(7, 100), content(7, 100));
        assert_ne!(content(7, 100), content(8, 100));
        assert_eq!(content(7, 13).len(), 13);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn generated_trees_can_be_written(spec in tree_spec_with(16)) {
            let tmp = tempfile::tempdir().unwrap();
            spec.write(&tmp.path().join("t"));
            let snap = crate::tree::snapshot(&tmp.path().join("t"));
            prop_assert_eq!(snap.len(), spec.entries.len());
        }
    }
}
