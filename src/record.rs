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
    /// The MessagePack payload does not decode as the expected type.
    #[error("cannot decode payload")]
    Payload(#[source] rmp_serde::decode::Error),
    /// A value could not be encoded as MessagePack.
    #[error("cannot encode payload")]
    Encode(#[source] rmp_serde::encode::Error),
}

/// Encodes a value as field-named MessagePack.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RecordError> {
    rmp_serde::to_vec_named(value).map_err(RecordError::Encode)
}

/// Decodes field-named MessagePack, refusing nesting deeper than `max_depth` and trailing bytes.
pub(crate) fn decode_payload<T: DeserializeOwned>(
    payload: &[u8],
    max_depth: usize,
) -> Result<T, RecordError> {
    let mut reader = payload;
    let mut deserializer = rmp_serde::Deserializer::new(&mut reader);
    deserializer.set_max_depth(max_depth);
    let value = T::deserialize(&mut deserializer).map_err(RecordError::Payload)?;
    if reader.is_empty() {
        Ok(value)
    } else {
        Err(RecordError::InvalidHeader(
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

/// CRC-32 (IEEE), bitwise with a 256-entry table built at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            #[allow(clippy::cast_possible_truncation)] // i < 256
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[usize::from(crc.to_le_bytes()[0] ^ byte)] ^ (crc >> 8);
    }
    !crc
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
        assert!(matches!(err, RecordError::Payload(_)), "{err}");
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
