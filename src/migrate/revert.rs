//! Reverting a migration run: new revisions restoring what the run replaced.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ledger::{self, RunKind, RunProgress, RunRecord, RunState};
use super::log;
use super::{MigrationError, CHUNK_SIZE};
use crate::id::DocId;
use crate::record::{self, Envelope, Kind, Origin};
use crate::schema::Schema;
use crate::store::{
    Action, ChunkItem, Collection, Commit, EncodedRevision, Head, Outcome, ProgressRecord, Seen,
    StoreError,
};

/// What a revert did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
#[must_use]
pub struct RevertReport {
    /// The revert's own id in the ledger.
    pub run_id: u64,
    /// The run it reverted.
    pub reverted_run: u64,
    /// Documents given a new revision restoring their content from before the run.
    pub reverted: u64,
    /// Documents the run migrated that were written or removed since: left as they are.
    pub changed: Vec<DocId>,
    /// How long it took.
    pub elapsed: Duration,
}

impl<T: Schema> Collection<T> {
    /// Reverts a migration run: every document whose head is still the revision the run wrote
    /// gets a new revision holding the content from before the run (at its old version, so it is
    /// pending again and a corrected step can migrate it anew). Documents written since are
    /// reported in [`RevertReport::changed`] and left alone. The revert is a ledger entry of its
    /// own; the run's record says `reverted`.
    ///
    /// # Errors
    ///
    /// [`MigrationError::UnknownRun`], [`MigrationError::NotRevertible`] for a dry run, a revert, a
    /// run still under way or one already reverted, [`MigrationError::RunInProgress`], and
    /// [`MigrationError::Store`].
    pub fn revert(&self, run: u64) -> Result<RevertReport, MigrationError> {
        let started = Instant::now();
        self.check_writable()?;
        let mut target = self.run(run)?.ok_or_else(|| MigrationError::UnknownRun {
            collection: self.name().to_owned(),
            run,
        })?;
        let refuse = |reason| MigrationError::NotRevertible {
            collection: self.name().to_owned(),
            run,
            reason,
        };
        if target.kind != RunKind::Migration {
            return Err(refuse("it is a revert"));
        }
        if target.dry_run {
            return Err(refuse("it was a dry run, which wrote nothing"));
        }
        match target.state {
            RunState::Running => return Err(refuse("it is still running")),
            RunState::Reverted => return Err(refuse("it was reverted already")),
            _ => {}
        }

        let revert_id = self.store().next_run_id()?;
        let _guard =
            self.start_run(revert_id)?
                .map_err(|current| MigrationError::RunInProgress {
                    collection: self.name().to_owned(),
                    run: current,
                })?;
        let span = log::revert_span(self.name(), revert_id, run);
        let _entered = span.enter();
        ledger::settle(self)?;
        let mut record = RunRecord::new(
            revert_id,
            self.name(),
            RunKind::Revert { of: run },
            target.to_version,
        );
        ledger::save(self, &record, true)?;

        let since = micros(target.started);
        let mut changed = Vec::new();
        let mut reverted = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK_SIZE);
        for entry in self.scan_all_heads() {
            let (id, head) = entry?;
            match self.restoring(&id, head, run, since)? {
                Restore::Revert(action) => chunk.push(ChunkItem {
                    id,
                    seen: Seen::Head(head),
                    action,
                }),
                Restore::Changed => changed.push(DocId::from_validated(id)),
                Restore::Untouched => {}
            }
            if chunk.len() == CHUNK_SIZE {
                reverted +=
                    self.commit_revert(run, revert_id, reverted, &mut chunk, &mut changed)?;
            }
        }
        if !chunk.is_empty() {
            reverted += self.commit_revert(run, revert_id, reverted, &mut chunk, &mut changed)?;
        }

        record.state = RunState::Done;
        record.finished = Some(SystemTime::now());
        record.scanned = reverted + changed.len() as u64;
        record.migrated = reverted;
        record.skipped = changed.len() as u64;
        ledger::save(self, &record, true)?;
        target.state = RunState::Reverted;
        target.reverted_by = Some(revert_id);
        ledger::save(self, &target, true)?;
        // Both records are final and flushed; a progress record left by a failed removal is
        // never read, since only a record still `running` is reconciled.
        let _ = self.store().forget_run_progress(self.name(), revert_id);
        log::revert_finished(reverted, changed.len(), started.elapsed());

        Ok(RevertReport {
            run_id: revert_id,
            reverted_run: run,
            reverted,
            changed,
            elapsed: started.elapsed(),
        })
    }

    /// Commits one chunk of a revert; returns how many documents it restored and adds those
    /// written since the scan to `changed`.
    fn commit_revert(
        &self,
        run: u64,
        revert_id: u64,
        reverted: u64,
        chunk: &mut Vec<ChunkItem>,
        changed: &mut Vec<DocId>,
    ) -> Result<u64, StoreError> {
        // The revert's progress record, in the chunk's batch: restored documents as `migrated`,
        // changed ones as `skipped`, as its ledger record counts them.
        let before = RunProgress {
            migrated: reverted,
            skipped: changed.len() as u64,
            ..RunProgress::default()
        };
        let mut encode = |outcomes: &[Outcome]| {
            let mut next = before.clone();
            for outcome in outcomes {
                if *outcome == Outcome::Written {
                    next.migrated += 1;
                } else {
                    next.skipped += 1;
                }
            }
            next.scanned = next.migrated + next.skipped;
            record::encode_payload(&next)
        };
        let commit = Commit {
            progress: Some(ProgressRecord {
                run: revert_id,
                encode: &mut encode,
            }),
            ..Commit::new(Origin::Revert { run }, T::VERSION)
        };
        let outcomes = self.commit_chunk(chunk, commit)?;
        let mut restored = 0;
        for (item, outcome) in chunk.drain(..).zip(outcomes) {
            match outcome {
                Outcome::Written => restored += 1,
                _ => changed.push(DocId::from_validated(item.id)),
            }
        }
        Ok(restored)
    }

    /// What the revert of `run` does to one document.
    fn restoring(&self, id: &str, head: Head, run: u64, since: u64) -> Result<Restore, StoreError> {
        let Some(bytes) = self.read_revision(id, head.revision)? else {
            return Ok(Restore::Untouched);
        };
        let envelope = self.envelope(id, &bytes)?;
        if envelope.origin == (Origin::Migration { run }) {
            // The run's revision is the head: restore its parent, the content the run replaced.
            let Some(parent) = head.revision.parent() else {
                return Ok(Restore::Untouched);
            };
            let Some(parent_bytes) = self.read_revision(id, parent)? else {
                return Ok(Restore::Untouched);
            };
            let before = self.envelope(id, &parent_bytes)?;
            if before.kind != Kind::Document {
                return Ok(Restore::Untouched);
            }
            return Ok(Restore::Revert(Action::Write(EncodedRevision::new(
                Some(head),
                before.version,
                Origin::Revert { run },
                before.payload,
            ))));
        }
        // Written since the run started: look back through what was written since then for a
        // revision of the run.
        let mut revision = Some(head.revision);
        let mut current = envelope.timestamp_micros;
        while let Some(at) = revision.filter(|_| current >= since) {
            let Some(bytes) = self.read_revision(id, at)? else {
                break;
            };
            let envelope = self.envelope(id, &bytes)?;
            if envelope.origin == (Origin::Migration { run }) {
                return Ok(Restore::Changed);
            }
            current = envelope.timestamp_micros;
            revision = at.parent();
        }
        Ok(Restore::Untouched)
    }

    fn envelope<'b>(
        &self,
        id: &str,
        bytes: &'b impl AsRef<[u8]>,
    ) -> Result<Envelope<'b>, StoreError> {
        record::decode(bytes.as_ref()).map_err(|source| StoreError::Corrupt {
            collection: self.name().to_owned(),
            id: id.to_owned(),
            revision: None,
            source,
        })
    }
}

enum Restore {
    Revert(Action),
    Changed,
    Untouched,
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    })
}
