//! Deeply nested payloads: within the depth limit they read back; beyond it, reading gives a typed
//! error on a small stack instead of overflowing it, with the default limit and a custom one.

use std::error::Error as _;
use std::process::Command;
use std::thread;

use revolve::{Collection, RecordError, Revision, Schema, SchemaError, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "blobs", version = 1)]
struct Blob {
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "trees", version = 1)]
struct Tree {
    root: Node,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
enum Node {
    Leaf(u32),
    Wrap(Box<Node>),
}

/// The nesting of a bomb: far more than any stack holds frames for.
const BOMB_DEPTH: usize = 100_000;

/// The stack a reader gets: the size of a default spawned thread's.
const SMALL_STACK: usize = 2 * 1024 * 1024;

/// Building, serializing and dropping a bomb recurse once per level; give them room.
const BIG_STACK: usize = 1024 * 1024 * 1024;

/// `depth` arrays nested around a `null`; a document of it nests one more (the struct).
fn nested_array(depth: usize) -> Value {
    let mut value = Value::Null;
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// `depth` `Wrap`s around a leaf.
fn nested_node(depth: usize) -> Node {
    let mut node = Node::Leaf(7);
    for _ in 0..depth {
        node = Node::Wrap(Box::new(node));
    }
    node
}

/// Runs `work` on a thread with a stack of `bytes` and returns what it returns.
fn with_stack<R: Send>(bytes: usize, work: impl FnOnce() -> R + Send) -> R {
    thread::scope(|scope| {
        thread::Builder::new()
            .stack_size(bytes)
            .spawn_scoped(scope, work)
            .unwrap()
            .join()
            .unwrap()
    })
}

/// An error and every source under it, as one line.
fn chain(error: &StoreError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks that `result` is the typed error of a payload nested too deep.
fn assert_too_deep<T: std::fmt::Debug>(what: &str, result: &Result<T, StoreError>) {
    match result {
        Err(error @ StoreError::Upgrade { source, .. })
            if matches!(
                **source,
                SchemaError::Decode {
                    source: RecordError::TooDeep { .. },
                    ..
                }
            ) =>
        {
            assert!(
                chain(error).contains("payload nests deeper than"),
                "{what}: {}",
                chain(error)
            );
        }
        other => panic!("{what}: expected a depth error, got {other:?}"),
    }
}

/// Checks every read of the document `id` that decodes its payload fails as too deep, and that
/// the reads which do not decode it still work.
fn assert_unreadable<T: Schema + std::fmt::Debug>(collection: &Collection<T>, id: &str) {
    assert_too_deep("get", &collection.get(id));
    assert_too_deep("revision", &collection.revision(id, Revision::FIRST));
    let listed: Vec<_> = collection.iter().collect();
    assert_eq!(listed.len(), 1);
    assert_too_deep("iter", &listed[0]);
    match collection.raw_revision(id, Revision::FIRST) {
        Err(error @ StoreError::Corrupt { .. }) => {
            assert!(
                chain(&error).contains("payload nests deeper than"),
                "{}",
                chain(&error)
            );
        }
        other => panic!("raw_revision: expected a depth error, got {other:?}"),
    }
    assert_eq!(collection.history(id).unwrap().len(), 1);
    assert_eq!(collection.len().unwrap(), 1);
}

fn nesting_within_the_default_limit_reads_back<E: Engine>() {
    let store = E::temporary();
    let blobs = store.collection::<Blob>().unwrap();
    let trees = store.collection::<Tree>().unwrap();
    let blob = Blob {
        value: nested_array(100),
    };
    blobs.insert_with_id("deep", &blob).unwrap();
    let tree = Tree {
        root: nested_node(60),
    };
    trees.insert_with_id("deep", &tree).unwrap();
    with_stack(SMALL_STACK, || {
        assert_eq!(blobs.get("deep").unwrap().unwrap().data, blob);
        assert_eq!(trees.get("deep").unwrap().unwrap().data, tree);
    });
}

fn a_custom_limit_is_enforced_at_its_boundary<E: Engine>() {
    const LIMIT: usize = 16;
    let store = E::fresh().max_depth(LIMIT).open().unwrap();
    let blobs = store.collection::<Blob>().unwrap();
    // The document's own struct is one level: arrays nested `LIMIT - 2` deep make `LIMIT - 1`.
    let fits = Blob {
        value: nested_array(LIMIT - 2),
    };
    blobs.insert_with_id("fits", &fits).unwrap();
    assert_eq!(blobs.get("fits").unwrap().unwrap().data, fits);
    blobs.remove("fits").unwrap();

    let deeper = Blob {
        value: nested_array(LIMIT + 4),
    };
    blobs.insert_with_id("deeper", &deeper).unwrap();
    assert_unreadable(&blobs, "deeper");
}

/// `max_depth(n)` is documented as "the deepest nesting a stored payload may have": a payload
/// nested exactly `n` deep should read.
fn max_depth_allows_exactly_that_depth<E: Engine>() {
    const LIMIT: usize = 16;
    let store = E::fresh().max_depth(LIMIT).open().unwrap();
    let blobs = store.collection::<Blob>().unwrap();
    // One level for the struct, `LIMIT - 1` arrays: nested exactly `LIMIT` deep.
    let exact = Blob {
        value: nested_array(LIMIT - 1),
    };
    blobs.insert_with_id("exact", &exact).unwrap();
    assert_eq!(blobs.get("exact").unwrap().unwrap().data, exact);
}

fn a_custom_limit_counts_enum_nesting<E: Engine>() {
    let store = E::fresh().max_depth(16).open().unwrap();
    let trees = store.collection::<Tree>().unwrap();
    trees
        .insert_with_id(
            "deeper",
            &Tree {
                root: nested_node(40),
            },
        )
        .unwrap();
    assert_unreadable(&trees, "deeper");
}

// ---- Bombs: each runs in a child process, so that a stack overflow, which aborts the process,
// fails one test instead of killing the whole binary. ----

const CHILD: &str = "REVOLVE_IT_NESTING_CHILD";

/// Runs the `#[ignore]`d test `name` of this binary in a child process and checks it passed.
fn run_in_child(name: &str) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} in a child process: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

/// Whether this process is the child `run_in_child` started; a bomb test run by hand without it
/// does nothing.
fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn array_bomb(store: &Store) {
    let blobs = store.collection::<Blob>().unwrap();
    with_stack(BIG_STACK, || {
        let bomb = Blob {
            value: nested_array(BOMB_DEPTH),
        };
        // Writing does not limit depth: serialization recurses on the writer's stack.
        blobs.insert_with_id("bomb", &bomb).unwrap();
    });
    with_stack(SMALL_STACK, || assert_unreadable(&blobs, "bomb"));
}

fn enum_bomb(store: &Store) {
    let trees = store.collection::<Tree>().unwrap();
    with_stack(BIG_STACK, || {
        let bomb = Tree {
            root: nested_node(BOMB_DEPTH),
        };
        trees.insert_with_id("bomb", &bomb).unwrap();
    });
    with_stack(SMALL_STACK, || assert_unreadable(&trees, "bomb"));
}

fn an_array_bomb_is_a_typed_error_with_the_default_limit<E: Engine>() {
    run_in_child(&format!(
        "nesting::{}::child_array_bomb_default_limit",
        E::NAME
    ));
}

fn an_array_bomb_is_a_typed_error_with_a_custom_limit<E: Engine>() {
    run_in_child(&format!(
        "nesting::{}::child_array_bomb_custom_limit",
        E::NAME
    ));
}

fn an_enum_bomb_is_a_typed_error_with_the_default_limit<E: Engine>() {
    run_in_child(&format!(
        "nesting::{}::child_enum_bomb_default_limit",
        E::NAME
    ));
}

fn child_array_bomb_default_limit<E: Engine>() {
    if is_child() {
        array_bomb(&E::temporary());
    }
}

fn child_array_bomb_custom_limit<E: Engine>() {
    if is_child() {
        let store = E::fresh().max_depth(32).open().unwrap();
        array_bomb(&store);
    }
}

fn child_enum_bomb_default_limit<E: Engine>() {
    if is_child() {
        enum_bomb(&E::temporary());
    }
}

engine_tests! {
    nesting_within_the_default_limit_reads_back,
    a_custom_limit_is_enforced_at_its_boundary,
    max_depth_allows_exactly_that_depth,
    a_custom_limit_counts_enum_nesting,
    an_array_bomb_is_a_typed_error_with_the_default_limit,
    an_array_bomb_is_a_typed_error_with_a_custom_limit,
    an_enum_bomb_is_a_typed_error_with_the_default_limit,
    #[ignore = "run in a child process by an_array_bomb_is_a_typed_error_with_the_default_limit"]
    child_array_bomb_default_limit,
    #[ignore = "run in a child process by an_array_bomb_is_a_typed_error_with_a_custom_limit"]
    child_array_bomb_custom_limit,
    #[ignore = "run in a child process by an_enum_bomb_is_a_typed_error_with_the_default_limit"]
    child_enum_bomb_default_limit,
}
