//! Store work off the async runtime's threads. A store may block (sled waits for the disk), and
//! the PostgreSQL engine's synchronous client runs a runtime of its own: used, or dropped, on a
//! thread inside a tokio runtime, it panics. Handlers call the store on the blocking pool
//! (`spawn_blocking`); what runs outside a handler — mounting a collection, building the router,
//! dropping the last handle on the store — goes through [`off_runtime`].

/// Runs `work` where the store may block: right here on a thread outside any tokio runtime,
/// otherwise on a thread of its own (with the caller's tracing subscriber and span), joined
/// before returning. A panic in `work` resumes in the caller.
pub(crate) fn off_runtime<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let traced = move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(work));
    std::thread::scope(|scope| match scope.spawn(traced).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

#[cfg(test)]
mod tests {
    use super::off_runtime;

    /// What the PostgreSQL client does: a runtime of its own, blocked on and dropped.
    fn own_runtime() -> u32 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async { 7 })
    }

    #[test]
    fn work_runs_off_a_worker_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let done =
            runtime.block_on(async { tokio::spawn(async { off_runtime(own_runtime) }).await });
        assert_eq!(done.unwrap(), 7);
        // And from inside `block_on` on a current-thread runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(async { off_runtime(own_runtime) }), 7);
        // Outside any runtime it runs in place.
        assert_eq!(off_runtime(own_runtime), 7);
    }
}
