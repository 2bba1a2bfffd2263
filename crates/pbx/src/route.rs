//! The route driving a call (DESIGN.md "Calls", docs/call-core.md): the
//! dialplan's task for the call, the queue of what it asks
//! ([`Command`]s), and what happens when it ends or gives the call up.
//!
//! A call has one route at a time. A blind transfer routes the call again
//! in the transferor's context: the new route [takes over](RouteTask::take_over)
//! and the one it replaces winds down on its own (its pending and later
//! actions fail with "call has ended"; its end is not the call's). When
//! the call is over, its route gets [`ROUTE_LINGER`] to notice and return
//! before the call stops waiting for it.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cdr::Disposition;
use crate::handle::{CallHandle, Command, Commands, RouteEnd};

/// How long a finished call waits for its route to return before it stops
/// waiting (a route whose actions all fail with "call has ended" returns
/// at once; this bounds a plugin stuck in storage IO).
pub const ROUTE_LINGER: Duration = Duration::from_secs(10);

/// What the route did ([`RouteTask::next`]).
#[derive(Debug)]
pub enum RouteEvent {
    /// It asks something of the call.
    Command(Command),
    /// It returned (or failed): the call decides what that means for its
    /// caller. A route that was taken over never reports its end.
    Ended(RouteEnd),
}

/// What the end of its route means for a call that is still up
/// ([`RouteEnd::verdict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The caller was answered: every party is hung up; the CDR's cause
    /// says why (`dialplan`, or the error that lost the call).
    HangUp {
        /// The CDR's hangup cause.
        cause: String,
    },
    /// The caller was not answered: it is refused with `code` and `text`
    /// (a protocol's Warning), any dial in progress stops, and the CDR
    /// says `disposition` and `cause`.
    Refuse {
        /// The status (404: no route; 500: the route failed; 503: the
        /// route could not reach its storage, try again later).
        code: u16,
        /// Why, for the caller.
        text: String,
        /// How the CDR counts it.
        disposition: Disposition,
        /// The CDR's hangup cause.
        cause: &'static str,
    },
}

impl RouteEnd {
    /// What this end means for a call still up whose caller was answered
    /// (`answered`) or not.
    pub fn verdict(self, answered: bool) -> Verdict {
        if answered {
            // Answered, then lost to an error (a missing prompt, say): the
            // CDR says which.
            let cause = match self {
                RouteEnd::Failed(why) | RouteEnd::Unavailable(why) => format!("error: {why}"),
                RouteEnd::Done => "dialplan".to_owned(),
            };
            return Verdict::HangUp { cause };
        }
        let (code, text, disposition, cause) = match self {
            RouteEnd::Failed(why) => (500, why, Disposition::Failed, "error"),
            // The storage is out of reach for now: the caller may retry.
            RouteEnd::Unavailable(why) => (503, why, Disposition::Failed, "error"),
            RouteEnd::Done => (
                404,
                "no route for this number".to_owned(),
                Disposition::Rejected,
                "no route",
            ),
        };
        Verdict::Refuse {
            code,
            text,
            disposition,
            cause,
        }
    }
}

/// The route of one call (see the module docs).
#[derive(Debug)]
pub struct RouteTask {
    commands: Commands,
    /// Cancelled when the call ends or the route is taken over: its
    /// actions fail with "call has ended".
    ended: CancellationToken,
    task: JoinHandle<RouteEnd>,
    /// The task has returned (its end was reported, or ignored).
    done: bool,
    /// The running task gave the call up: its end is not the call's.
    superseded: bool,
    /// When the call stops waiting for the route of a call that is over.
    linger_until: Option<Instant>,
}

impl RouteTask {
    /// Runs the route `make` makes with `handle` (whose other end is
    /// `commands`) on tokio, in the current tracing span.
    pub fn spawn<F>(
        handle: CallHandle,
        commands: Commands,
        make: impl FnOnce(CallHandle) -> F,
    ) -> RouteTask
    where
        F: Future<Output = RouteEnd> + Send + 'static,
    {
        RouteTask {
            commands,
            ended: handle.ended_token(),
            task: spawn_in_span(make(handle)),
            done: false,
            superseded: false,
            linger_until: None,
        }
    }

    /// The route running now gives the call up: its pending and later
    /// actions fail with "call has ended", and its end does not end the
    /// call. A route that [takes over](RouteTask::take_over) may follow.
    pub fn give_up(&mut self) {
        self.ended.cancel();
        self.superseded = true;
    }

    /// The route `make` makes with `handle` (whose other end is
    /// `commands`) drives the call from now on; the route running is given
    /// up, if it was not already, and winds down on its own.
    pub fn take_over<F>(
        &mut self,
        handle: CallHandle,
        commands: Commands,
        make: impl FnOnce(CallHandle) -> F,
    ) where
        F: Future<Output = RouteEnd> + Send + 'static,
    {
        self.ended.cancel();
        // Dropping the old task's handle detaches it: it still runs to
        // its end, which nobody reads.
        *self = RouteTask::spawn(handle, commands, make);
    }

    /// The call is over: the route's pending and later actions fail with
    /// "call has ended".
    pub fn call_ended(&mut self) {
        self.ended.cancel();
    }

    /// Whether the route has returned.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// When the call stops waiting for its route, once the call is over
    /// (`call_over`) and the route has not returned: the first time this
    /// is asked after the call ended, plus [`ROUTE_LINGER`].
    pub fn linger_deadline(&mut self, call_over: bool, now: Instant) -> Option<Instant> {
        if !call_over || self.done {
            return None;
        }
        Some(*self.linger_until.get_or_insert(now + ROUTE_LINGER))
    }

    /// Stops the route (it outlived its linger): the task is aborted.
    pub fn abandon(&mut self) {
        tracing::warn!(
            "route still running {}s after the call ended; abandoning it",
            ROUTE_LINGER.as_secs()
        );
        self.task.abort();
        self.done = true;
    }

    /// The route's next command, or its end. Cancel-safe: nothing is lost
    /// when the future is dropped. Pends for ever once the route has
    /// returned and every handle on the call is gone.
    pub async fn next(&mut self) -> RouteEvent {
        loop {
            tokio::select! {
                Some(command) = self.commands.recv() => return RouteEvent::Command(command),
                end = &mut self.task, if !self.done => {
                    self.done = true;
                    let end = end.unwrap_or_else(|e| RouteEnd::Failed(format!("route task failed: {e}")));
                    if !std::mem::take(&mut self.superseded) {
                        return RouteEvent::Ended(end);
                    }
                }
                else => std::future::pending::<()>().await,
            }
        }
    }
}

/// Spawns `route` in the current tracing span.
fn spawn_in_span(route: impl Future<Output = RouteEnd> + Send + 'static) -> JoinHandle<RouteEnd> {
    use tracing::Instrument;
    tokio::spawn(route.in_current_span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActionError;

    async fn route_that_hangs_up(handle: CallHandle) -> RouteEnd {
        match handle.hangup().await {
            Ok(()) => RouteEnd::Done,
            Err(e) => RouteEnd::Failed(e.to_string()),
        }
    }

    #[test]
    fn a_route_that_ends_leaves_its_caller_refused_or_hung_up() {
        let refused = |end: RouteEnd| match end.verdict(false) {
            Verdict::Refuse {
                code,
                disposition,
                cause,
                ..
            } => (code, disposition, cause),
            other => panic!("an unanswered caller is refused: {other:?}"),
        };
        assert_eq!(
            refused(RouteEnd::Done),
            (404, Disposition::Rejected, "no route")
        );
        assert_eq!(
            refused(RouteEnd::Failed("boom".into())),
            (500, Disposition::Failed, "error")
        );
        assert_eq!(
            refused(RouteEnd::Unavailable("db down".into())),
            (503, Disposition::Failed, "error")
        );
        assert_eq!(
            RouteEnd::Failed("no such prompt".into()).verdict(true),
            Verdict::HangUp {
                cause: "error: no such prompt".into()
            }
        );
        assert_eq!(
            RouteEnd::Done.verdict(true),
            Verdict::HangUp {
                cause: "dialplan".into()
            }
        );
    }

    #[tokio::test]
    async fn commands_come_first_then_the_end() {
        let (handle, commands) = CallHandle::new();
        let mut route = RouteTask::spawn(handle, commands, route_that_hangs_up);
        let RouteEvent::Command(Command::Hangup(reply)) = route.next().await else {
            panic!("the route's hangup comes first");
        };
        let _ = reply.send(Ok(()));
        assert!(matches!(
            route.next().await,
            RouteEvent::Ended(RouteEnd::Done)
        ));
        assert!(route.is_done());
    }

    #[tokio::test]
    async fn a_route_taken_over_fails_its_actions_and_its_end_is_not_reported() {
        let (first, commands) = CallHandle::new();
        let (told, heard) = tokio::sync::oneshot::channel();
        let mut route = RouteTask::spawn(first, commands, |first| async move {
            // Waits until the call gives it up, then tries an action.
            first.ended_token().cancelled().await;
            let outcome = first.hangup().await;
            let _ = told.send(outcome);
            RouteEnd::Done
        });
        let (second, commands) = CallHandle::new();
        route.give_up();
        route.take_over(second, commands, route_that_hangs_up);
        assert_eq!(heard.await.ok(), Some(Err(ActionError::Ended)));
        // Only the new route is heard: its command, then its end.
        let RouteEvent::Command(Command::Hangup(reply)) = route.next().await else {
            panic!("the new route's command");
        };
        let _ = reply.send(Ok(()));
        assert!(matches!(
            route.next().await,
            RouteEvent::Ended(RouteEnd::Done)
        ));
    }

    #[tokio::test]
    async fn a_route_given_up_ends_unheard() {
        let (handle, commands) = CallHandle::new();
        let mut route = RouteTask::spawn(handle, commands, |_| async { RouteEnd::Done });
        route.give_up();
        let next = tokio::time::timeout(Duration::from_millis(200), route.next()).await;
        assert!(next.is_err(), "nothing is reported: {next:?}");
        assert!(route.is_done());
    }

    #[tokio::test]
    async fn a_finished_call_waits_for_its_route_only_so_long() {
        let (handle, commands) = CallHandle::new();
        let mut route = RouteTask::spawn(handle, commands, |_| std::future::pending());
        let now = Instant::now();
        assert_eq!(route.linger_deadline(false, now), None);
        let deadline = route.linger_deadline(true, now);
        assert_eq!(deadline, Some(now + ROUTE_LINGER));
        // Asked again later, the deadline stays where it was set.
        let later = now + Duration::from_secs(3);
        assert_eq!(route.linger_deadline(true, later), deadline);
        route.abandon();
        assert!(route.is_done());
        assert_eq!(route.linger_deadline(true, later), None);
    }
}
