//! Group commit: concurrent writers that each need a flush share one.

use parking_lot::{Condvar, Mutex};

/// Tracks which writes have been flushed. A writer takes a ticket after its batch is applied and
/// waits until a flush that started after that point has finished; whoever finds no flush running
/// starts one for everybody waiting.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out so far; ticket `n` is the `n`-th applied write.
    written: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    flushing: bool,
}

impl GroupCommit {
    /// A ticket for a write whose batch has been applied.
    pub(crate) fn ticket(&self) -> u64 {
        let mut state = self.state.lock();
        state.written += 1;
        state.written
    }

    /// Returns once `ticket` is durable, calling `flush` at most once on this thread.
    pub(crate) fn wait<E>(
        &self,
        ticket: u64,
        flush: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut state = self.state.lock();
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if state.flushing {
                self.flushed.wait(&mut state);
                continue;
            }
            state.flushing = true;
            let target = state.written;
            drop(state);
            let result = flush();
            let mut relocked = self.state.lock();
            relocked.flushing = false;
            if result.is_ok() {
                relocked.durable = relocked.durable.max(target);
            }
            self.flushed.notify_all();
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn one_flush_serves_every_earlier_ticket() {
        let commit = GroupCommit::default();
        let flushes = AtomicUsize::new(0);
        let first = commit.ticket();
        let second = commit.ticket();
        commit
            .wait(second, || {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            })
            .unwrap();
        commit
            .wait(first, || {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_flush_is_reported_and_retried() {
        let commit = GroupCommit::default();
        let ticket = commit.ticket();
        assert_eq!(commit.wait(ticket, || Err("disk")), Err("disk"));
        assert_eq!(commit.wait(ticket, || Ok::<_, &str>(())), Ok(()));
    }

    #[test]
    fn concurrent_writers_all_become_durable() {
        let commit = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let commit = Arc::clone(&commit);
                let flushes = Arc::clone(&flushes);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let ticket = commit.ticket();
                        commit
                            .wait(ticket, || {
                                flushes.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                                Ok::<_, ()>(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let state = commit.state.lock();
        assert_eq!((state.written, state.durable), (800, 800));
        assert!(!state.flushing);
    }
}
