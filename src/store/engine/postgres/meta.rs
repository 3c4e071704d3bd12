//! A collection's `_meta` record on PostgreSQL: the record without its schema history in
//! `revolve_collections.meta`, and each history entry a row of `revolve_schema_history`
//! (append-only). The engine boundary still sees one record: [`read`] joins the two, [`write`]
//! splits what it is given, with `registry::split_meta` and `registry::join_meta`.
//!
//! A record that does not split exactly (one this build would encode differently, or that does
//! not decode) is kept whole in `meta`, with no history rows, so that no byte of it is lost.

use std::time::{Duration, Instant, SystemTime};

use postgres::error::SqlState;
use postgres::GenericClient;

use super::error::db;
use super::pool::Pool;
use crate::record::RecordError;
use crate::store::engine::DecideMeta;
use crate::store::error::BackendError;
use crate::store::registry::{join_meta, split_meta, SplitMeta};
use crate::store::StoreError;

/// The record and its history rows, from one snapshot.
const READ: &str = "SELECT c.meta,
            (SELECT array_agg(h.seq ORDER BY h.seq) FROM revolve_schema_history h
             WHERE h.collection = c.id),
            (SELECT array_agg(h.record ORDER BY h.seq) FROM revolve_schema_history h
             WHERE h.collection = c.id)
     FROM revolve_collections c WHERE c.name = $1";
/// A collection's history rows, oldest first.
pub(crate) const HISTORY: &str =
    "SELECT seq, record FROM revolve_schema_history WHERE collection = $1 ORDER BY seq";
const ENSURE: &str =
    "INSERT INTO revolve_collections (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";
/// The row, locked: every writer of the record and its history takes this lock first.
const LOCK: &str = "SELECT id, meta FROM revolve_collections WHERE name = $1 FOR UPDATE";
/// The record, and the newest version registered with it (in the same transaction, so that a
/// commit from an older program is refused from the moment the record names a newer version).
const UPDATE: &str =
    "UPDATE revolve_collections SET meta = $2, newest = GREATEST(newest, $3) WHERE id = $1";
const APPEND: &str = "INSERT INTO revolve_schema_history
         (collection, seq, version, event, fingerprint, recorded, record)
     SELECT $1, u.seq, u.version, u.event, u.fingerprint, u.recorded, u.record
     FROM unnest($2::int4[], $3::int4[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[])
         AS u(seq, version, event, fingerprint, recorded, record)";

/// `bytes` split, or whole (no history rows) when it does not split exactly.
pub(crate) fn split_or_whole(bytes: &[u8]) -> SplitMeta {
    split_meta(bytes).unwrap_or_else(|_| SplitMeta {
        record: bytes.to_vec(),
        history: Vec::new(),
        newest: None,
    })
}

/// The full record from the `meta` column and the history rows (`seq`, bytes) in order.
pub(crate) fn joined(
    collection: &str,
    meta: Option<Vec<u8>>,
    history: &[(i32, Vec<u8>)],
) -> Result<Option<Vec<u8>>, StoreError> {
    if history.is_empty() {
        return Ok(meta);
    }
    let corrupt = |source| StoreError::Corrupt {
        collection: collection.to_owned(),
        id: "_meta".to_owned(),
        revision: None,
        source,
    };
    let Some(meta) = meta else {
        return Err(corrupt(RecordError::InvalidPayload(
            "schema history rows without a `_meta` record",
        )));
    };
    if !history
        .iter()
        .zip(0..)
        .all(|((seq, _), expected)| *seq == expected)
    {
        return Err(corrupt(RecordError::InvalidPayload(
            "the schema history rows are not numbered from 0 without a gap",
        )));
    }
    join_meta(&meta, history.iter().map(|(_, bytes)| bytes.as_slice()))
        .map(Some)
        .map_err(corrupt)
}

/// A collection's `_meta` record, as the engine boundary sees it.
pub(crate) fn read(
    client: &mut impl GenericClient,
    collection: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(row) = client.query_opt(READ, &[&collection]).map_err(db)? else {
        return Ok(None);
    };
    let meta: Option<Vec<u8>> = row.get(0);
    let seqs: Option<Vec<i32>> = row.get(1);
    let records: Option<Vec<Vec<u8>>> = row.get(2);
    let history: Vec<(i32, Vec<u8>)> = seqs
        .unwrap_or_default()
        .into_iter()
        .zip(records.unwrap_or_default())
        .collect();
    joined(collection, meta, &history)
}

/// Replaces the record if it is still `expected`, in one transaction: the `meta` column is
/// compared and set, and the history entries beyond those stored are appended. The new history
/// must extend the stored one; anything else is a lost race (`false`): history is never
/// rewritten.
pub(crate) fn write(
    client: &mut postgres::Client,
    collection: &str,
    expected: Option<&[u8]>,
    bytes: &[u8],
) -> Result<bool, StoreError> {
    let mut tx = client.transaction().map_err(db)?;
    let stored = lock_row(&mut tx, collection).map_err(|error| match error {
        Locking::Wait(error) => db(error),
        Locking::Other(error) => error,
    })?;
    // Compared with what `read` returns: the record as the program saw it.
    if stored.record.as_deref() != expected {
        return Ok(false);
    }
    if !replace(&mut tx, collection, &stored, bytes)? {
        return Ok(false);
    }
    tx.commit().map_err(db)?;
    Ok(true)
}

/// The key of the lock under which a collection's record is decided on (see [`update`]): the
/// store's schema and the collection, so that stores in other schemas do not wait for it.
const REGISTRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended(
         'revolve.meta:' || length(COALESCE(current_schema(), '')) || ':'
         || COALESCE(current_schema(), '') || ':' || $1, 0))";

/// The longest one attempt waits for the registration lock before it lets its connection go
/// and tries again.
const ATTEMPT: Duration = Duration::from_secs(5);

/// Decides on the record and records the decision in one transaction under a transaction-level
/// advisory lock of the collection (`Engine::update_meta`): another process deciding on the same
/// collection waits for it, then sees what this one recorded. The lock goes with the transaction
/// (a process that dies mid-way leaves nothing held, and a transaction-pooling proxy keeps the
/// transaction on one server connection); the record and its history are the truth, the lock
/// only orders.
///
/// A wait longer than `lock_timeout` (a quarter of `timeout`, at most [`ATTEMPT`]) gives the
/// connection back and tries again after a pause, until `timeout` has passed in all: then
/// [`StoreError::LockTimeout`].
pub(crate) fn update(
    pool: &Pool,
    collection: &str,
    timeout: Duration,
    decide: &mut DecideMeta<'_>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        let left = timeout.saturating_sub(started.elapsed());
        // At least four attempts in all; `lock_timeout = 0` would wait forever.
        let wait = left
            .min(ATTEMPT)
            .min(timeout / 4)
            .max(Duration::from_millis(1));
        let outcome = {
            let mut conn = pool.get()?;
            update_once(&mut conn.client, collection, wait, decide)
        };
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(Attempt::Failed(error)) => return Err(error),
            Err(Attempt::LockWait(error)) => error,
        };
        let waited = started.elapsed();
        if waited >= timeout {
            tracing::warn!(
                collection,
                ?waited,
                attempts,
                "gave up waiting for the registration lock another instance holds"
            );
            return Err(StoreError::LockTimeout {
                what: format!("registering collection {collection:?}"),
                waited,
                source: BackendError::new(error),
            });
        }
        tracing::debug!(
            collection,
            ?waited,
            attempts,
            "the registration lock is held by another instance: trying again"
        );
        // A little jitter, so that waiting instances do not all try again at once.
        let half = u64::try_from(pause.as_nanos() / 2).unwrap_or(u64::MAX);
        let jitter =
            Duration::from_nanos(u64::from(std::process::id()).wrapping_mul(7919) % (half + 1));
        std::thread::sleep((pause + jitter).min(timeout.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Why an attempt of [`update`] ended without a decision recorded.
enum Attempt {
    /// The lock stayed held for longer than the attempt waits.
    LockWait(postgres::Error),
    Failed(StoreError),
}

impl From<StoreError> for Attempt {
    fn from(error: StoreError) -> Self {
        Self::Failed(error)
    }
}

/// One attempt of [`update`], waiting up to `wait` for the lock.
fn update_once(
    client: &mut postgres::Client,
    collection: &str,
    wait: Duration,
    decide: &mut DecideMeta<'_>,
) -> Result<(), Attempt> {
    let mut tx = client.transaction().map_err(db)?;
    let millis = wait.as_millis().max(1);
    // The idle timeout ends a transaction whose client vanished (a host gone without closing
    // its connection) instead of leaving the lock held until TCP notices; the transaction is
    // never idle that long while its program lives (it reads no document under the lock).
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{millis}ms';
         SET LOCAL idle_in_transaction_session_timeout = '{}ms'",
        millis.max(10_000)
    ))
    .map_err(db)?;
    // `lock_timeout` ends a wait (for the advisory lock, or for the collection's row, which an
    // older program's compare-and-set may hold); a `statement_timeout` shorter than it too.
    let lock_wait = |error: postgres::Error| {
        if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
            || error.code() == Some(&SqlState::QUERY_CANCELED)
        {
            Attempt::LockWait(error)
        } else {
            db(error).into()
        }
    };
    tx.execute(REGISTRATION_LOCK, &[&collection])
        .map_err(lock_wait)?;
    let stored = lock_row(&mut tx, collection).map_err(|error| match error {
        Locking::Wait(error) => lock_wait(error),
        Locking::Other(error) => error.into(),
    })?;
    let Some(bytes) = decide(stored.record.as_deref())? else {
        // Nothing to record: the transaction (and the lock) ends with a rollback.
        return Ok(());
    };
    if !replace(&mut tx, collection, &stored, &bytes)? {
        // Under both locks nobody else changed the record: a decision that does not extend the
        // history would rewrite it.
        return Err(StoreError::Unsupported {
            operation: "rewriting a collection's recorded schema history",
            engine: "PostgreSQL",
        }
        .into());
    }
    tx.commit().map_err(db)?;
    Ok(())
}

/// A collection's record as [`read`] returns it, read under its row's lock.
struct Stored {
    /// The collection row's id.
    id: i32,
    record: Option<Vec<u8>>,
    history: Vec<(i32, Vec<u8>)>,
}

/// Why [`lock_row`] failed: a statement that waited for a lock (or was cancelled), or else.
enum Locking {
    Wait(postgres::Error),
    Other(StoreError),
}

impl From<StoreError> for Locking {
    fn from(error: StoreError) -> Self {
        Self::Other(error)
    }
}

/// Makes the transaction durable when it commits (also on an `Eventual` store's sessions),
/// creates the collection's row if missing, locks it and reads the record.
fn lock_row(tx: &mut postgres::Transaction<'_>, collection: &str) -> Result<Stored, Locking> {
    tx.batch_execute(
        "SELECT set_config('synchronous_commit',
             CASE WHEN current_setting('synchronous_commit') = 'off' THEN 'on'
                  ELSE current_setting('synchronous_commit') END, true)",
    )
    .map_err(|error| Locking::Other(db(error)))?;
    tx.execute(ENSURE, &[&collection]).map_err(Locking::Wait)?;
    let row = tx.query_one(LOCK, &[&collection]).map_err(Locking::Wait)?;
    let id: i32 = row.get(0);
    let meta: Option<Vec<u8>> = row.get(1);
    let history: Vec<(i32, Vec<u8>)> = tx
        .query(HISTORY, &[&id])
        .map_err(|error| Locking::Other(db(error)))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(Stored {
        id,
        record: joined(collection, meta, &history)?,
        history,
    })
}

/// Replaces the `stored` record (locked by [`lock_row`]) with `bytes`: the column set, and the
/// history entries beyond those stored appended. `false`, writing nothing, when the new history
/// does not extend the stored one.
fn replace(
    tx: &mut postgres::Transaction<'_>,
    collection: &str,
    stored: &Stored,
    bytes: &[u8],
) -> Result<bool, StoreError> {
    // A record that does not split is kept whole, with no history rows.
    let (new, unsplit) = match split_meta(bytes) {
        Ok(new) => (new, None),
        Err(error) => (
            SplitMeta {
                record: bytes.to_vec(),
                history: Vec::new(),
                newest: None,
            },
            Some(error),
        ),
    };
    let history = &stored.history;
    let extends = new.history.len() >= history.len()
        && history
            .iter()
            .zip(&new.history)
            .all(|((_, stored), new)| *stored == new.bytes);
    if !extends {
        if let Some(error) = unsplit {
            // Kept whole, it would drop the history rows; and `false` would only be tried again.
            tracing::warn!(
                collection,
                error = %crate::error::format::chain(&error),
                "a `_meta` record that does not split cannot replace one whose history has rows"
            );
            return Err(StoreError::Unsupported {
                operation: "replacing a split `_meta` record with one that does not split",
                engine: "PostgreSQL",
            });
        }
        return Ok(false);
    }
    let newest =
        new.newest
            .map(i32::try_from)
            .transpose()
            .map_err(|_| StoreError::Unsupported {
                operation: "a schema version above 2^31",
                engine: "PostgreSQL",
            })?;
    tx.execute(UPDATE, &[&stored.id, &new.record, &newest])
        .map_err(db)?;
    match HistoryRows::new(&new, history.len())?.insert(tx, stored.id) {
        Ok(()) => Ok(true),
        // Another writer appended without taking the row's lock first: it won.
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(error) => Err(db(error)),
    }
}

/// Whether a `timestamptz` column holds `at`: years 1 to 9999, well inside both what PostgreSQL
/// stores and what the client converts without overflow.
fn timestamp_fits(at: SystemTime) -> bool {
    const FIRST: i128 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const LAST: i128 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let seconds = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::from(after.as_secs()),
        Err(before) => -i128::from(before.duration().as_secs()) - 1,
    };
    (FIRST..=LAST).contains(&seconds)
}

/// History entries as the columns of `revolve_schema_history`, ready to append.
pub(crate) struct HistoryRows<'a> {
    seqs: Vec<i32>,
    versions: Vec<i32>,
    events: Vec<&'static str>,
    fingerprints: Vec<Option<&'a str>>,
    recorded: Vec<Option<SystemTime>>,
    records: Vec<&'a [u8]>,
}

impl<'a> HistoryRows<'a> {
    /// `meta`'s history entries from the `from`-th on.
    pub(crate) fn new(meta: &'a SplitMeta, from: usize) -> Result<Self, StoreError> {
        let entries = meta.history.get(from..).unwrap_or_default();
        let too_large = |operation| StoreError::Unsupported {
            operation,
            engine: "PostgreSQL",
        };
        let mut rows = Self {
            seqs: Vec::with_capacity(entries.len()),
            versions: Vec::with_capacity(entries.len()),
            events: Vec::with_capacity(entries.len()),
            fingerprints: Vec::with_capacity(entries.len()),
            recorded: Vec::with_capacity(entries.len()),
            records: Vec::with_capacity(entries.len()),
        };
        for (seq, entry) in (from..).zip(entries) {
            rows.seqs.push(
                i32::try_from(seq)
                    .map_err(|_| too_large("a schema history of more than 2^31 entries"))?,
            );
            rows.versions.push(
                i32::try_from(entry.version)
                    .map_err(|_| too_large("a schema version above 2^31"))?,
            );
            rows.events.push(entry.event.as_str());
            // Copies for queries: NULL where a column cannot hold the value (the record does).
            rows.fingerprints
                .push(Some(entry.fingerprint.as_str()).filter(|text| !text.contains('\0')));
            rows.recorded
                .push(Some(entry.recorded).filter(|&at| timestamp_fits(at)));
            rows.records.push(&entry.bytes);
        }
        Ok(rows)
    }

    /// Appends the rows to collection row `id` (nothing when there are none).
    pub(crate) fn insert(
        &self,
        client: &mut impl GenericClient,
        id: i32,
    ) -> Result<(), postgres::Error> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        client.execute(
            APPEND,
            &[
                &id,
                &self.seqs,
                &self.versions,
                &self.events,
                &self.fingerprints,
                &self.recorded,
                &self.records,
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{test_url, Options, PgEngine};
    use crate::store::engine::Engine;
    use crate::store::registry::sample_meta;
    use crate::store::Durability;

    fn engine() -> Option<PgEngine> {
        let url = test_url()?;
        Some(
            PgEngine::open(&Options {
                url,
                schema: None,
                temporary: true,
                durability: Durability::Immediate,
                pool_size: 2,
                checkout_timeout: Duration::from_secs(10),
                run_lease: Duration::from_secs(10),
                registration_timeout: Duration::from_secs(10),
            })
            .unwrap(),
        )
    }

    fn rows(engine: &PgEngine, collection: &str) -> i64 {
        engine
            .pool()
            .get()
            .unwrap()
            .client
            .query_one(
                "SELECT count(*) FROM revolve_schema_history h
                 JOIN revolve_collections c ON c.id = h.collection WHERE c.name = $1",
                &[&collection],
            )
            .unwrap()
            .get(0)
    }

    #[test]
    fn the_record_is_replaced_only_if_unchanged_and_history_only_extended() {
        let Some(engine) = engine() else {
            return;
        };
        let one = sample_meta(1, &[1]);
        let two = sample_meta(1, &[1, 1]);
        let three = sample_meta(1, &[1, 1, 1]);
        assert_eq!(engine.meta("notes").unwrap(), None);
        assert!(engine.put_meta("notes", None, &one).unwrap());
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&one[..]));
        assert!(!engine.put_meta("notes", None, &two).unwrap());
        assert!(engine.put_meta("notes", Some(&one), &two).unwrap());
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&two[..]));
        assert_eq!(rows(&engine, "notes"), 2);
        // The column alone matches `one` (only the history grew): still a lost race.
        assert!(!engine.put_meta("notes", Some(&one), &three).unwrap());
        // A history that does not extend the stored one is never written.
        assert!(!engine
            .put_meta("notes", Some(&two), &sample_meta(1, &[1]))
            .unwrap());
        assert!(!engine
            .put_meta("notes", Some(&two), &sample_meta(1, &[1, 2, 2]))
            .unwrap());
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&two[..]));
        assert_eq!(rows(&engine, "notes"), 2);
        // A new record with the same history: only the column changes.
        let newer = sample_meta(2, &[1, 1]);
        assert!(engine.put_meta("notes", Some(&two), &newer).unwrap());
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&newer[..]));
        assert_eq!(rows(&engine, "notes"), 2);
    }

    #[test]
    fn a_decision_is_recorded_once_under_the_lock() {
        let Some(engine) = engine() else {
            return;
        };
        let one = sample_meta(1, &[1]);
        let two = sample_meta(2, &[1, 2]);
        let mut seen = Vec::new();
        let mut decide = |current: Option<&[u8]>| {
            seen.push(current.map(<[u8]>::to_vec));
            Ok(match current {
                None => Some(one.clone()),
                Some(bytes) if bytes == one.as_slice() => Some(two.clone()),
                Some(_) => None,
            })
        };
        engine.update_meta("notes", &mut decide).unwrap();
        engine.update_meta("notes", &mut decide).unwrap();
        // Recorded: the next call sees it and writes nothing.
        engine.update_meta("notes", &mut decide).unwrap();
        assert_eq!(
            seen,
            [None, Some(one.clone()), Some(two.clone())],
            "each call decides once, on what is stored"
        );
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&two[..]));
        assert_eq!(rows(&engine, "notes"), 2);
        // The newest version is registered with the record: an older writer is refused at once.
        let newest: i32 = engine
            .pool()
            .get()
            .unwrap()
            .client
            .query_one(
                "SELECT newest FROM revolve_collections WHERE name = 'notes'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(newest, 2);
        // A refusal writes nothing and is returned as it is.
        let refused = engine.update_meta("notes", &mut |_| {
            Err(crate::store::StoreError::UnknownCollection {
                collection: "notes".to_owned(),
            })
        });
        assert!(matches!(
            refused,
            Err(crate::store::StoreError::UnknownCollection { .. })
        ));
        // A decision that would rewrite the history is refused, not a race tried forever.
        assert!(matches!(
            engine.update_meta("notes", &mut |_| Ok(Some(sample_meta(2, &[2])))),
            Err(crate::store::StoreError::Unsupported { .. })
        ));
        assert_eq!(engine.meta("notes").unwrap().as_deref(), Some(&two[..]));
    }

    #[test]
    fn a_record_that_does_not_split_is_kept_whole() {
        let Some(engine) = engine() else {
            return;
        };
        assert!(engine.put_meta("odd", None, b"\xc1 not a record").unwrap());
        assert_eq!(
            engine.meta("odd").unwrap().as_deref(),
            Some(&b"\xc1 not a record"[..])
        );
        assert_eq!(rows(&engine, "odd"), 0);
        let one = sample_meta(1, &[1]);
        assert!(engine
            .put_meta("odd", Some(b"\xc1 not a record"), &one)
            .unwrap());
        assert_eq!(engine.meta("odd").unwrap().as_deref(), Some(&one[..]));
        assert_eq!(rows(&engine, "odd"), 1);
        assert_eq!(engine.collection_names().unwrap(), ["odd"]);
        // Once the history has rows, a record that does not split is refused, not a lost race
        // that registration would try forever.
        assert!(matches!(
            engine.put_meta("odd", Some(&one), b"\xc1 again"),
            Err(crate::store::StoreError::Unsupported { .. })
        ));
        assert_eq!(engine.meta("odd").unwrap().as_deref(), Some(&one[..]));
    }
}
