//! The listener: an answered leg with nothing to play. A task receives
//! and discards its RTP, so symmetric-RTP latching (RFC 4961), RFC 4733
//! digit detection, RTCP (RFC 3550 §6) and the media timeout keep working
//! while the call waits, for digits for instance. It sends no RTP.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::leg::{Buffer, Leg, MAX_DATAGRAM};

/// A leg being listened to. Dropping it ends the task and drops the leg;
/// [`Listener::stop`] ends it and gives the leg back.
#[derive(Debug)]
pub struct Listener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Box<Leg>>,
}

impl Listener {
    /// Starts a task receiving from `leg`. Must be called inside a tokio
    /// runtime.
    pub fn start(leg: Leg) -> Listener {
        let (stop, stopped) = oneshot::channel();
        // Boxed: a task's future that took the leg by value would keep
        // room for it twice (argument and local).
        let task = tokio::spawn(run(Box::new(leg), stopped));
        Listener { stop, task }
    }

    /// Ends the task and returns the leg.
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the listener's task did not end normally.
    pub async fn stop(self) -> Result<Leg, Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        let leg = self.task.await.map_err(|_| Error::TaskFailed)?;
        Ok(*leg)
    }
}

/// The leg is polled in place (its wakers live in its sockets), so a
/// waiting listener keeps no receive buffer; it is given back boxed, as a
/// task keeps room for its output from the start.
async fn run(mut leg: Box<Leg>, mut stopped: oneshot::Receiver<()>) -> Box<Leg> {
    loop {
        let stop = std::future::poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if leg.poll_rtp_ready(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if stop {
            break;
        }
        // Everything a leg does with a packet happens as it is read.
        // Lives only until the next await: no part of the task's state.
        let mut buf: Buffer = [0; MAX_DATAGRAM + 1];
        for _ in 0..READ_BURST {
            if leg.try_recv(&mut buf).is_none() {
                break;
            }
        }
    }
    leg
}

/// Packets read per wake-up before the stop message is looked at again.
const READ_BURST: usize = 16;
