//! The ledger agrees with the data when a run stops between a durable chunk and its ledger
//! update: the record is reconciled from the progress record the chunk wrote in its own batch.

use std::panic::AssertUnwindSafe;

use revolve::{FailureClass, Origin, RunState, Schema, StepError};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Place};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 1)]
struct TaskV1 {
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "tasks", version = 2, from = TaskV1, step = task_v1_to_v2)]
struct TaskV2 {
    title: String,
    done: bool,
}

fn task_v1_to_v2(old: TaskV1) -> Result<TaskV2, StepError> {
    if old.title.starts_with("fail") {
        return Err(StepError::new("this task cannot be migrated"));
    }
    Ok(TaskV2 {
        title: old.title,
        done: false,
    })
}

/// Migration revisions naming `run`, counted from the documents' histories.
fn written_by(tasks: &revolve::Collection<TaskV2>, ids: &[String], run: u64) -> u64 {
    let mut written = 0;
    for id in ids {
        for info in tasks.history(id).unwrap() {
            let raw = tasks.raw_revision(id, info.revision).unwrap().unwrap();
            written += u64::from(raw.info.origin == Origin::Migration { run });
        }
    }
    written
}

/// The progress callback runs after a chunk is durable and before the ledger is updated; one that
/// panics stops the run exactly there, as a `kill -9` at that moment would.
fn a_run_stopped_after_a_durable_chunk_reads_as_what_is_on_disk<E: Engine>() {
    let dir = E::place();
    let ids: Vec<String> = {
        let store = dir.open();
        let tasks = store.collection::<TaskV1>().unwrap();
        (0..2500)
            .map(|n| {
                let title = if n % 10 == 3 { "fail" } else { "task" };
                let title = format!("{title} {n}");
                tasks.insert(&TaskV1 { title }).unwrap().to_string()
            })
            .collect()
    };
    let store = dir.open();
    let tasks = store.collection::<TaskV2>().unwrap();
    let migration = tasks.migrate().threads(2).on_progress(|progress| {
        assert!(progress.done < 2000, "stopped after the second chunk");
    });
    let stopped = std::panic::catch_unwind(AssertUnwindSafe(|| migration.execute()));
    assert!(stopped.is_err(), "the run was to stop: {stopped:?}");

    let runs = tasks.runs().unwrap();
    let run = &runs[0];
    assert_eq!(run.state, RunState::Interrupted);
    let written = written_by(&tasks, &ids, run.id);
    assert_eq!(written, 1800, "two chunks of 1000, one in ten failing");
    assert_eq!(
        (run.scanned, run.migrated, run.failed, run.skipped),
        (2000, written, 200, 0)
    );
    assert_eq!(run.failures_by_class.get(&FailureClass::Step), Some(&200));
    assert_eq!(run.failures.len(), 200);
    assert!(run.failures.iter().all(|f| f.class == FailureClass::Step));
    assert_eq!(run.from_versions, vec![1]);

    // Read again: the reconciled record is what was saved.
    assert_eq!(tasks.run(run.id).unwrap().as_ref(), Some(run));
    // The next run takes the rest, and its record agrees too.
    let report = tasks.migrate().threads(2).execute().unwrap();
    assert_eq!((report.scanned, report.migrated), (500, 450));
    let next = tasks.run(report.run_id.unwrap()).unwrap().unwrap();
    assert_eq!(next.migrated, written_by(&tasks, &ids, next.id));
    assert!(store.verify().unwrap().problems.is_empty());
}

engine_tests! {
    a_run_stopped_after_a_durable_chunk_reads_as_what_is_on_disk,
}
