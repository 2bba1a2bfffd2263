//! A one-way "done" flag between a media task (player, recorder) and its
//! owner, awaited cancel-safely next to the call's other events. No RFC:
//! plumbing between tokio tasks.

use tokio::sync::watch;

/// The task's side: raises the flag once.
#[derive(Debug)]
pub(crate) struct Raise(watch::Sender<bool>);

/// The owner's side: waits for the flag.
#[derive(Debug)]
pub(crate) struct Wait(watch::Receiver<bool>);

/// A lowered flag.
pub(crate) fn flag() -> (Raise, Wait) {
    let (tx, rx) = watch::channel(false);
    (Raise(tx), Wait(rx))
}

impl Raise {
    /// Raises the flag (again: no effect).
    pub(crate) fn raise(&self) {
        self.0
            .send_if_modified(|done| !std::mem::replace(done, true));
    }
}

impl Wait {
    /// Returns once the flag is raised, or once the task is gone without
    /// raising it (it failed; its `stop` says so). Cancel-safe: the flag
    /// stays raised, so a new call after a cancelled one returns at once.
    pub(crate) async fn wait(&mut self) {
        // Err: the sender is gone, nothing will ever change.
        let _ = self.0.wait_for(|done| *done).await;
    }
}
