//! Deterministic fault injection for crash tests: abort the process at the n-th write boundary,
//! or commit in a deliberately broken order to prove the crash tests can see it.
//!
//! Off unless a test turns it on through `revolve::__private::fault`; when off, each point costs
//! one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

static ABORT_AT: AtomicU64 = AtomicU64::new(0);
static PASSED: AtomicU64 = AtomicU64::new(0);
static BROKEN_WRITE_ORDER: AtomicBool = AtomicBool::new(false);
/// A collection whose next commit's reply is lost, and whether that commit applied.
static LOST_REPLY: Mutex<Option<(String, bool)>> = Mutex::new(None);

/// Makes the next commit that writes revisions to `collection`, on an engine that commits over a
/// connection (PostgreSQL), end as if the connection dropped while `COMMIT` was under way:
/// `applied` says whether the server committed it (the reply was lost) or not (the transaction
/// rolled back). The engine must then find out from the database what became of it.
pub fn lose_commit_reply(collection: &str, applied: bool) {
    *LOST_REPLY.lock() = Some((collection.to_owned(), applied));
}

/// Whether the commit under way on `collection` is to lose its reply, and whether it applies;
/// consumes the fault.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn lost_reply(collection: &str) -> Option<bool> {
    let mut lost = LOST_REPLY.lock();
    match lost.as_ref() {
        Some((name, applied)) if name == collection => {
            let applied = *applied;
            *lost = None;
            Some(applied)
        }
        _ => None,
    }
}

/// Aborts the process (as a `kill -9` would end it: no unwinding, no destructors, no flush) when
/// the `n`-th fault point is reached; 0 turns it off.
pub fn abort_at_point(n: u64) {
    PASSED.store(0, Ordering::SeqCst);
    ABORT_AT.store(n, Ordering::SeqCst);
}

/// Commits heads, counters and cursors in one batch and the revisions they name in a second,
/// with a fault point between: the write order the store must never use.
///
/// To see the damage, abort at the point after the second batch rather than between the two:
/// sled writes a batch's last log buffer only when the next batch starts or at a flush, so an
/// abort right after the first batch loses that batch too and leaves a consistent store.
pub fn set_broken_write_order(broken: bool) {
    BROKEN_WRITE_ORDER.store(broken, Ordering::SeqCst);
}

/// How many fault points have been passed since `abort_at_point` was last called.
#[must_use]
pub fn points_passed() -> u64 {
    PASSED.load(Ordering::SeqCst)
}

/// Poisons `store` as a panic inside the storage engine would: the guarded call panics, is
/// caught, and the store refuses every later call. Returns the error the panicking call got.
#[must_use]
pub fn poison(store: &crate::Store) -> crate::StoreError {
    store.panic_in_engine()
}

pub(crate) fn broken_write_order() -> bool {
    BROKEN_WRITE_ORDER.load(Ordering::Relaxed)
}

/// A boundary between two steps of a write.
pub(crate) fn point() {
    let abort_at = ABORT_AT.load(Ordering::Relaxed);
    let passed = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if abort_at != 0 && passed == abort_at {
        std::process::abort();
    }
}
