//! Call detail records: what is kept of every call when it ends (start,
//! answer, end, parties, context, disposition, duration, hangup cause).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a call ended, as CDRs and metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Disposition {
    /// Answered (by a dialled target or by the dialplan itself).
    Answered,
    /// The targets were busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The caller gave up before an answer.
    Cancelled,
    /// The dialplan or the switch refused it (404, 403, 486 …).
    Rejected,
    /// Something failed (a Lua error, no route, a transport error).
    Failed,
}

impl Disposition {
    /// The label in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "noanswer",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// One finished call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cdr {
    /// The call's id (the inbound leg's Call-ID).
    pub call_id: String,
    /// The caller's URI (From).
    pub from: String,
    /// The called URI (To).
    pub to: String,
    /// The authenticated extension that placed the call, if any.
    pub caller: Option<String>,
    /// What was dialled, if the call was bridged (the answering target).
    pub callee: Option<String>,
    /// The dialplan context that routed it.
    pub context: String,
    /// Unix milliseconds when the INVITE arrived.
    pub start_ms: u64,
    /// Unix milliseconds when it was answered, if it was.
    pub answer_ms: Option<u64>,
    /// Unix milliseconds when it ended.
    pub end_ms: u64,
    /// How it ended.
    pub disposition: Disposition,
    /// The final SIP status the caller got (200 when answered).
    pub code: u16,
    /// Whole call, milliseconds.
    pub duration_ms: u64,
    /// Answered time ("billsec"), milliseconds.
    pub billable_ms: u64,
    /// Who or what ended it: `caller`, `callee`, `dialplan`, `cancel`,
    /// `timeout`, `error: …`.
    pub hangup_cause: String,
}

impl Cdr {
    /// Fills the durations from the timestamps.
    pub fn with_durations(mut self) -> Self {
        self.duration_ms = self.end_ms.saturating_sub(self.start_ms);
        self.billable_ms = self.answer_ms.map_or(0, |a| self.end_ms.saturating_sub(a));
        self
    }
}

/// Now, in unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_timestamps() {
        let cdr = Cdr {
            call_id: "c".into(),
            from: "sip:1001@x".into(),
            to: "sip:1002@x".into(),
            caller: Some("1001".into()),
            callee: Some("1002".into()),
            context: "default".into(),
            start_ms: 1_000,
            answer_ms: Some(3_000),
            end_ms: 10_000,
            disposition: Disposition::Answered,
            code: 200,
            duration_ms: 0,
            billable_ms: 0,
            hangup_cause: "caller".into(),
        }
        .with_durations();
        assert_eq!((cdr.duration_ms, cdr.billable_ms), (9_000, 7_000));
        let json = serde_json::to_value(&cdr).unwrap();
        assert_eq!(json["disposition"], "answered");
    }

    #[test]
    fn an_unanswered_call_bills_nothing() {
        let cdr = Cdr {
            call_id: "c".into(),
            from: String::new(),
            to: String::new(),
            caller: None,
            callee: None,
            context: "default".into(),
            start_ms: 5,
            answer_ms: None,
            end_ms: 2,
            disposition: Disposition::Cancelled,
            code: 487,
            duration_ms: 0,
            billable_ms: 0,
            hangup_cause: "cancel".into(),
        }
        .with_durations();
        assert_eq!((cdr.duration_ms, cdr.billable_ms), (0, 0));
    }
}
