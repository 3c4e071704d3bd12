//! The backup file: its header, its frames and their checksum (the format is described in
//! `backup.rs`). Engine-neutral: format 2 frames carry logical records; format 1 frames (sled's
//! trees key for key, from earlier releases) are read and handed to the engine as they are.

use std::collections::BTreeSet;
use std::io::{self, BufReader, BufWriter, Read, Write};

use sha2::{Digest, Sha256};

use super::backup::{BackupError, BackupSummary};
use super::head::Head;
use super::logical::{LogicalRecord, Sequence};
use super::report::{hex, PROGRESS_EVERY};
use super::validate_collection_name;
use crate::id::Revision;

pub(crate) const MAGIC: [u8; 8] = *b"REVOLVE\0";
/// The format [`Store::export`] writes: logical records.
pub(crate) const FORMAT: u32 = 2;
/// The physical format of earlier releases: sled's trees key for key.
pub(crate) const FORMAT_PHYSICAL: u32 = 1;
/// The header flag of a backup salvaged from a damaged store.
pub(crate) const FLAG_SALVAGED: u32 = 1;
pub(crate) const FRAME_TREE: u8 = 0x01;
pub(crate) const FRAME_ENTRY: u8 = 0x02;
pub(crate) const FRAME_COLLECTION: u8 = 0x10;
pub(crate) const FRAME_HEAD: u8 = 0x11;
pub(crate) const FRAME_REVISION: u8 = 0x12;
pub(crate) const FRAME_FAILURE: u8 = 0x13;
pub(crate) const FRAME_LEDGER_RUN: u8 = 0x14;
pub(crate) const FRAME_PROGRESS: u8 = 0x15;
pub(crate) const FRAME_END: u8 = 0xff;

// ---------------------------------------------------------------------------------------------
// Writing

pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    salvaged: bool,
    collections: u64,
    /// Records other than collections.
    records: u64,
}

impl<W: Write> HashingWriter<BufWriter<W>> {
    /// A backup (format 2) begun on `writer`: its signature, format number and flags written.
    pub(super) fn begin(writer: W, salvaged: bool) -> io::Result<Self> {
        let mut out = Self {
            inner: BufWriter::new(writer),
            hasher: Sha256::new(),
            bytes: 0,
            salvaged,
            collections: 0,
            records: 0,
        };
        out.write(&MAGIC)?;
        out.write(&FORMAT.to_be_bytes())?;
        let flags = if salvaged { FLAG_SALVAGED } else { 0 };
        out.write(&flags.to_be_bytes())?;
        Ok(out)
    }
}

impl<W: Write> HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// A length-prefixed byte string.
    fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a key or value longer than 4 GiB",
            )
        })?;
        self.write(&len.to_be_bytes())?;
        self.write(bytes)
    }

    /// Records other than collections written so far.
    pub(super) fn records(&self) -> u64 {
        self.records
    }

    /// Writes one record's frame.
    pub(super) fn record(&mut self, record: &LogicalRecord) -> io::Result<()> {
        match record {
            LogicalRecord::Collection { name, meta } => {
                self.collections += 1;
                self.write(&[FRAME_COLLECTION])?;
                self.chunk(name.as_bytes())?;
                match meta {
                    Some(meta) => {
                        self.write(&[1])?;
                        self.chunk(meta)?;
                    }
                    None => self.write(&[0])?,
                }
                return Ok(());
            }
            LogicalRecord::Head { id, head, .. } => {
                self.write(&[FRAME_HEAD])?;
                self.chunk(id.as_bytes())?;
                self.write(&head.encode())?;
            }
            LogicalRecord::Revision {
                id,
                revision,
                envelope,
                ..
            } => {
                self.write(&[FRAME_REVISION])?;
                self.chunk(id.as_bytes())?;
                self.write(&revision.get().to_be_bytes())?;
                self.chunk(envelope)?;
            }
            LogicalRecord::Failure { id, record, .. } => {
                self.write(&[FRAME_FAILURE])?;
                self.chunk(id.as_bytes())?;
                self.chunk(record)?;
            }
            LogicalRecord::LedgerRun { run, record, .. } => {
                self.write(&[FRAME_LEDGER_RUN])?;
                self.write(&run.to_be_bytes())?;
                self.chunk(record)?;
            }
            LogicalRecord::RunProgress { run, record, .. } => {
                self.write(&[FRAME_PROGRESS])?;
                self.write(&run.to_be_bytes())?;
                self.chunk(record)?;
            }
        }
        self.records += 1;
        Ok(())
    }

    /// Writes the end frame and the checksum, and flushes.
    pub(super) fn end(mut self) -> io::Result<BackupSummary> {
        self.write(&[FRAME_END])?;
        self.write(&self.collections.to_be_bytes())?;
        self.write(&self.records.to_be_bytes())?;
        let digest = self.hasher.clone().finalize();
        self.inner.write_all(&digest)?;
        self.inner.flush()?;
        Ok(BackupSummary {
            trees: self.collections,
            entries: self.records,
            bytes: self.bytes + 32,
            checksum: hex(&digest),
            salvaged: self.salvaged,
            format: FORMAT,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One frame of a backup, as read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Format 1: a tree's entries follow.
    Tree(Vec<u8>),
    /// Format 1: a key and its value.
    Entry(Vec<u8>, Vec<u8>),
    /// Format 2: a logical record.
    Record(LogicalRecord),
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: Sha256,
    offset: u64,
}

impl<R: Read> HashingReader<R> {
    fn read_unhashed(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                BackupError::Truncated {
                    offset: self.offset,
                }
            } else {
                BackupError::Io(error)
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut buf = [0u8; N];
        self.read_unhashed(&mut buf)?;
        self.hasher.update(buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, BackupError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A length-prefixed byte string. Reads incrementally, so a damaged length cannot make it
    /// allocate more than the input holds.
    fn chunk(&mut self) -> Result<Vec<u8>, BackupError> {
        let len = self.u32()?;
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        if buf.len() as u64 != u64::from(len) {
            return Err(BackupError::Truncated {
                offset: self.offset,
            });
        }
        self.hasher.update(&buf);
        Ok(buf)
    }
}

impl<R: Read> HashingReader<R> {
    /// A length-prefixed string that must be UTF-8.
    fn text(&mut self, at: u64, what: &'static str) -> Result<String, BackupError> {
        String::from_utf8(self.chunk()?).map_err(|_| BackupError::Corrupt {
            offset: at,
            reason: what,
        })
    }

    /// A document id, checked.
    fn id(&mut self, at: u64) -> Result<String, BackupError> {
        let id = self.text(at, "an id that is not UTF-8")?;
        crate::id::validate(&id).map_err(|_| BackupError::Corrupt {
            offset: at,
            reason: "an invalid document id",
        })?;
        Ok(id)
    }
}

/// Reads and checks a whole backup, handing each frame to `sink` as it comes. The summary is
/// returned only once the end frame's counts and checksum match and nothing follows it.
pub(crate) fn read_backup(
    reader: impl Read,
    accept_salvaged: bool,
    sink: &mut dyn FnMut(Frame) -> Result<(), BackupError>,
    progress: &mut dyn FnMut(u64),
) -> Result<BackupSummary, BackupError> {
    let mut input = HashingReader {
        inner: BufReader::new(reader),
        hasher: Sha256::new(),
        offset: 0,
    };
    let magic = input.array::<8>().map_err(|error| match error {
        BackupError::Truncated { .. } => BackupError::NotABackup,
        other => other,
    })?;
    if magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let format = input.u32()?;
    let (trees, entries, salvaged) = match format {
        FORMAT_PHYSICAL => {
            let (trees, entries) = read_physical(&mut input, sink, progress)?;
            (trees, entries, false)
        }
        FORMAT => {
            let at = input.offset;
            let flags = input.u32()?;
            if flags & !FLAG_SALVAGED != 0 {
                return Err(BackupError::Corrupt {
                    offset: at,
                    reason: "unknown header flags",
                });
            }
            let salvaged = flags & FLAG_SALVAGED != 0;
            if salvaged && !accept_salvaged {
                return Err(BackupError::Salvaged);
            }
            let (collections, records) = read_logical(&mut input, sink, progress)?;
            (collections, records, salvaged)
        }
        format => return Err(BackupError::UnsupportedFormat { format }),
    };
    let recorded_trees = input.u64()?;
    let recorded_entries = input.u64()?;
    let computed = input.hasher.clone().finalize();
    let mut recorded = [0u8; 32];
    input.read_unhashed(&mut recorded)?;
    if recorded[..] != computed[..] {
        return Err(BackupError::Checksum {
            recorded: hex(&recorded),
            computed: hex(&computed),
        });
    }
    if (recorded_trees, recorded_entries) != (trees, entries) {
        return Err(BackupError::Corrupt {
            offset: input.offset,
            reason: "the end frame's counts do not match the frames",
        });
    }
    let mut rest = [0u8; 1];
    if input.inner.read(&mut rest)? != 0 {
        return Err(BackupError::Corrupt {
            offset: input.offset,
            reason: "bytes after the end frame",
        });
    }
    progress(entries);
    Ok(BackupSummary {
        trees,
        entries,
        bytes: input.offset,
        checksum: hex(&computed),
        salvaged,
        format,
    })
}

/// Format 1's frames up to and including the end tag: trees and entries. Keys must ascend
/// within a tree and no tree may appear twice.
fn read_physical<R: Read>(
    input: &mut HashingReader<R>,
    sink: &mut dyn FnMut(Frame) -> Result<(), BackupError>,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64), BackupError> {
    let mut seen = BTreeSet::new();
    let mut last_key: Option<Vec<u8>> = None;
    let mut in_tree = false;
    let (mut trees, mut entries) = (0u64, 0u64);
    loop {
        let at = input.offset;
        let corrupt = |reason| BackupError::Corrupt { offset: at, reason };
        let [tag] = input.array::<1>()?;
        match tag {
            FRAME_TREE => {
                let name = input.chunk()?;
                if name.is_empty() {
                    return Err(corrupt("a tree without a name"));
                }
                if !seen.insert(name.clone()) {
                    return Err(corrupt("a tree appears twice"));
                }
                trees += 1;
                in_tree = true;
                last_key = None;
                sink(Frame::Tree(name))?;
            }
            FRAME_ENTRY => {
                if !in_tree {
                    return Err(corrupt("an entry before any tree"));
                }
                let key = input.chunk()?;
                let value = input.chunk()?;
                if last_key.as_ref().is_some_and(|last| *last >= key) {
                    return Err(corrupt("keys out of order"));
                }
                last_key = Some(key.clone());
                entries += 1;
                sink(Frame::Entry(key, value))?;
                if entries % PROGRESS_EVERY == 0 {
                    progress(entries);
                }
            }
            FRAME_END => return Ok((trees, entries)),
            _ => return Err(corrupt("unknown frame")),
        }
    }
}

/// Format 2's frames up to and including the end tag: collections and other records, in the
/// order `logical` describes, ids and names checked.
fn read_logical<R: Read>(
    input: &mut HashingReader<R>,
    sink: &mut dyn FnMut(Frame) -> Result<(), BackupError>,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64), BackupError> {
    let mut sequence = Sequence::default();
    let mut collection: Option<String> = None;
    let (mut collections, mut records) = (0u64, 0u64);
    loop {
        let at = input.offset;
        let corrupt = |reason| BackupError::Corrupt { offset: at, reason };
        let [tag] = input.array::<1>()?;
        if tag == FRAME_END {
            return Ok((collections, records));
        }
        let record = if tag == FRAME_COLLECTION {
            let name = input.text(at, "a collection name that is not UTF-8")?;
            if validate_collection_name(&name).is_err() {
                return Err(corrupt("an invalid collection name"));
            }
            let meta = match input.array::<1>()? {
                [0] => None,
                [1] => Some(input.chunk()?),
                _ => return Err(corrupt("a malformed collection frame")),
            };
            collection = Some(name.clone());
            LogicalRecord::Collection { name, meta }
        } else {
            let collection = collection
                .clone()
                .ok_or_else(|| corrupt("a record before any collection"))?;
            match tag {
                FRAME_HEAD => {
                    let id = input.id(at)?;
                    let head = Head::decode(&input.array::<13>()?)
                        .ok_or_else(|| corrupt("a head that does not decode"))?;
                    LogicalRecord::Head {
                        collection,
                        id,
                        head,
                    }
                }
                FRAME_REVISION => {
                    let id = input.id(at)?;
                    let revision =
                        Revision::new(input.u64()?).ok_or_else(|| corrupt("revision 0"))?;
                    let envelope = input.chunk()?;
                    LogicalRecord::Revision {
                        collection,
                        id,
                        revision,
                        envelope,
                    }
                }
                FRAME_FAILURE => {
                    let id = input.id(at)?;
                    let record = input.chunk()?;
                    LogicalRecord::Failure {
                        collection,
                        id,
                        record,
                    }
                }
                FRAME_LEDGER_RUN => {
                    let run = input.u64()?;
                    let record = input.chunk()?;
                    LogicalRecord::LedgerRun {
                        collection,
                        run,
                        record,
                    }
                }
                FRAME_PROGRESS => {
                    let run = input.u64()?;
                    let record = input.chunk()?;
                    LogicalRecord::RunProgress {
                        collection,
                        run,
                        record,
                    }
                }
                _ => return Err(corrupt("unknown frame")),
            }
        };
        sequence.next(&record).map_err(corrupt)?;
        if matches!(record, LogicalRecord::Collection { .. }) {
            collections += 1;
        } else {
            records += 1;
            if records % PROGRESS_EVERY == 0 {
                progress(records);
            }
        }
        sink(Frame::Record(record))?;
    }
}
