//! The revision envelope: what one stored revision's bytes hold, and how they are checked.
//!
//! ```text
//! offset  size  field
//! 0       1     format (1)
//! 1       1     kind: 0 document, 1 tombstone
//! 2       4     schema version, u32 big-endian (0 for a tombstone)
//! 6       8     revision, u64 big-endian
//! 14      8     timestamp, microseconds since the Unix epoch, u64 big-endian
//! 22      1     origin tag: 0 write, 1 migration, 2 revert, 3 upgrade on read
//! 23      0/8   run id, u64 big-endian, for origins 1 and 2
//! ..      n     payload: MessagePack with field names (rmp-serde `to_vec_named`); empty for a tombstone
//! end-4   4     CRC-32 of every byte before it, u32 big-endian
//! ```
//!
//! The version sits before the payload so that a reader can refuse a document newer than it knows
//! without decoding it: field-named MessagePack would otherwise decode a newer layout as an older one
//! whenever the field names happen to fit.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Revision;

const FORMAT: u8 = 1;
const HEADER: usize = 23;
const CHECKSUM: usize = 4;

/// The MessagePack nesting depth a payload may reach unless the store is told otherwise.
pub(crate) const DEFAULT_MAX_DEPTH: usize = 128;

/// What wrote a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Origin {
    /// An application's insert, update or remove.
    Write,
    /// A bulk migration run.
    Migration {
        /// The run's id in the ledger.
        run: u64,
    },
    /// The revert of a migration run, restoring the content from before it.
    Revert {
        /// The id of the run that was reverted.
        run: u64,
    },
    /// A read that upgraded an old revision and wrote the upgrade back.
    UpgradeOnRead,
}

impl Origin {
    /// Whether a revision of this origin changes nothing an application wrote: a migration or a
    /// revert keeps the document's meaning, so optimistic concurrency looks through it.
    pub(crate) fn is_transparent(self) -> bool {
        !matches!(self, Origin::Write)
    }
}

/// Whether a revision holds a document or marks its removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Document,
    Tombstone,
}

/// A revision's envelope, decoded; the payload is borrowed from the stored bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) kind: Kind,
    pub(crate) version: u32,
    pub(crate) revision: Revision,
    pub(crate) timestamp_micros: u64,
    pub(crate) origin: Origin,
    pub(crate) payload: &'a [u8],
}

/// Bytes that are not a valid revision, or a payload that does not fit its type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is shorter than its header and checksum.
    #[error("record is truncated: {len} bytes")]
    Truncated {
        /// The record's length.
        len: usize,
    },
    /// The checksum does not match: the bytes were changed after they were written.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum stored in the record.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// The record was written in a format this build does not know.
    #[error("unknown record format {0}; written by a newer revolve")]
    UnknownFormat(u8),
    /// A header field holds a value no writer produces.
    #[error("invalid record header: {0}")]
    InvalidHeader(&'static str),
    /// The payload is not one well-formed MessagePack value.
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// The payload nests arrays and maps deeper than the store allows.
    #[error("payload nests deeper than {max_depth} levels")]
    TooDeep {
        /// The store's limit (`StoreBuilder::max_depth`).
        max_depth: usize,
    },
    /// The MessagePack payload does not decode as the expected type.
    #[error("cannot decode payload")]
    Payload(#[source] rmp_serde::decode::Error),
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode payload")]
    Encode(#[source] rmp_serde::encode::Error),
    /// A failure record names a failure class this build does not know.
    #[error("unknown failure class `{class}`")]
    UnknownFailureClass {
        /// The class as stored.
        class: String,
    },
}

/// Encodes a value as field-named MessagePack.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RecordError> {
    rmp_serde::to_vec_named(value).map_err(RecordError::Encode)
}

/// Decodes field-named MessagePack, refusing nesting deeper than `max_depth` and trailing bytes.
///
/// The structure is checked first by [`check_structure`], without recursion, so that no payload,
/// however deep, can exhaust the stack of the typed decode that follows (rmp-serde's own depth
/// limit does not count enum variants).
pub(crate) fn decode_payload<T: DeserializeOwned>(
    payload: &[u8],
    max_depth: usize,
) -> Result<T, RecordError> {
    check_structure(payload, max_depth)?;
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(payload);
    // Already bounded above; rmp-serde's limit only has to stay out of the way.
    deserializer.set_max_depth(max_depth.saturating_add(1));
    T::deserialize(&mut deserializer).map_err(RecordError::Payload)
}

/// Walks one MessagePack value iteratively: it must fill `bytes` exactly and nest at most
/// `max_depth` arrays and maps (a top-level map is depth 1).
pub(crate) fn check_structure(bytes: &[u8], max_depth: usize) -> Result<(), RecordError> {
    // Elements still to read in each open container, innermost last; the outermost "container"
    // is the single top-level value.
    let mut open: Vec<u64> = vec![1];
    let mut at = 0usize;
    let truncated = || RecordError::InvalidPayload("truncated MessagePack value");
    while let Some(remaining) = open.last_mut() {
        if *remaining == 0 {
            open.pop();
            continue;
        }
        *remaining -= 1;
        let marker = *bytes.get(at).ok_or_else(truncated)?;
        at += 1;
        let mut be = |len: usize| -> Result<u64, RecordError> {
            let field = bytes.get(at..at + len).ok_or_else(truncated)?;
            at += len;
            Ok(field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        };
        let (skip, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (be(1)?, 0),
            0xc5 | 0xda => (be(2)?, 0),
            0xc6 | 0xdb => (be(4)?, 0),
            0xc7 => (be(1)? + 1, 0),
            0xc8 => (be(2)? + 1, 0),
            0xc9 => (be(4)? + 1, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 | 0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, be(2)?),
            0xdd => (0, be(4)?),
            0xde => (0, 2 * be(2)?),
            0xdf => (0, 2 * be(4)?),
            0xc1 => {
                return Err(RecordError::InvalidPayload(
                    "reserved MessagePack marker 0xc1",
                ))
            }
        };
        let skip = usize::try_from(skip).map_err(|_| truncated())?;
        at = at
            .checked_add(skip)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(truncated)?;
        if matches!(marker, 0x80..=0x9f | 0xdc..=0xdf) {
            // `open` holds the top-level slot plus one entry per container entered.
            if open.len() > max_depth {
                return Err(RecordError::TooDeep { max_depth });
            }
            open.push(children);
        }
    }
    if at == bytes.len() {
        Ok(())
    } else {
        Err(RecordError::InvalidPayload(
            "trailing bytes after the payload",
        ))
    }
}

/// Writes a revision's envelope around an already encoded payload.
pub(crate) fn encode(
    kind: Kind,
    version: u32,
    revision: Revision,
    origin: Origin,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 8 + payload.len() + CHECKSUM);
    out.push(FORMAT);
    out.push(match kind {
        Kind::Document => 0,
        Kind::Tombstone => 1,
    });
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&revision.get().to_be_bytes());
    out.extend_from_slice(&now_micros().to_be_bytes());
    match origin {
        Origin::Write => out.push(0),
        Origin::Migration { run } => {
            out.push(1);
            out.extend_from_slice(&run.to_be_bytes());
        }
        Origin::Revert { run } => {
            out.push(2);
            out.extend_from_slice(&run.to_be_bytes());
        }
        Origin::UpgradeOnRead => out.push(3),
    }
    out.extend_from_slice(payload);
    let checksum = crc32(&out);
    out.extend_from_slice(&checksum.to_be_bytes());
    out
}

/// Checks and splits a stored revision. Never panics, whatever the bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, RecordError> {
    let truncated = || RecordError::Truncated { len: bytes.len() };
    if bytes.len() < HEADER + CHECKSUM {
        return Err(truncated());
    }
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM);
    let stored = u32::from_be_bytes(array(stored).ok_or_else(truncated)?);
    let computed = crc32(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let mut reader = Reader(body);
    let format = reader.u8().ok_or_else(truncated)?;
    if format != FORMAT {
        return Err(RecordError::UnknownFormat(format));
    }
    let kind = match reader.u8().ok_or_else(truncated)? {
        0 => Kind::Document,
        1 => Kind::Tombstone,
        _ => return Err(RecordError::InvalidHeader("unknown record kind")),
    };
    let version = u32::from_be_bytes(reader.array().ok_or_else(truncated)?);
    let revision = Revision::new(u64::from_be_bytes(reader.array().ok_or_else(truncated)?))
        .ok_or(RecordError::InvalidHeader("revision 0"))?;
    let timestamp_micros = u64::from_be_bytes(reader.array().ok_or_else(truncated)?);
    let origin = match reader.u8().ok_or_else(truncated)? {
        0 => Origin::Write,
        1 => Origin::Migration {
            run: u64::from_be_bytes(reader.array().ok_or_else(truncated)?),
        },
        2 => Origin::Revert {
            run: u64::from_be_bytes(reader.array().ok_or_else(truncated)?),
        },
        3 => Origin::UpgradeOnRead,
        _ => return Err(RecordError::InvalidHeader("unknown origin")),
    };
    match kind {
        Kind::Document if version == 0 => {
            return Err(RecordError::InvalidHeader("document at version 0"))
        }
        Kind::Tombstone if !reader.0.is_empty() => {
            return Err(RecordError::InvalidHeader("tombstone with a payload"))
        }
        _ => {}
    }
    Ok(Envelope {
        kind,
        version,
        revision,
        timestamp_micros,
        origin,
        payload: reader.0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let head = self.0.get(..N)?;
        let rest: &'a [u8] = self.0.get(N..)?;
        self.0 = rest;
        array(head)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        })
}

/// CRC-32 (IEEE), as zlib and PNG compute it (crc32fast uses the CPU's carry-less multiply where
/// there is one).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rev(n: u64) -> Revision {
        Revision::new(n).unwrap()
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn envelope_round_trips() {
        let payload = encode_payload(&("a", 1u8)).unwrap();
        for origin in [
            Origin::Write,
            Origin::Migration { run: 7 },
            Origin::Revert { run: u64::MAX },
            Origin::UpgradeOnRead,
        ] {
            let bytes = encode(Kind::Document, 3, rev(9), origin, &payload);
            let envelope = decode(&bytes).unwrap();
            assert_eq!(envelope.kind, Kind::Document);
            assert_eq!(envelope.version, 3);
            assert_eq!(envelope.revision, rev(9));
            assert_eq!(envelope.origin, origin);
            assert_eq!(envelope.payload, &payload[..]);
        }
        let tombstone = encode(Kind::Tombstone, 0, rev(2), Origin::Write, &[]);
        assert_eq!(decode(&tombstone).unwrap().kind, Kind::Tombstone);
    }

    #[test]
    fn every_truncation_and_flipped_bit_is_detected() {
        let payload = encode_payload(&"hello").unwrap();
        let bytes = encode(
            Kind::Document,
            1,
            rev(1),
            Origin::Migration { run: 3 },
            &payload,
        );
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[i / 8] ^= 1 << (i % 8);
            assert!(decode(&corrupt).is_err(), "bit {i} flipped");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bomb = vec![0x91u8; 10_000]; // fixarray of one element, 10 000 deep
        bomb.push(0xc0);
        let err = decode_payload::<serde_json::Value>(&bomb, 64).unwrap_err();
        assert!(
            matches!(err, RecordError::TooDeep { max_depth: 64 }),
            "{err}"
        );
    }

    #[test]
    fn depth_counts_every_array_and_map() {
        // [[[nil]]]: three arrays.
        let three = [0x91, 0x91, 0x91, 0xc0];
        check_structure(&three, 3).unwrap();
        assert!(matches!(
            check_structure(&three, 2),
            Err(RecordError::TooDeep { max_depth: 2 })
        ));
        // {"a": {"b": 1}} as an enum variant would be written: two maps.
        let maps = encode_payload(&serde_json::json!({"a": {"b": 1}})).unwrap();
        check_structure(&maps, 2).unwrap();
        assert!(check_structure(&maps, 1).is_err());
        check_structure(&[0x01], 0).unwrap();
    }

    #[test]
    fn every_marker_is_walked_to_its_end() {
        let value = serde_json::json!({
            "s": "x".repeat(40), "long": "y".repeat(300), "n": -3, "big": u64::MAX,
            "f": 1.5, "neg": i64::MIN, "list": [1, 2, [3, {"k": null}]], "t": true,
        });
        let bytes = encode_payload(&value).unwrap();
        check_structure(&bytes, 8).unwrap();
        for len in 0..bytes.len() {
            assert!(
                check_structure(&bytes[..len], 8).is_err(),
                "truncated to {len}"
            );
        }
        // A string over 65 535 bytes takes the 32-bit length.
        let long = encode_payload(&"z".repeat(70_000)).unwrap();
        check_structure(&long, 0).unwrap();
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = encode_payload(&1u32).unwrap();
        payload.push(0);
        assert!(decode_payload::<u32>(&payload, 64).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_payload::<serde_json::Value>(&bytes, 64);
        }

        #[test]
        fn decoding_a_valid_envelope_with_arbitrary_payload_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let bytes = encode(Kind::Document, 1, rev(1), Origin::Write, &payload);
            let envelope = decode(&bytes).unwrap();
            let _ = decode_payload::<serde_json::Value>(envelope.payload, 64);
        }
    }
}
