//! The tree digest: a BLAKE3 hash over the canonical listing of a directory tree.
//!
//! The digest depends only on what a tree *is* (paths, kinds, executable bits, symlink targets
//! and file contents), never on how a tar stream encoded it (header format, PAX records, entry
//! order of a foreign archive, mtimes, owners). `docs/protocol.md` defines it byte for byte and
//! gives test vectors.
//!
//! Records are fed to a [`TreeHasher`] in canonical order: paths compared component by
//! component, each component as bytes, so a directory comes right before its contents. That is
//! the order in which `send` writes entries, so the digest of a stream from
//! `send` is computed as the bytes pass, in constant memory.

use std::{cmp::Ordering, fmt, str::FromStr};

/// The magic prefix that starts the hashed listing; changing the definition changes it.
const DOMAIN: &[u8] = b"artifact-tree-v1\n";

/// A 32-byte BLAKE3 tree digest, written as 64 lowercase hex characters.
///
/// ```
/// use tarstream::Digest;
///
/// let digest: Digest = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".parse()?;
/// assert_eq!(digest.to_string().len(), 64);
/// assert_eq!(digest, Digest::from(*digest.as_bytes()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Self {
        Digest(*hash.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The text given to [`Digest::from_str`] was not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tree digest {text:?}: expected 64 hex characters")]
pub struct ParseDigestError {
    text: String,
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseDigestError { text: text.chars().take(80).collect() };
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(err)?;
            let lo = hex_value(pair[1]).ok_or_else(err)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Digest(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Compares two relative `/`-separated paths in canonical order: component by component, each
/// component as bytes (so `a` < `a/b` < `a-c`).
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    // Mapping the separator to the smallest byte makes plain byte order component-wise order,
    // because no component contains a NUL byte.
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// A record arrived that does not sort after the one before it in canonical order.
///
/// A tree hashed in a single pass must be listed in canonical order; a reader of a foreign
/// archive whose entries come in another order hashes the materialised tree afterwards
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {path:?} is out of canonical order")]
pub struct OutOfOrder {
    /// The path that came too late, lossily decoded.
    pub path: String,
}

/// Computes a [`Digest`] from records fed in canonical order.
///
/// ```
/// use tarstream::TreeHasher;
///
/// let mut tree = TreeHasher::new();
/// tree.dir(b"bin")?;
/// tree.file(b"bin/tool", true, 5, blake3::hash(b"#!sh\n").as_bytes())?;
/// tree.symlink(b"latest", b"bin/tool")?;
/// let digest = tree.finish();
/// println!("{digest}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TreeHasher {
    hasher: blake3::Hasher,
    last: Vec<u8>,
    records: u64,
}

impl Default for TreeHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TreeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeHasher").field("records", &self.records).finish_non_exhaustive()
    }
}

impl TreeHasher {
    /// An empty listing (the digest of an empty directory, until records are added).
    pub fn new() -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(DOMAIN);
        TreeHasher { hasher, last: Vec::new(), records: 0 }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &[u8]) -> Result<(), OutOfOrder> {
        self.record(b'd', path)?;
        Ok(())
    }

    /// Adds a regular file of `size` bytes whose content hashes (plain BLAKE3) to `content`.
    pub fn file(
        &mut self,
        path: &[u8],
        executable: bool,
        size: u64,
        content: &[u8; 32],
    ) -> Result<(), OutOfOrder> {
        self.record(b'f', path)?;
        self.hasher.update(&[u8::from(executable)]);
        self.hasher.update(&size.to_le_bytes());
        self.hasher.update(content);
        Ok(())
    }

    /// Adds a symbolic link with the given target.
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> Result<(), OutOfOrder> {
        self.record(b'l', path)?;
        self.hasher.update(&(target.len() as u64).to_le_bytes());
        self.hasher.update(target);
        Ok(())
    }

    /// How many records were added.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The digest of everything added.
    pub fn finish(&self) -> Digest {
        Digest::from(self.hasher.finalize())
    }

    fn record(&mut self, kind: u8, path: &[u8]) -> Result<(), OutOfOrder> {
        if self.records > 0 && canonical_cmp(&self.last, path) != Ordering::Less {
            return Err(OutOfOrder { path: String::from_utf8_lossy(path).into_owned() });
        }
        self.last.clear();
        self.last.extend_from_slice(path);
        self.records += 1;
        self.hasher.update(&[kind]);
        self.hasher.update(&(path.len() as u64).to_le_bytes());
        self.hasher.update(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_is_component_wise() {
        let mut paths: Vec<&[u8]> = vec![b"a-c", b"a/b", b"a", b"b", b"a/b/c", b"a.d", b"a/a"];
        paths.sort_by(|a, b| canonical_cmp(a, b));
        let expect: Vec<&[u8]> = vec![b"a", b"a/a", b"a/b", b"a/b/c", b"a-c", b"a.d", b"b"];
        assert_eq!(paths, expect);
    }

    #[test]
    fn records_must_come_in_order() {
        let mut tree = TreeHasher::new();
        tree.dir(b"a").unwrap();
        tree.dir(b"a/b").unwrap();
        assert_eq!(tree.dir(b"a/b"), Err(OutOfOrder { path: "a/b".into() }));
        assert!(tree.symlink(b"a", b"x").is_err());
        tree.symlink(b"a-", b"x").unwrap();
        assert_eq!(tree.records(), 3);
    }

    #[test]
    fn digest_text_round_trips_and_rejects_junk() {
        let digest = TreeHasher::new().finish();
        let text = digest.to_string();
        assert_eq!(text.parse::<Digest>().unwrap(), digest);
        assert_eq!(text.to_uppercase().parse::<Digest>().unwrap(), digest);
        for bad in ["", "00", &text[1..], &format!("{text}0"), &text.replace(|_| true, "g")] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn kinds_and_bits_change_the_digest() {
        let content = *blake3::hash(b"x").as_bytes();
        let digests: Vec<Digest> = [
            |t: &mut TreeHasher, c: &[u8; 32]| t.file(b"x", false, 1, c),
            |t: &mut TreeHasher, c: &[u8; 32]| t.file(b"x", true, 1, c),
            |t: &mut TreeHasher, _: &[u8; 32]| t.symlink(b"x", b"x"),
            |t: &mut TreeHasher, _: &[u8; 32]| t.dir(b"x"),
        ]
        .iter()
        .map(|add| {
            let mut tree = TreeHasher::new();
            add(&mut tree, &content).unwrap();
            tree.finish()
        })
        .collect();
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
