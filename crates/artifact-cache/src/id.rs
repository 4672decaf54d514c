//! [`ArtifactId`]: the key an artifact is stored under, and its hex text form.

use std::{fmt, hash, str::FromStr};

/// The most bytes an id may have (128 hex digits).
pub const MAX_ID_BYTES: usize = 64;

/// The key of an artifact: 1 to 64 opaque bytes, written as lowercase hex.
///
/// A build system computes it (typically a hash of a job's inputs: 20 bytes in the distbuild
/// protocol, 32 for SHA-256). Parsing accepts upper-case hex and normalises it; anything else
/// is a [`ParseIdError`]. The hex form is the only thing the cache ever turns into a file
/// name, so a valid id can never name a path outside the cache.
///
/// ```
/// use artifact_cache::ArtifactId;
///
/// let id: ArtifactId = "00FFab".parse()?;
/// assert_eq!(id.to_string(), "00ffab");
/// assert_eq!(id.as_bytes(), &[0x00, 0xff, 0xab]);
/// assert_eq!(ArtifactId::from([7u8; 20]).as_bytes().len(), 20);
/// assert!("../etc".parse::<ArtifactId>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct ArtifactId {
    len: u8,
    bytes: [u8; MAX_ID_BYTES],
}

impl ArtifactId {
    /// The raw bytes of the id.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Writes the lowercase hex form into `buf` and returns it as a string slice.
    pub(crate) fn hex<'b>(&self, buf: &'b mut [u8; 2 * MAX_ID_BYTES]) -> &'b str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let n = self.as_bytes().len();
        for (i, byte) in self.as_bytes().iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(byte >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        std::str::from_utf8(&buf[..2 * n]).expect("hex digits are ASCII")
    }
}

impl PartialEq for ArtifactId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ArtifactId {}

impl hash::Hash for ArtifactId {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for ArtifactId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order, which is also the order of the hex strings.
impl Ord for ArtifactId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 2 * MAX_ID_BYTES]))
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({self})")
    }
}

impl From<[u8; 20]> for ArtifactId {
    fn from(bytes: [u8; 20]) -> Self {
        Self::try_from(&bytes[..]).expect("20 bytes is a valid id length")
    }
}

impl From<[u8; 32]> for ArtifactId {
    fn from(bytes: [u8; 32]) -> Self {
        Self::try_from(&bytes[..]).expect("32 bytes is a valid id length")
    }
}

impl TryFrom<&[u8]> for ArtifactId {
    type Error = ParseIdError;

    /// Any 1 to 64 bytes.
    fn try_from(bytes: &[u8]) -> Result<Self, ParseIdError> {
        if bytes.is_empty() {
            return Err(ParseIdError::Empty);
        }
        if bytes.len() > MAX_ID_BYTES {
            return Err(ParseIdError::TooManyBytes { len: bytes.len() });
        }
        let mut id = ArtifactId { len: bytes.len() as u8, bytes: [0; MAX_ID_BYTES] };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(id)
    }
}

impl FromStr for ArtifactId {
    type Err = ParseIdError;

    /// 2 to 128 hex digits, an even number of them, either case.
    fn from_str(text: &str) -> Result<Self, ParseIdError> {
        let shown = || text.chars().take(2 * MAX_ID_BYTES + 8).collect::<String>();
        if text.is_empty() {
            return Err(ParseIdError::Empty);
        }
        if let Some((position, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(ParseIdError::NotHex { text: shown(), position, found });
        }
        let digits = text.len();
        if digits > 2 * MAX_ID_BYTES {
            return Err(ParseIdError::TooLong { text: shown(), digits });
        }
        if !digits.is_multiple_of(2) {
            return Err(ParseIdError::OddLength { text: shown(), digits });
        }
        let mut id = ArtifactId { len: (digits / 2) as u8, bytes: [0; MAX_ID_BYTES] };
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            id.bytes[i] = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        Ok(id)
    }
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => unreachable!("checked to be a hex digit"),
    }
}

impl serde::Serialize for ArtifactId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex(&mut [0; 2 * MAX_ID_BYTES]))
    }
}

impl<'de> serde::Deserialize<'de> for ArtifactId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ArtifactId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an artifact id: 2 to 128 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ArtifactId, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a text or byte string is not an [`ArtifactId`].
///
/// ```
/// use artifact_cache::{ArtifactId, ParseIdError};
///
/// let err = "abc".parse::<ArtifactId>().unwrap_err();
/// assert!(matches!(err, ParseIdError::OddLength { digits: 3, .. }));
/// assert_eq!(err.to_string(), "artifact id \"abc\" has an odd number of hex digits (3)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The id is empty.
    #[error("artifact id is empty")]
    Empty,
    /// A character is not a hex digit.
    #[error(
        "artifact id {text:?} has a character {found:?} that is not a hex digit at byte {position}"
    )]
    NotHex {
        /// The text given (cut short if very long).
        text: String,
        /// The byte offset of the first bad character.
        position: usize,
        /// The first bad character.
        found: char,
    },
    /// An odd number of hex digits does not make whole bytes.
    #[error("artifact id {text:?} has an odd number of hex digits ({digits})")]
    OddLength {
        /// The text given.
        text: String,
        /// How many digits it has.
        digits: usize,
    },
    /// More than 128 hex digits.
    #[error("artifact id {text:?} is too long: {digits} hex digits, at most 128")]
    TooLong {
        /// The text given (cut short).
        text: String,
        /// How many digits it has.
        digits: usize,
    },
    /// More than 64 bytes.
    #[error("artifact id is too long: {len} bytes, at most 64")]
    TooManyBytes {
        /// How many bytes were given.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<&str, &str>) {
        let got = text.parse::<ArtifactId>().map(|id| id.to_string()).map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expect, "parsing {text:?}");
    }

    #[test]
    fn parses_and_normalises() {
        check("00", Ok("00"));
        check("DEADbeef", Ok("deadbeef"));
        check(&"ab".repeat(64), Ok(&"ab".repeat(64)));
    }

    #[test]
    fn rejects_junk() {
        check("", Err("artifact id is empty"));
        check("a", Err("artifact id \"a\" has an odd number of hex digits (1)"));
        check(
            "ag",
            Err("artifact id \"ag\" has a character 'g' that is not a hex digit at byte 1"),
        );
        check(
            "../x",
            Err("artifact id \"../x\" has a character '.' that is not a hex digit at byte 0"),
        );
        check(
            " 00",
            Err("artifact id \" 00\" has a character ' ' that is not a hex digit at byte 0"),
        );
        check(
            "0é",
            Err("artifact id \"0é\" has a character 'é' that is not a hex digit at byte 1"),
        );
        let long = "0".repeat(130);
        check(
            &long,
            Err(&format!("artifact id {long:?} is too long: 130 hex digits, at most 128")),
        );
    }

    #[test]
    fn bytes_round_trip() {
        let id = ArtifactId::try_from(&[1u8, 2, 255][..]).unwrap();
        assert_eq!(id.as_bytes(), &[1, 2, 255]);
        assert_eq!(id.to_string(), "0102ff");
        assert_eq!(ArtifactId::try_from(&[][..]), Err(ParseIdError::Empty));
        assert_eq!(
            ArtifactId::try_from(&[0u8; 65][..]),
            Err(ParseIdError::TooManyBytes { len: 65 })
        );
        assert_eq!(ArtifactId::from([9u8; 32]).to_string(), "09".repeat(32));
    }

    #[test]
    fn order_and_equality_follow_bytes() {
        let a: ArtifactId = "00".parse().unwrap();
        let b: ArtifactId = "0000".parse().unwrap();
        let c: ArtifactId = "01".parse().unwrap();
        assert!(a < b && b < c);
        assert_ne!(a, b);
        assert_eq!(a, "00".parse().unwrap());
    }

    #[test]
    fn serde_is_the_hex_string() {
        let id: ArtifactId = "ABCD".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abcd\"");
        assert_eq!(serde_json::from_str::<ArtifactId>("\"abcd\"").unwrap(), id);
        assert!(serde_json::from_str::<ArtifactId>("\"xyz\"").is_err());
    }
}
