//! The listener: an answered leg with nothing to play. A task receives
//! and discards its RTP, so symmetric-RTP latching (RFC 4961), RFC 4733
//! digit detection, RTCP (RFC 3550 §6) and the media timeout keep working
//! while the call waits, for digits for instance. It sends no RTP.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::leg::{Leg, buffer};

/// A leg being listened to. Dropping it ends the task and drops the leg;
/// [`Listener::stop`] ends it and gives the leg back.
#[derive(Debug)]
pub struct Listener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Leg>,
}

impl Listener {
    /// Starts a task receiving from `leg`. Must be called inside a tokio
    /// runtime.
    pub fn start(leg: Leg) -> Listener {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(leg, stopped));
        Listener { stop, task }
    }

    /// Ends the task and returns the leg.
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the listener's task did not end normally.
    pub async fn stop(self) -> Result<Leg, Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        self.task.await.map_err(|_| Error::TaskFailed)
    }
}

async fn run(mut leg: Leg, mut stopped: oneshot::Receiver<()>) -> Leg {
    let mut buf = buffer();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            // Everything a leg does with a packet happens inside recv.
            _rx = leg.recv(&mut buf) => {}
        }
    }
    leg
}
