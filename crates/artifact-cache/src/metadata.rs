//! [`Metadata`] of an artifact, [`Usage`] and [`GcReport`], and the metadata file on disk.

use std::{
    fs,
    io::{self, Read, Write},
    path::Path,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tarstream::Digest;

use crate::{ArtifactId, Error, error::IoResultExt};

/// What the cache knows about a committed artifact.
///
/// Serialises (for `artifact ls --json` and the HTTP listing) with the id and digest as hex and
/// the times as RFC 3339 text in UTC:
///
/// ```
/// use artifact_cache::{ArtifactId, Cache};
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::open(dir.path().join("cache"))?;
/// let id: ArtifactId = "c0ffee".parse()?;
/// let writer = cache.create(&id)?;
/// std::fs::write(writer.path().join("out.txt"), "hello")?;
/// let meta = writer.commit()?;
/// assert_eq!((meta.size, meta.files, meta.dirs), (5, 1, 0));
/// let json = serde_json::to_value(&meta)?;
/// assert_eq!(json["id"], "c0ffee");
/// assert!(json["created"].as_str().unwrap().ends_with('Z'));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The artifact's id.
    pub id: ArtifactId,
    /// Bytes of regular-file content (what the size bound counts).
    pub size: u64,
    /// Regular files.
    pub files: u64,
    /// Directories below the artifact's root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// The tree digest (see tarstream's `docs/protocol.md`).
    #[serde(with = "digest_hex")]
    pub digest: Digest,
    /// When it was committed.
    #[serde(with = "rfc3339")]
    pub created: SystemTime,
    /// When it was last read (or committed). Kept in memory per process and written to disk
    /// at most once per [`Options::last_used_resolution`](crate::Options::last_used_resolution).
    #[serde(with = "rfc3339")]
    pub last_used: SystemTime,
}

/// How much the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes of file content, summed over the artifacts.
    pub bytes: u64,
    /// Committed artifacts.
    pub artifacts: u64,
}

/// What [`Cache::gc`](crate::Cache::gc) did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GcReport {
    /// The artifacts evicted, least recently used first.
    pub evicted: Vec<ArtifactId>,
    /// Bytes of file content freed by the evictions.
    pub evicted_bytes: u64,
    /// Artifacts that would have been evicted but were locked (read or being removed).
    pub skipped_locked: u64,
    /// Leftovers of dead writers and removers deleted.
    pub leftovers_removed: u64,
    /// Lock files of absent artifacts deleted.
    pub stale_locks_removed: u64,
    /// Quarantined artifacts deleted (see [`Cache::quarantine`](crate::Cache::quarantine)).
    pub quarantine_removed: u64,
    /// What the cache holds afterwards.
    pub usage: Usage,
}

/// The metadata file, `objects/<hex id>/meta`, as JSON. Its mtime is the persisted last-used
/// time.
#[derive(Debug, Serialize, Deserialize)]
struct MetaFile {
    /// The layout version of this record.
    v: u32,
    id: ArtifactId,
    size: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    #[serde(with = "digest_hex")]
    digest: Digest,
    /// Nanoseconds since the Unix epoch.
    created_ns: u64,
}

/// Writes `meta` to a new file at `path` (inside a staging directory, so nobody sees it half
/// written), with its mtime set to `meta.last_used`.
pub(crate) fn write(path: &Path, meta: &Metadata, fsync: bool) -> Result<(), Error> {
    let record = MetaFile {
        v: 1,
        id: meta.id,
        size: meta.size,
        files: meta.files,
        dirs: meta.dirs,
        symlinks: meta.symlinks,
        digest: meta.digest,
        created_ns: nanos(meta.created),
    };
    let mut text = serde_json::to_vec(&record).expect("metadata serialises");
    text.push(b'\n');
    let mut file = fs::File::create_new(path).with_path(path)?;
    file.write_all(&text).with_path(path)?;
    file.set_modified(meta.last_used).with_path(path)?;
    if fsync {
        file.sync_all().with_path(path)?;
    }
    Ok(())
}

/// Reads the metadata file at `path`. `Ok(None)` when it does not exist.
pub(crate) fn read(path: &Path, id: &ArtifactId) -> Result<Option<Metadata>, Error> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_path(path),
    };
    let mtime = file.metadata().and_then(|m| m.modified()).with_path(path)?;
    let mut text = Vec::with_capacity(512);
    file.read_to_end(&mut text).with_path(path)?;
    let bad = |reason: String| Error::BadMetadata { path: path.to_owned(), reason };
    let record: MetaFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if record.v != 1 {
        return Err(bad(format!("unknown record version {}", record.v)));
    }
    if record.id != *id {
        return Err(bad(format!("records id {} instead", record.id)));
    }
    Ok(Some(Metadata {
        id: record.id,
        size: record.size,
        files: record.files,
        dirs: record.dirs,
        symlinks: record.symlinks,
        digest: record.digest,
        created: SystemTime::UNIX_EPOCH + Duration::from_nanos(record.created_ns),
        last_used: mtime,
    }))
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

mod digest_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use tarstream::Digest;

    pub(super) fn serialize<S: Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(digest)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            id: "0a0b".parse().unwrap(),
            size: 10,
            files: 2,
            dirs: 1,
            symlinks: 1,
            digest: tarstream::TreeHasher::new().finish(),
            created: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            last_used: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_100, 5),
        }
    }

    #[test]
    fn file_round_trips_with_mtime_as_last_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let meta = sample();
        write(&path, &meta, true).unwrap();
        assert_eq!(read(&path, &meta.id).unwrap(), Some(meta.clone()));
        assert_eq!(read(&dir.path().join("absent"), &meta.id).unwrap(), None);
        let other: ArtifactId = "ff".parse().unwrap();
        assert!(matches!(read(&path, &other), Err(Error::BadMetadata { .. })));
    }

    #[test]
    fn garbage_is_bad_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        fs::write(&path, "{not json").unwrap();
        let err = read(&path, &sample().id).unwrap_err();
        assert!(matches!(err, Error::BadMetadata { .. }), "{err:?}");
    }

    #[test]
    fn json_form_is_hex_and_rfc3339() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["id"], "0a0b");
        assert_eq!(json["created"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(json["digest"].as_str().unwrap().len(), 64);
        let back: Metadata = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample());
    }
}
