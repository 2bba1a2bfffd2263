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
//!
//! On Linux the pool's threads run under the `SCHED_BATCH` policy (same
//! nice value, same share of the CPU): a Lua thread the server's runtime
//! wakes (a route to start, an action's result) runs when that runtime
//! waits or its time slice ends, instead of pre-empting it at once. With the
//! server on one core that was two context switches per wake-up, several
//! per call; now the routes woken meanwhile run in one go.

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
            .on_thread_start(give_way)
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

/// Puts the calling thread (one of the pool's) under `SCHED_BATCH` at its
/// nice value: woken, it does not pre-empt the thread that woke it (see the
/// module docs). If that fails (a kernel or sandbox that refuses it), the
/// thread stays as it was: it only costs CPU, so it is logged at debug.
#[cfg(target_os = "linux")]
fn give_way() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let Some(nice) = sched_stat().map(|s| s.nice) else {
        return;
    };
    // thread-priority sets a nice value with a normal policy, given as 0 to
    // 99 (99 is nice -20, 0 is nice 19): the value that keeps this one.
    let keep = (0..=99u8).find(|&p| {
        let ratio = 1f32 - f32::from(p) / 99f32;
        (39f32 * ratio) as i32 - 20 == nice
    });
    let Some(priority) = keep.and_then(|p| ThreadPriorityValue::try_from(p).ok()) else {
        return;
    };
    if let Err(e) = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(priority),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    ) {
        tracing::debug!("the Lua thread keeps its scheduling policy: {e:?}");
    }
}

#[cfg(not(target_os = "linux"))]
fn give_way() {}

/// The calling thread's scheduling as Linux shows it.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SchedStat {
    /// Its nice value, -20 to 19.
    nice: i32,
    /// Its policy: 0 `SCHED_OTHER`, 3 `SCHED_BATCH`, ...
    policy: u32,
}

/// Reads [`SchedStat`] from `/proc/thread-self/stat` (fields 19 and 41;
/// the command name, field 2, is in parentheses and may hold spaces).
#[cfg(target_os = "linux")]
fn sched_stat() -> Option<SchedStat> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(SchedStat {
        nice: fields.get(16)?.parse().ok()?,
        policy: fields.get(38)?.parse().ok()?,
    })
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_lua_threads_run_as_batch_at_the_process_nice_value() {
        let ours = sched_stat().expect("/proc/thread-self/stat");
        let pool = handle().expect("the Lua pool starts");
        let (tx, rx) = std::sync::mpsc::channel();
        pool.spawn(async move {
            let _ = tx.send(sched_stat());
        });
        let theirs = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the pool runs the task")
            .expect("the Lua thread's stat");
        assert_eq!(
            theirs,
            SchedStat {
                nice: ours.nice,
                policy: 3
            }
        );
    }
}
