//! A call's event queue: what the SIP side (requests in its dialogs, its
//! branches' responses, other calls' questions) tells a call's task, or a
//! detached channel. Bounded, so a flood cannot grow memory; built on
//! flume, whose buffer grows with what is queued (tokio's mpsc allocates
//! 32 slots and a padded header at once, 1.5 KB for every call).

use crate::call::CallEvent;

/// A queue for `capacity` events.
pub(crate) fn events(capacity: usize) -> (EventTx, EventRx) {
    let (tx, rx) = flume::bounded(capacity);
    (EventTx(tx), EventRx(rx))
}

/// The sending end; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EventTx(flume::Sender<CallEvent>);

/// The receiver is gone: the call or channel has ended.
#[derive(Debug)]
pub(crate) struct Closed;

impl EventTx {
    /// Queues `event`, waiting for room.
    pub(crate) async fn send(&self, event: CallEvent) -> Result<(), Closed> {
        self.0.send_async(event).await.map_err(|_| Closed)
    }

    /// Queues `event` if there is room now.
    pub(crate) fn try_send(&self, event: CallEvent) -> Result<(), Closed> {
        self.0.try_send(event).map_err(|_| Closed)
    }

    /// Whether both send to the same queue.
    pub(crate) fn same_channel(&self, other: &EventTx) -> bool {
        self.0.same_channel(&other.0)
    }
}

/// The receiving end, read by one task.
#[derive(Debug)]
pub(crate) struct EventRx(flume::Receiver<CallEvent>);

impl EventRx {
    /// The next event; `None` once every sender is gone. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<CallEvent> {
        self.0.recv_async().await.ok()
    }
}
