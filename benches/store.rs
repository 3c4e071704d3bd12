//! Store throughput on one `issues` collection holding half its documents at version 1 and half
//! at version 2: `insert` (eventual and immediate durability), `get` of a current document, `get`
//! of a version 1 document upgraded on read, and `insert_many` of 1000 documents.
//!
//! ```text
//! cargo bench --bench store
//! REVOLVE_BENCH_DOCS=10000 cargo bench --bench store -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! `REVOLVE_BENCH_DOCS` sets how many documents of each version are loaded (100000 by default).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use revolve::{Collection, DocId, Durability, Store, DEFAULT_CACHE_CAPACITY};

#[path = "common/dataset.rs"]
mod dataset;
use dataset::{issue, issue_v1_to_v2, IssueV1, IssueV2, XorShift};

fn issue_v2(rng: &mut XorShift) -> IssueV2 {
    issue_v1_to_v2(issue(rng)).expect("generated statuses are known")
}

fn document_count() -> usize {
    std::env::var("REVOLVE_BENCH_DOCS").map_or(100_000, |value| {
        value.parse().expect("REVOLVE_BENCH_DOCS is a number")
    })
}

fn open(path: &Path, durability: Durability) -> Store {
    Store::builder()
        .path(path)
        .cache_capacity(DEFAULT_CACHE_CAPACITY)
        .durability(durability)
        .open()
        .expect("open the store")
}

/// Calls `insert` with chunk sizes adding up to `count`, collecting the ids.
fn load_in_chunks(count: usize, mut insert: impl FnMut(usize) -> Vec<DocId>) -> Vec<DocId> {
    const CHUNK: usize = 1000;
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        ids.extend(insert(CHUNK.min(count - ids.len())));
    }
    ids
}

/// Loads `count` documents of each version: version 1 through a program that knows only
/// `IssueV1`, then version 2 after reopening with `IssueV2`, as an upgraded deployment would.
fn load(path: &Path, count: usize) -> (Vec<DocId>, Vec<DocId>) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);

    let store = open(path, Durability::Eventual);
    let v1 = store.collection::<IssueV1>().expect("issues at version 1");
    let v1_ids = load_in_chunks(count, |chunk| {
        let docs: Vec<IssueV1> = (0..chunk).map(|_| issue(&mut rng)).collect();
        v1.insert_many(&docs).expect("insert version 1 issues")
    });
    store.flush().expect("flush");
    // Every handle must go for sled to release the database before it is reopened.
    drop(v1);
    drop(store);

    let store = open(path, Durability::Eventual);
    let v2 = store.collection::<IssueV2>().expect("issues at version 2");
    let v2_ids = load_in_chunks(count, |chunk| {
        let docs: Vec<IssueV2> = (0..chunk).map(|_| issue_v2(&mut rng)).collect();
        v2.insert_many(&docs).expect("insert version 2 issues")
    });
    store.flush().expect("flush");
    (v1_ids, v2_ids)
}

/// Reads every document once so that both kinds of `get` start from a warm cache.
fn read_all(issues: &Collection<IssueV2>, ids: &[DocId], stored_version: u32) {
    for id in ids {
        let document = issues.get(id).expect("get").expect("document exists");
        assert_eq!(document.stored_version, stored_version);
    }
}

fn payload_len(issues: &Collection<IssueV2>, id: &DocId) -> usize {
    let revision = issues.get(id).expect("get").expect("exists").revision;
    issues
        .raw_revision(id, revision)
        .expect("raw revision")
        .expect("exists")
        .bytes
        .len()
}

fn bench_get(c: &mut Criterion, issues: &Collection<IssueV2>, name: &str, ids: &[DocId]) {
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    group.bench_function(name, |b| {
        b.iter(|| {
            let id = &ids[rng.below(ids.len())];
            black_box(issues.get(id).expect("get"))
        });
    });
    group.finish();
}

fn bench_insert(c: &mut Criterion, issues: &Collection<IssueV2>, name: &str, samples: usize) {
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(1));
    group.sample_size(samples);
    let doc = issue_v2(&mut XorShift(0xD1B5_4A32_D192_ED03));
    group.bench_function(name, |b| {
        b.iter(|| black_box(issues.insert(&doc).expect("insert")));
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let count = document_count();
    let dir = tempfile::tempdir().expect("temporary directory");
    let (v1_ids, v2_ids) = load(dir.path(), count);

    {
        let store = open(dir.path(), Durability::Eventual);
        let issues = store.collection::<IssueV2>().expect("issues");
        read_all(&issues, &v1_ids, 1);
        read_all(&issues, &v2_ids, 2);
        eprintln!(
            "loaded {count} documents at version 1 and {count} at version 2; \
             payloads of {} and {} bytes",
            payload_len(&issues, &v1_ids[0]),
            payload_len(&issues, &v2_ids[0]),
        );

        bench_get(c, &issues, "current_v2", &v2_ids);
        bench_get(c, &issues, "upgraded_v1", &v1_ids);

        bench_insert(c, &issues, "eventual", 100);

        let mut group = c.benchmark_group("insert_many");
        group.throughput(Throughput::Elements(1000));
        group.sample_size(20);
        let mut rng = XorShift(0xA076_1D64_78BD_642F);
        let docs: Vec<IssueV2> = (0..1000).map(|_| issue_v2(&mut rng)).collect();
        group.bench_function("1000_eventual", |b| {
            b.iter(|| black_box(issues.insert_many(&docs).expect("insert_many")));
        });
        group.finish();
        store.flush().expect("flush");
    }

    // Durability is a property of the store, so measuring it means reopening.
    let store = open(dir.path(), Durability::Immediate);
    let issues = store.collection::<IssueV2>().expect("issues");
    bench_insert(c, &issues, "immediate", 10);
}

criterion_group!(store, benches);
criterion_main!(store);
