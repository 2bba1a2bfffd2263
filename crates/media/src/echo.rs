//! Echo: a leg's received RTP sent back to where it came from, as a stream
//! of our own (a fresh SSRC, sequence and timestamp base, RFC 3550 §5.1
//! via [`rtp::Rewriter`]); the test that a phone's audio path works.

use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::leg::{Leg, buffer};
use crate::path::{Outcome, Path};

/// A running echo on one leg. Dropping it ends the echo and drops the leg;
/// [`Echo::stop`] ends it and gives the leg back.
#[derive(Debug)]
pub struct Echo {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Leg>,
}

impl Echo {
    /// Starts a task sending `leg`'s RTP back to it. Telephone-events are
    /// echoed too when negotiated. Must be called inside a tokio runtime.
    pub fn start(leg: Leg) -> Echo {
        let path = Path::new(leg.params(), leg.params()).with_own_ssrc();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(leg, path, stopped));
        Echo { stop, task }
    }

    /// Ends the echo and returns the leg.
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the echo's task did not end normally.
    pub async fn stop(self) -> Result<Leg, Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        self.task.await.map_err(|_| Error::TaskFailed)
    }
}

async fn run(mut leg: Leg, mut path: Path, mut stopped: oneshot::Receiver<()>) -> Leg {
    let mut buf = buffer();
    loop {
        let rx = tokio::select! {
            _ = &mut stopped => break,
            rx = leg.recv(&mut buf) => rx,
        };
        if path.forward(&rx, &mut buf[..], &mut leg, Instant::now()) == Outcome::Unwanted {
            leg.count_dropped_payload_type();
        }
    }
    leg
}
