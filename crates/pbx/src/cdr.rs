//! Call detail records: what is kept of every call when it ends (start,
//! answer, end, parties, context, disposition, duration, hangup cause).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// `timeout`, `error: …` (a call the dialplan answered and then lost
    /// to a Lua error says which).
    pub hangup_cause: String,
    /// `start_ms` as RFC 3339 UTC, e.g. `2026-12-06T20:07:48.123Z`.
    #[serde(default)]
    pub start: String,
    /// `answer_ms` as RFC 3339 UTC.
    #[serde(default)]
    pub answer: Option<String>,
    /// `end_ms` as RFC 3339 UTC.
    #[serde(default)]
    pub end: String,
}

impl Cdr {
    /// The record of a call that starts at `start_ms` (its disposition
    /// `Failed` until it is known; the rest filled in as the call goes).
    pub fn begin(call_id: String, from: String, to: String, context: String, start_ms: u64) -> Cdr {
        Cdr {
            call_id,
            from,
            to,
            caller: None,
            callee: None,
            context,
            start_ms,
            answer_ms: None,
            end_ms: start_ms,
            disposition: Disposition::Failed,
            code: 0,
            duration_ms: 0,
            billable_ms: 0,
            hangup_cause: String::new(),
            start: String::new(),
            answer: None,
            end: String::new(),
        }
    }

    /// Fills the durations and the RFC 3339 times from the timestamps.
    pub fn with_durations(mut self) -> Self {
        self.duration_ms = self.end_ms.saturating_sub(self.start_ms);
        self.billable_ms = self.answer_ms.map_or(0, |a| self.end_ms.saturating_sub(a));
        self.start = rfc3339(self.start_ms);
        self.answer = self.answer_ms.map(rfc3339);
        self.end = rfc3339(self.end_ms);
        self
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(unix_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(time).to_string()
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
            start: String::new(),
            answer: None,
            end: String::new(),
        }
        .with_durations();
        assert_eq!((cdr.duration_ms, cdr.billable_ms), (9_000, 7_000));
        assert_eq!(cdr.start, "1970-01-01T00:00:01.000Z");
        assert_eq!(cdr.answer.as_deref(), Some("1970-01-01T00:00:03.000Z"));
        assert_eq!(cdr.end, "1970-01-01T00:00:10.000Z");
        assert_eq!(rfc3339(1_796_587_668_123), "2026-12-06T20:07:48.123Z");
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
            start: String::new(),
            answer: None,
            end: String::new(),
        }
        .with_durations();
        assert_eq!((cdr.duration_ms, cdr.billable_ms), (0, 0));
    }
}
