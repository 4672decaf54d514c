//! [`ObjectInfo`]: what a store object says about the artifact it holds, kept in the object's
//! own user metadata (`x-amz-meta-artifact-digest` and friends), or in a sidecar object where
//! the backend keeps none (a local directory).

use artifact_cache::{ArtifactId, Metadata};
use object_store::{Attribute, AttributeValue, Attributes};
use tarstream::Digest;

use crate::Error;

/// The metadata key of the tree digest (lowercase hex BLAKE3, as in the cache).
pub const DIGEST_KEY: &str = "artifact-digest";
/// The metadata key of the artifact's size (bytes of file content).
pub const SIZE_KEY: &str = "artifact-size";
/// The metadata key of the artifact's file count.
pub const FILES_KEY: &str = "artifact-files";

/// An artifact as its store object describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The artifact.
    pub id: ArtifactId,
    /// The tree digest the object's content must have.
    pub digest: Digest,
    /// Bytes of file content in the tree.
    pub size: u64,
    /// Regular files in the tree.
    pub files: u64,
    /// Length of the object (the tar stream), in bytes.
    pub object_bytes: u64,
    /// The object's entity tag, if the store gives one.
    pub e_tag: Option<String>,
}

/// The artifact fields of [`ObjectInfo`], before the object's own facts are known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) files: u64,
}

impl Fields {
    pub(crate) fn of(metadata: &Metadata) -> Fields {
        Fields { digest: metadata.digest, size: metadata.size, files: metadata.files }
    }

    /// As user metadata attributes.
    pub(crate) fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        for (key, value) in self.pairs() {
            attributes.insert(Attribute::Metadata(key.into()), AttributeValue::from(value));
        }
        attributes
    }

    /// From user metadata attributes.
    pub(crate) fn from_attributes(
        id: ArtifactId,
        store: &str,
        attributes: &Attributes,
    ) -> Result<Fields, Error> {
        let get = |key: &'static str| {
            attributes.get(&Attribute::Metadata(key.into())).map(|value| value.as_ref().to_owned())
        };
        Fields::parse(id, store, get)
    }

    /// As the text of a sidecar object: one `key=value` line per field.
    pub(crate) fn sidecar(&self) -> String {
        self.pairs().iter().map(|(key, value)| format!("{key}={value}\n")).collect()
    }

    /// From the text of a sidecar object.
    pub(crate) fn from_sidecar(id: ArtifactId, store: &str, text: &[u8]) -> Result<Fields, Error> {
        let text = String::from_utf8_lossy(text);
        let get = |key: &'static str| {
            text.lines().find_map(|line| {
                line.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_owned())
            })
        };
        Fields::parse(id, store, get)
    }

    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (DIGEST_KEY, self.digest.to_string()),
            (SIZE_KEY, self.size.to_string()),
            (FILES_KEY, self.files.to_string()),
        ]
    }

    fn parse(
        id: ArtifactId,
        store: &str,
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Fields, Error> {
        let bad = |reason: String| Error::BadMetadata { id, store: store.to_owned(), reason };
        let field = |key: &'static str| get(key).ok_or_else(|| bad(format!("no {key}")));
        let number = |key: &'static str| {
            field(key)?.trim().parse::<u64>().map_err(|_| bad(format!("{key} is not a number")))
        };
        let digest = field(DIGEST_KEY)?
            .trim()
            .parse::<Digest>()
            .map_err(|_| bad(format!("{DIGEST_KEY} is not a digest")))?;
        Ok(Fields { digest, size: number(SIZE_KEY)?, files: number(FILES_KEY)? })
    }

    pub(crate) fn info(
        self,
        id: ArtifactId,
        object_bytes: u64,
        e_tag: Option<String>,
    ) -> ObjectInfo {
        ObjectInfo {
            id,
            digest: self.digest,
            size: self.size,
            files: self.files,
            object_bytes,
            e_tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields { digest: Digest::from([7; 32]), size: 12, files: 3 }
    }

    #[test]
    fn attributes_round_trip() {
        let id: ArtifactId = "ab".parse().unwrap();
        let back = Fields::from_attributes(id, "s3://b", &fields().attributes()).unwrap();
        assert_eq!((back.digest, back.size, back.files), (fields().digest, 12, 3));
    }

    #[test]
    fn sidecar_round_trip_and_damage() {
        let id: ArtifactId = "ab".parse().unwrap();
        let text = fields().sidecar();
        let back = Fields::from_sidecar(id, "file:///d", text.as_bytes()).unwrap();
        assert_eq!((back.digest, back.size, back.files), (fields().digest, 12, 3));
        let err = Fields::from_sidecar(id, "file:///d", b"artifact-size=1\n").unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        assert_eq!(
            err.to_string(),
            "object of artifact ab in file:///d has bad metadata: no artifact-digest"
        );
    }
}
