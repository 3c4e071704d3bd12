//! `verify` on a collection tree sled cannot read through.
//!
//! sled's iterator stops at a damaged page and cannot step over it. So when the ordered walk of a
//! collection fails on damaged data, [`Check::damaged_collection`] checks it again by other
//! routes: each key space is scanned up to the damage and then again from the next key the other
//! key space names (heads name revisions and revisions name heads, see `keys`); every document
//! either space names is cross-checked with point reads of its head and its revisions, which
//! reach what a scan cannot; and the documents the counters expect are compared with the heads
//! found. Every head and revision that cannot be read is named.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::id::Revision;
use crate::store::counters::Counter;
use crate::store::engine::sled::backend;
use crate::store::engine::sled::guard::{Fault, Tree};
use crate::store::engine::sled::keys::{self, parse_head_key, parse_revision_key, Head, KeyError};
use crate::store::engine::sled::verify::{decode_counter, malformed_key, Check};
use crate::store::engine::sled::COLLECTION_TREE_PREFIX;
use crate::store::report::escape;
use crate::store::{Problem, StoreError};

/// Revisions past this many are not point-read one by one on the word of a head alone.
pub(crate) const MAX_PROBED_REVISIONS: u64 = 100_000;

/// A stretch of a key space that could not be read.
pub(crate) struct Unreadable {
    /// The last key read before it; the space's prefix when none was.
    pub(crate) after: Vec<u8>,
    /// What the storage engine reported.
    pub(crate) detail: String,
}

/// Scans the key space starting with `prefix`, going on past what cannot be read (see
/// [`scan_range`]).
pub(crate) fn scan_around(
    tree: &Tree,
    prefix: u8,
    hints: &BTreeSet<Vec<u8>>,
    visit: impl FnMut(&[u8], &[u8]),
) -> Result<Vec<Unreadable>, StoreError> {
    scan_range(
        tree,
        vec![prefix],
        Some(&[prefix.saturating_add(1)]),
        hints,
        visit,
    )
}

/// Scans the keys from `start` up to `end` (the tree's end for `None`), going on past what
/// cannot be read: after a damaged stretch it restarts at the first of `hints` or of the keys
/// past the last key read's prefixes (see [`skips`]) beyond every key read or tried, reads back
/// from a restart towards the damage, then searches what it stepped over by bisection (see
/// [`bisect`]). Returns the stretches it could not read. A key may be visited twice.
pub(crate) fn scan_range(
    tree: &Tree,
    mut start: Vec<u8>,
    end: Option<&[u8]>,
    hints: &BTreeSet<Vec<u8>>,
    mut visit: impl FnMut(&[u8], &[u8]),
) -> Result<Vec<Unreadable>, StoreError> {
    let upper = end.map_or(Bound::Unbounded, |end| Bound::Excluded(end.to_vec()));
    let mut damage: Vec<Unreadable> = Vec::new();
    // Whether a key was read since the last damaged stretch (so one stretch is reported once).
    let mut read_since = true;
    // The last key read (the start before any was): skips go past its prefixes, shortest last.
    let mut last_read = start.clone();
    // Where the damaged stretch being stepped over begins: a restart past it that reads also
    // reads backwards, down to here, what lies between the damage and the restart point.
    let mut gap: Option<Vec<u8>> = None;
    // The stretches stepped over, as (last key read before, first key read after): searched
    // again by bisection once the scan is done.
    let mut gaps: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    loop {
        let mut floor = start.clone();
        let mut first = None;
        let mut failed = None;
        for entry in tree.range::<Vec<u8>, _>((Bound::Included(start.clone()), upper.clone())) {
            match entry {
                Ok((key, value)) => {
                    floor = key.to_vec();
                    last_read.clone_from(&floor);
                    read_since = true;
                    if first.is_none() {
                        first = Some(floor.clone());
                    }
                    visit(&key, &value);
                }
                Err(Fault::Corrupt { detail, .. }) => {
                    failed = Some(detail);
                    break;
                }
                Err(fault) => return Err(backend(fault)),
            }
        }
        if let (Some(low), Some(first)) = (gap.take(), first) {
            let mut high = first;
            let range = (Bound::Excluded(low.clone()), Bound::Excluded(high.clone()));
            for entry in tree.range::<Vec<u8>, _>(range).rev() {
                match entry {
                    Ok((key, value)) => {
                        visit(&key, &value);
                        high = key.to_vec();
                    }
                    Err(Fault::Corrupt { .. }) => break,
                    Err(fault) => return Err(backend(fault)),
                }
            }
            gaps.push((low, Some(high)));
        }
        let Some(detail) = failed else {
            break;
        };
        if gap.is_none() {
            gap = Some(last_read.clone());
        }
        if read_since {
            damage.push(Unreadable {
                after: floor.clone(),
                detail,
            });
            read_since = false;
        }
        // Past every key read and every start tried: the next hint, or else the nearest key
        // that differs from the last one read in an earlier byte (the damaged page holds a
        // stretch of neighbouring keys; the next page starts further on).
        // (A start is never past the keys read from it: `floor` is the furthest.) A skip that
        // read nothing is followed by the skip past a shorter prefix of the same key.
        let hint = hints
            .range::<Vec<u8>, _>((Bound::Excluded(floor.clone()), Bound::Unbounded))
            .next()
            .cloned();
        let skip = skips(&last_read).find(|key| *key > floor);
        let next = match (hint, skip) {
            (Some(hint), Some(skip)) => hint.min(skip),
            (hint, skip) => match hint.or(skip) {
                Some(next) => next,
                None => break,
            },
        };
        if end.is_some_and(|end| next.as_slice() >= end) {
            break;
        }
        start = next;
    }
    if let Some(low) = gap {
        gaps.push((low, end.map(<[u8]>::to_vec)));
    }
    bisect(tree, gaps, &mut visit)?;
    Ok(damage)
}

/// Probes between a damaged stretch's ends before giving up on what lies there.
const MAX_PROBES: usize = 1024;

/// Searches the stretches a scan stepped over for pages still readable between damaged ones:
/// scans from a key halfway between each stretch's ends, then halfway between what that read
/// (or did not) and the ends, breadth first, up to [`MAX_PROBES`] probes in all.
fn bisect(
    tree: &Tree,
    gaps: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    visit: &mut impl FnMut(&[u8], &[u8]),
) -> Result<(), StoreError> {
    let mut queue: std::collections::VecDeque<(Vec<u8>, Option<Vec<u8>>)> = gaps.into();
    let mut probes = 0;
    while let Some((low, high)) = queue.pop_front() {
        if probes >= MAX_PROBES {
            break;
        }
        let Some(mid) = between(&low, high.as_deref()) else {
            continue;
        };
        probes += 1;
        let upper = high.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let mut last = None;
        let mut failed = false;
        for entry in tree.range::<Vec<u8>, _>((Bound::Included(mid.clone()), upper)) {
            match entry {
                Ok((key, value)) => {
                    visit(&key, &value);
                    last = Some(key.to_vec());
                }
                Err(Fault::Corrupt { .. }) => {
                    failed = true;
                    break;
                }
                Err(fault) => return Err(backend(fault)),
            }
        }
        queue.push_back((low, Some(mid.clone())));
        if failed {
            queue.push_back((last.unwrap_or(mid), high));
        }
    }
    Ok(())
}

/// A key strictly between `low` and `high` (the end of the key space for `None`), near the
/// middle; `None` when there is none.
fn between(low: &[u8], high: Option<&[u8]>) -> Option<Vec<u8>> {
    let top = [0xff_u8, 0xff];
    let high = high.unwrap_or(&top);
    let len = low.len().max(high.len()) + 1;
    let digits = |key: &[u8]| {
        let mut padded = key.to_vec();
        padded.resize(len, 0);
        padded
    };
    let (low_digits, high_digits) = (digits(low), digits(high));
    // (low + high) / 2 in base 256, most significant byte first.
    let mut sum = vec![0u16; len + 1];
    let mut carry = 0u16;
    for at in (0..len).rev() {
        let digit = u16::from(*low_digits.get(at)?) + u16::from(*high_digits.get(at)?) + carry;
        *sum.get_mut(at + 1)? = digit & 0xff;
        carry = digit >> 8;
    }
    *sum.first_mut()? = carry;
    let mut mid = Vec::with_capacity(len);
    let mut remainder = 0u16;
    for digit in sum {
        let value = remainder * 256 + digit;
        mid.push(u8::try_from(value / 2).ok()?);
        remainder = value % 2;
    }
    // `sum` has one more digit than the keys: its quotient's first byte is zero.
    let mid = mid.split_off(1);
    (low < mid.as_slice() && mid.as_slice() < high).then_some(mid)
}

/// The keys just past every prefix of `key`, nearest first: each prefix with its last byte
/// incremented (a prefix ending in `0xff` has none).
fn skips(key: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (1..=key.len()).rev().filter_map(|len| {
        let (last, prefix) = key.get(..len)?.split_last()?;
        let last = last.checked_add(1)?;
        let mut skip = prefix.to_vec();
        skip.push(last);
        Some(skip)
    })
}

/// What a point read found.
pub(crate) enum Point<T> {
    Found(T),
    Absent,
    Unreadable,
}

pub(crate) fn point(tree: &Tree, key: &[u8]) -> Result<Point<sled::IVec>, StoreError> {
    match tree.get(key) {
        Ok(Some(value)) => Ok(Point::Found(value)),
        Ok(None) => Ok(Point::Absent),
        Err(Fault::Corrupt { .. }) => Ok(Point::Unreadable),
        Err(fault) => Err(backend(fault)),
    }
}

impl Check<'_> {
    /// Checks a collection whose tree cannot be walked in order (see the module's notes).
    // Scan, cross-check, count: one pass each, in order; splitting further only scatters them.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn damaged_collection(&mut self, name: &str, tree: &Tree) -> Result<(), StoreError> {
        let tree_name = format!("{COLLECTION_TREE_PREFIX}{name}");
        let none = BTreeSet::new();

        // Heads, then revisions with the heads' ids as restart points, then heads again with the
        // revisions' ids if the first pass stopped at damage.
        let mut heads: BTreeMap<String, Option<Head>> = BTreeMap::new();
        // Keys that do not parse, by key: a second pass may meet them again.
        let mut malformed: BTreeMap<Vec<u8>, KeyError> = BTreeMap::new();
        let mut visit_head = |key: &[u8], value: &[u8]| match parse_head_key(key) {
            Ok(id) => {
                heads.insert(id.to_owned(), Head::decode(value));
            }
            Err(error) => {
                malformed.insert(key.to_vec(), error);
            }
        };
        let head_damage = scan_around(tree, keys::HEAD, &none, &mut visit_head)?;
        let head_hints: BTreeSet<Vec<u8>> = heads.keys().map(|id| keys::revisions_of(id)).collect();
        let mut revisions: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let revision_damage =
            scan_around(
                tree,
                keys::REVISION,
                &head_hints,
                |key, _| match parse_revision_key(key) {
                    Ok((id, revision)) => {
                        revisions.entry(id.to_owned()).or_default().insert(revision);
                    }
                    Err(error) => {
                        malformed.insert(key.to_vec(), error);
                    }
                },
            )?;
        let mut head_damage = head_damage;
        if !head_damage.is_empty() {
            let revision_hints: BTreeSet<Vec<u8>> =
                revisions.keys().map(|id| keys::head(id)).collect();
            let mut again: BTreeMap<String, Option<Head>> = BTreeMap::new();
            head_damage =
                scan_around(
                    tree,
                    keys::HEAD,
                    &revision_hints,
                    |key, value| match parse_head_key(key) {
                        Ok(id) => {
                            again.insert(id.to_owned(), Head::decode(value));
                        }
                        Err(error) => {
                            malformed.insert(key.to_vec(), error);
                        }
                    },
                )?;
            heads.extend(again);
        }
        for (space, damage) in [(keys::HEAD, head_damage), (keys::REVISION, revision_damage)] {
            for stretch in damage {
                self.report.problem(Problem::Unreadable {
                    tree: tree_name.clone(),
                    after: if stretch.after == [space] {
                        String::new()
                    } else {
                        escape(&stretch.after)
                    },
                    error: stretch.detail,
                });
            }
        }
        for (key, error) in malformed {
            self.report.problem(malformed_key(&tree_name, &key, error));
        }

        // Every document either space names, cross-checked with point reads.
        let ids: BTreeSet<String> = heads.keys().chain(revisions.keys()).cloned().collect();
        let mut actual: BTreeMap<Counter, u64> = BTreeMap::new();
        let mut found = 0u64;
        for id in ids {
            let seen = heads.get(&id).copied();
            let scanned = revisions.remove(&id).unwrap_or_default();
            if self.cross_check(name, tree, id, seen, scanned, &mut actual)? {
                found += 1;
            }
        }
        self.tolerant(&tree_name, |check| {
            check.failures(name, &tree_name, tree, &mut actual)
        })?;
        // The counters: what they expect, against what was found.
        let mut stored: BTreeMap<Counter, u64> = BTreeMap::new();
        let counter_damage = scan_around(tree, keys::COUNTER, &none, |key, value| {
            if let Ok((counter, count)) = decode_counter(key, value) {
                stored.insert(counter, count);
            }
        })?;
        let expected: u64 = stored
            .iter()
            .filter(|(counter, _)| !matches!(counter, Counter::Failed(_)))
            .map(|(_, count)| count)
            .sum();
        if counter_damage.is_empty() {
            if expected > found {
                self.report.problem(Problem::Unaccounted {
                    collection: name.to_owned(),
                    expected,
                    found,
                });
            }
            self.tolerant(&tree_name, |check| check.counters(name, tree, &actual))?;
        } else {
            self.report.problem(Problem::Unreadable {
                tree: tree_name.clone(),
                after: escape(&[keys::COUNTER]),
                error: "the counters cannot be read".to_owned(),
            });
        }
        self.tolerant(&tree_name, |check| check.cursors(name, &tree_name, tree))?;
        self.tolerant(&tree_name, |check| check.stray_keys(&tree_name, tree))?;
        let documents = self.report.documents;
        (self.progress)(documents);
        Ok(())
    }

    /// Cross-checks one document with point reads of its head and every revision either key
    /// space names; `seen` is its head as the scan found it (`Some(None)`: found, not decoding).
    /// Returns whether a head was found.
    #[allow(clippy::option_option)]
    fn cross_check(
        &mut self,
        name: &str,
        tree: &Tree,
        id: String,
        seen: Option<Option<Head>>,
        scanned: BTreeSet<u64>,
        actual: &mut BTreeMap<Counter, u64>,
    ) -> Result<bool, StoreError> {
        let head = match seen {
            Some(head) => Point::Found(head),
            None => match point(tree, &keys::head(&id))? {
                Point::Found(bytes) => Point::Found(Head::decode(&bytes)),
                Point::Absent => Point::Absent,
                Point::Unreadable => Point::Unreadable,
            },
        };
        let mut numbers = scanned;
        if let Point::Found(Some(head)) = &head {
            numbers.extend(1..=head.revision.get().min(MAX_PROBED_REVISIONS));
        }
        let mut readable = Vec::new();
        let mut unreadable = false;
        let mut lost = BTreeSet::new();
        for number in numbers {
            let Some(revision) = Revision::new(number) else {
                continue;
            };
            match point(tree, &keys::revision(&id, revision))? {
                Point::Found(bytes) => readable.push((number, bytes)),
                Point::Absent => {}
                Point::Unreadable => {
                    unreadable = true;
                    lost.insert(number);
                    self.report.problem(Problem::UnreadableRevision {
                        collection: name.to_owned(),
                        id: id.clone(),
                        revision: number,
                    });
                }
            }
        }
        let found = matches!(head, Point::Found(_));
        match head {
            Point::Found(head) => {
                if unreadable {
                    // The chain has holes damage made: name them, and count the head.
                    self.report.documents += 1;
                    self.chain_around(name, &id, &readable, &lost);
                    if let Some(head) = head {
                        *actual.entry(Counter::of(head)).or_insert(0) += 1;
                    }
                } else {
                    let revisions = (!readable.is_empty()).then_some(&readable[..]);
                    self.document(name, (id, head), revisions, actual);
                }
            }
            Point::Unreadable => {
                self.chain_around(name, &id, &readable, &lost);
                self.report.problem(Problem::UnreadableHead {
                    collection: name.to_owned(),
                    id,
                });
            }
            Point::Absent => {
                self.chain_around(name, &id, &readable, &lost);
                if !readable.is_empty() {
                    self.report.problem(Problem::RevisionsWithoutHead {
                        collection: name.to_owned(),
                        revisions: u64::try_from(readable.len()).unwrap_or(u64::MAX),
                        id,
                    });
                }
            }
        }
        Ok(found)
    }

    /// As [`chain`](Check::chain), without reporting as missing the revisions already named
    /// unreadable (`lost`).
    fn chain_around(
        &mut self,
        name: &str,
        id: &str,
        readable: &[(u64, sled::IVec)],
        lost: &BTreeSet<u64>,
    ) {
        let listed = self.report.problems.len();
        self.chain(name, id, readable);
        let mut kept = Vec::new();
        for problem in self.report.problems.drain(listed..) {
            match problem {
                Problem::MissingRevisions { from, to, .. }
                    if (from..=to).all(|number| lost.contains(&number)) =>
                {
                    self.report.problem_count -= 1;
                }
                other => kept.push(other),
            }
        }
        self.report.problems.extend(kept);
    }

    /// Runs one check of the ordered walk, turning damage it meets into a problem.
    fn tolerant(
        &mut self,
        tree_name: &str,
        check: impl FnOnce(&mut Self) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match check(self) {
            Err(StoreError::StorageCorrupt { detail, .. }) => {
                self.report.problem(Problem::Unreadable {
                    tree: tree_name.to_owned(),
                    after: String::new(),
                    error: detail,
                });
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_finds_a_key_strictly_inside_or_none() {
        let low = b"rn0025\0\0\0\0\0\0\0\0\x01".as_slice();
        let high = b"rn0100".as_slice();
        let mid = between(low, Some(high)).unwrap();
        assert!(low < mid.as_slice() && mid.as_slice() < high, "{mid:?}");
        assert!(mid.starts_with(b"rn00"), "{mid:?}");
        let open = between(b"h", None).unwrap();
        assert!(open.as_slice() > b"h".as_slice());
        // Nothing lies between a key and the same key followed by a zero byte.
        assert_eq!(between(b"a", Some(b"a\0")), None);
        assert_eq!(between(b"a", Some(b"a")), None);
    }

    #[test]
    fn skips_pass_each_prefix_nearest_first() {
        let all: Vec<Vec<u8>> = skips(b"ab\xff").collect();
        assert_eq!(all, [b"ac".to_vec(), b"b".to_vec()]);
    }
}
