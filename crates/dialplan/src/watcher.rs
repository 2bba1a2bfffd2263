//! Hot reload on file change (DESIGN.md "Dialplan (Lua)", hot reload): a
//! notify watcher on `dialplans/` and `plugins/`, debounced, that reloads
//! the runtime once a burst of changes has settled.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, ReloadError};
use crate::runtime::Runtime;

/// A running watcher; dropping it stops watching (and waits for a reload in
/// progress to finish).
#[derive(Debug)]
pub struct ReloadWatcher {
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ReloadWatcher {
    fn drop(&mut self) {
        // Dropping the notify watcher drops the channel's sender, which ends
        // the reload thread's loop.
        self.watcher.take();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has already been reported by std.
            let _ = thread.join();
        }
    }
}

impl Runtime {
    /// Watches the dialplans and plugins directories (plugins only if it
    /// exists) and reloads once changes have been quiet for `debounce`.
    /// `on_reload` gets every result (the runtime logs them already), e.g.
    /// for metrics.
    pub fn watch(
        self: &Arc<Self>,
        debounce: Duration,
        on_reload: impl Fn(Result<u64, ReloadError>) + Send + 'static,
    ) -> Result<ReloadWatcher, Error> {
        let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(tx).map_err(Error::Watch)?;
        watcher
            .watch(self.dialplans_dir(), RecursiveMode::NonRecursive)
            .map_err(Error::Watch)?;
        if self.plugins_dir().is_dir() {
            watcher
                .watch(self.plugins_dir(), RecursiveMode::Recursive)
                .map_err(Error::Watch)?;
        }
        let runtime: Weak<Runtime> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("dialplan-watch".into())
            .spawn(move || {
                loop {
                    // Wait for a change that could alter a file's text.
                    match rx.recv() {
                        Ok(Ok(event)) if changes_files(&event.kind) => {}
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => {
                            tracing::warn!("dialplan watcher: {e}");
                            continue;
                        }
                        Err(_) => return,
                    }
                    // Debounce: wait until the burst (an editor's save, a
                    // `git checkout`) has been quiet for `debounce`.
                    // Only changes extend the wait: reads (other servers
                    // loading the same plugins, our own reload) do not.
                    let mut quiet_at = std::time::Instant::now() + debounce;
                    loop {
                        let left = quiet_at.saturating_duration_since(std::time::Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(Ok(event)) if changes_files(&event.kind) => {
                                quiet_at = std::time::Instant::now() + debounce;
                            }
                            Ok(_) => {}
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let Some(runtime) = runtime.upgrade() else {
                        return;
                    };
                    on_reload(runtime.reload());
                }
            })
            .map_err(|e| Error::Watch(notify::Error::io(e)))?;
        Ok(ReloadWatcher {
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

/// Creating, writing, removing or renaming files; not reading them (the
/// reload itself reads every file).
fn changes_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}
