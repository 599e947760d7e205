//! Object identities: the lowercase hex SHA-256 of an object's raw bytes.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A string that should be a 64-hex object id is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid object id {0:?}: expected 64 hex characters")]
pub struct InvalidId(pub String);

/// The SHA-256 of an object's raw (decoded) bytes. Displayed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// Hashes `data` and returns its id.
    pub fn of(data: &[u8]) -> Self {
        let digest = Sha256::digest(data);
        Self(digest.into())
    }

    /// Wraps a finished SHA-256 digest.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// Parses 64 lowercase or uppercase hex characters. Anything else is refused, so a string that
    /// passed this constructor is safe to use as a file name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        Self::decode(s.as_bytes()).ok_or_else(|| InvalidId(s.chars().take(80).collect()))
    }

    /// 64 hex digits (either case) → digest, in one pass (listings and the stat cache hold
    /// hundreds of thousands of ids, so this is on the path of every `status`).
    fn decode(s: &[u8]) -> Option<Self> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex characters, for display (`nshard log` shows 12).
    pub fn short(&self) -> String {
        let mut h = self.to_hex();
        h.truncate(12);
        h
    }

    /// The relative path of this object inside a store: `ab/cdef…` (two-character fan-out directory,
    /// then the remaining 62 characters), like git's loose objects.
    pub fn fanout_path(&self) -> PathBuf {
        let h = self.to_hex();
        PathBuf::from(&h[..2]).join(&h[2..])
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl std::str::FromStr for ObjectId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Self::parse(s)
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_str(IdVisitor)
    }
}

/// Reads an id from a borrowed or transient string without allocating one.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = ObjectId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object id (64 lowercase hex digits)")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<ObjectId, E> {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(E::custom(format!("object id {s:?} must be lowercase hex")));
        }
        ObjectId::parse(s).map_err(E::custom)
    }
}

/// A streaming SHA-256 hasher that produces an [`ObjectId`].
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Sha256::new())
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// Finishes the hash.
    pub fn finish(self) -> ObjectId {
        ObjectId(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_roundtrip() {
        let id = ObjectId::of(b"abc");
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ObjectId::parse(&id.to_hex()).expect("valid"), id);
        assert_eq!(
            id.fanout_path(),
            PathBuf::from("ba")
                .join("7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            assert!(ObjectId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn streaming_equals_oneshot() {
        let mut h = Hasher::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), ObjectId::of(b"abc"));
    }
}
