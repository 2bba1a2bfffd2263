//! A call's record (DESIGN.md "Calls", docs/call-core.md): what `pbx`
//! keeps of every call whatever its channels' protocol. Its CDR as it
//! fills in, its entry in the live-call [`Registry`] (what the admin API
//! and the busy lamps see), its trace, and its end: the CDR written by the
//! [`CdrWriter`], the registry told, the calls counted, one log line.
//!
//! A channel driver's call task holds one and tells it what happens
//! ([`answered`](CallRecord::answered), [`publish`](CallRecord::publish),
//! [`end`](CallRecord::end)); it never writes a CDR or a registry entry
//! itself.

use std::sync::Arc;

use crate::cdr::{Cdr, Disposition, unix_ms};
use crate::cdr_writer::CdrWriter;
use crate::registry::{CallSnapshot, CallState, LegSnapshot, Registry, RingingSnapshot};
use crate::trace::CallTrace;

/// One call's record (see the module docs).
pub struct CallRecord {
    registry: Arc<Registry>,
    cdrs: CdrWriter,
    trace: Option<Arc<CallTrace>>,
    /// What the CDR will say, as far as it is known while the call lives
    /// (the CDR's times as text, durations and cause are made at the end:
    /// room kept for them in every live call would be wasted).
    live: Live,
    /// What a transfer did to the call, for its CDR's hangup cause.
    transferred: Option<String>,
    /// How it ended, once it has (boxed: no room for it while it lives).
    end: Option<Box<Ending>>,
}

/// The CDR's fields known while a call lives.
struct Live {
    call_id: String,
    from: String,
    to: String,
    context: String,
    caller: Option<String>,
    callee: Option<String>,
    start_ms: u64,
    answer_ms: Option<u64>,
}

/// How a call ended.
struct Ending {
    disposition: Disposition,
    code: u16,
    cause: String,
    end_ms: u64,
}

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecord")
            .field("id", &self.live.call_id)
            .field("ended", &self.end.is_some())
            .finish_non_exhaustive()
    }
}

impl CallRecord {
    /// The record of a call starting with `cdr` (see [`Cdr::begin`]: its
    /// id, parties, context, start and, for a call that comes answered,
    /// its answer); it is filed in `registry` at its first
    /// [`publish`](Self::publish).
    pub fn open(
        registry: Arc<Registry>,
        cdrs: CdrWriter,
        trace: Option<Arc<CallTrace>>,
        cdr: Cdr,
    ) -> CallRecord {
        let Cdr {
            call_id,
            from,
            to,
            caller,
            callee,
            context,
            start_ms,
            answer_ms,
            ..
        } = cdr;
        CallRecord {
            registry,
            cdrs,
            trace,
            live: Live {
                call_id,
                from,
                to,
                context,
                caller,
                callee,
                start_ms,
                answer_ms,
            },
            transferred: None,
            end: None,
        }
    }

    /// The call's id.
    pub fn id(&self) -> &str {
        &self.live.call_id
    }

    /// The extension that placed the call, if one did.
    pub fn caller(&self) -> Option<&str> {
        self.live.caller.as_deref()
    }

    /// Who the caller talks to (the target that answered, a pickup's or
    /// an unpark's party), once someone is.
    pub fn callee(&self) -> Option<&str> {
        self.live.callee.as_deref()
    }

    /// The call's trace, if traces are kept.
    pub fn trace(&self) -> Option<&Arc<CallTrace>> {
        self.trace.as_ref()
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Who the caller talks to now.
    pub fn set_callee(&mut self, callee: Option<String>) {
        self.live.callee = callee;
    }

    /// The caller was answered, now.
    pub fn answered(&mut self) {
        self.live.answer_ms = Some(unix_ms());
    }

    /// Whether the caller has been answered.
    pub fn was_answered(&self) -> bool {
        self.live.answer_ms.is_some()
    }

    /// A transfer changed who talks to whom (`what` says how, for the
    /// CDR's hangup cause).
    pub fn transferred(&mut self, what: String) {
        self.transferred = Some(what);
    }

    /// Notes in the trace what the call made of a dialplan step.
    /// Nothing is written for a trace no longer kept.
    pub fn note(&self, text: impl FnOnce() -> String) {
        if let Some(t) = &self.trace
            && t.is_recording()
        {
            t.step(None, text());
        }
    }

    /// Files the call's state now, with its legs (the caller's first) and
    /// the contacts a dial in progress rings.
    pub fn publish(&self, state: CallState, legs: Vec<LegSnapshot>, ringing: Vec<RingingSnapshot>) {
        let live = &self.live;
        self.registry.insert(CallSnapshot {
            id: live.call_id.clone(),
            from: live.from.clone(),
            to: live.to.clone(),
            caller: live.caller.clone(),
            callee: live.callee.clone(),
            context: live.context.clone(),
            state,
            started_ms: live.start_ms,
            answered_ms: live.answer_ms,
            legs,
            ringing,
        });
    }

    /// The call is over, how and why (the first end counts: `false` when
    /// it had ended already).
    pub fn end(&mut self, disposition: Disposition, code: u16, cause: &str) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.note(|| format!("call ended: {} {code} ({cause})", disposition.as_str()));
        self.end = Some(Box::new(Ending {
            disposition,
            code,
            cause: match &self.transferred {
                // The CDR says the call was transferred, and by whom.
                Some(what) => format!("{cause}; {what}"),
                None => cause.to_owned(),
            },
            end_ms: unix_ms(),
        }));
        true
    }

    /// The call's task is done: it leaves the registry, its trace is
    /// closed, it is counted and logged, and its CDR is written. A call
    /// that was never [ended](Self::end) is recorded as failed (500).
    pub fn close(mut self) {
        if self.end.is_none() {
            self.end(Disposition::Failed, 500, "internal");
        }
        let Some(end) = self.end.take() else {
            return;
        };
        self.registry.remove(&self.live.call_id);
        if let Some(t) = &self.trace {
            t.end();
        }
        metrics::counter!("calls_total", "disposition" => end.disposition.as_str()).increment(1);
        let Live {
            call_id,
            from,
            to,
            context,
            caller,
            callee,
            start_ms,
            answer_ms,
        } = self.live;
        let cdr = Cdr {
            caller,
            callee,
            answer_ms,
            end_ms: end.end_ms,
            disposition: end.disposition,
            code: end.code,
            hangup_cause: end.cause,
            ..Cdr::begin(call_id, from, to, context, start_ms)
        }
        .with_durations();
        tracing::info!(
            from = %cdr.from,
            to = %cdr.to,
            disposition = cdr.disposition.as_str(),
            code = cdr.code,
            cause = %cdr.hangup_cause,
            duration_ms = cdr.duration_ms,
            "call ended"
        );
        self.cdrs.write(cdr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{CdrStore, MemoryStorage};

    fn record(store: &Arc<MemoryStorage>, registry: &Arc<Registry>) -> CallRecord {
        let cdrs = CdrWriter::start(store.clone());
        let cdr = Cdr {
            caller: Some("1001".into()),
            ..Cdr::begin(
                "call-1".into(),
                "sip:1001@pbx.test".into(),
                "sip:1002@pbx.test".into(),
                "office".into(),
                unix_ms(),
            )
        };
        CallRecord::open(registry.clone(), cdrs, None, cdr)
    }

    async fn stored(store: &Arc<MemoryStorage>, writer_of: &CdrWriter) -> Vec<Cdr> {
        writer_of.flush().await;
        store
            .recent_cdrs(10)
            .expect("the memory store reads")
            .into_iter()
            .map(|e| serde_json::from_value(e.record).expect("a CDR as written"))
            .collect()
    }

    #[tokio::test]
    async fn a_call_is_filed_while_live_and_leaves_one_cdr() {
        let store = Arc::new(MemoryStorage::new());
        let registry = Arc::new(Registry::new());
        let mut call = record(&store, &registry);
        let writer = call.cdrs.clone();
        call.publish(CallState::Routing, Vec::new(), Vec::new());
        assert!(registry.contains("call-1"));
        call.answered();
        call.set_callee(Some("1002".into()));
        call.publish(CallState::Bridged, Vec::new(), Vec::new());
        let live = registry.list();
        assert_eq!(live[0].state, CallState::Bridged);
        assert_eq!(live[0].callee.as_deref(), Some("1002"));
        assert!(live[0].answered_ms.is_some());

        call.transferred("transferred by 1001 to 1003".into());
        assert!(call.end(Disposition::Answered, 200, "callee"));
        // Only the first end counts.
        assert!(!call.end(Disposition::Failed, 500, "later"));
        call.close();
        assert!(!registry.contains("call-1"));
        let cdrs = stored(&store, &writer).await;
        assert_eq!(cdrs.len(), 1);
        let cdr = &cdrs[0];
        assert_eq!(cdr.disposition, Disposition::Answered);
        assert_eq!(cdr.code, 200);
        assert_eq!(cdr.hangup_cause, "callee; transferred by 1001 to 1003");
        assert_eq!(cdr.caller.as_deref(), Some("1001"));
        assert_eq!(cdr.callee.as_deref(), Some("1002"));
        assert!(!cdr.start.is_empty() && cdr.answer.is_some());
    }

    #[tokio::test]
    async fn a_call_closed_without_an_end_is_recorded_as_failed() {
        let store = Arc::new(MemoryStorage::new());
        let registry = Arc::new(Registry::new());
        let call = record(&store, &registry);
        let writer = call.cdrs.clone();
        call.publish(CallState::Routing, Vec::new(), Vec::new());
        call.close();
        assert!(registry.is_empty());
        let cdrs = stored(&store, &writer).await;
        assert_eq!(cdrs.len(), 1);
        assert_eq!(cdrs[0].disposition, Disposition::Failed);
        assert_eq!(cdrs[0].code, 500);
        assert_eq!(cdrs[0].hangup_cause, "internal");
        assert_eq!(cdrs[0].billable_ms, 0);
    }
}
