//! The Lua thread pool: every call's Lua runs on these threads, never on
//! the runtime that carries SIP and media, so a script that spins (in the
//! VM or in a C library function) can use up these threads at worst, and
//! signalling and media go on. The call actions a route awaits run back on
//! the caller's runtime (see `route.rs`).
//!
//! One pool per process, started at the first route: a multi-thread tokio
//! runtime with one worker per CPU (at most [`MAX_THREADS`]), threads named
//! `lua`. It lives as long as the process (a static), so it is never
//! dropped inside an async context.

use std::sync::OnceLock;

/// The most Lua threads, whatever the number of CPUs.
const MAX_THREADS: usize = 8;

/// How many threads the pool has: one per CPU, 1 to [`MAX_THREADS`].
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, MAX_THREADS))
}

/// The pool's handle, starting the pool on first use; `None` if its
/// threads could not be started (then Lua runs on the caller's runtime, as
/// before the pool existed, and that is logged once).
pub(crate) fn handle() -> Option<&'static tokio::runtime::Handle> {
    static POOL: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads())
            .thread_name("lua")
            .enable_all()
            .build()
        {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                tracing::error!(
                    "could not start the Lua thread pool ({e}); Lua runs on the server's own threads"
                );
                None
            }
        }
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
}

/// A task that is aborted when its handle is dropped: a route (or an
/// action) whose caller went away does not run on unseen.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}
