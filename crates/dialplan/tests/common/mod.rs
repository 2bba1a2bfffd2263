//! Test support: a dialplan directory in a tempdir and a fake call.
//!
//! The fake `CallApi` records the actions a route takes instead of doing
//! SIP, so the runtime is tested on its own; the binary's tests (tests/
//! calls.rs and others) run routes on real calls over real sockets.

#![allow(dead_code)] // each test binary uses a different part of it

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use dialplan::{
    CallApi, DigitOptions, Limits, RecordEnd, RecordOptions, RecordResult, Runtime, ScriptDial,
};
use pbx::{ActionError, CallDetails, DialOutcome, DialStatus, Party};

/// A dialplans/ and plugins/ pair in a fresh temporary directory.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("dialplans")).expect("mkdir");
        std::fs::create_dir(tmp.path().join("plugins")).expect("mkdir");
        Self { tmp }
    }

    pub fn dialplans(&self) -> PathBuf {
        self.tmp.path().join("dialplans")
    }

    pub fn plugins(&self) -> PathBuf {
        self.tmp.path().join("plugins")
    }

    /// Writes `rel` (e.g. `dialplans/default.lua`) under the directory.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.tmp.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime_with(Limits::default())
    }

    pub fn runtime_with(&self, limits: Limits) -> Runtime {
        Runtime::new(self.dialplans(), self.plugins(), limits).expect("first load")
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

/// A call to `to_user` from extension 1001, in context `default`.
pub fn call_to(to_user: &str) -> CallDetails {
    CallDetails {
        id: format!("call-to-{to_user}"),
        from: Party {
            user: "1001".into(),
            host: "pbx.test".into(),
            display: Some("Alice".into()),
            uri: "sip:1001@pbx.test".into(),
        },
        to: Party {
            user: to_user.into(),
            host: "pbx.test".into(),
            display: None,
            uri: format!("sip:{to_user}@pbx.test"),
        },
        request_uri: Party {
            user: to_user.into(),
            host: "pbx.test".into(),
            display: None,
            uri: format!("sip:{to_user}@pbx.test"),
        },
        source_ip: "127.0.0.10".into(),
        source_port: 5062,
        transport: "udp".into(),
        caller: Some("1001".into()),
        context: "default".into(),
        trunk: None,
        did: None,
        headers: [
            ("Via", "SIP/2.0/UDP 127.0.0.10:5062;branch=z9hG4bK1"),
            ("X-Account", "first"),
            ("User-Agent", "Test Phone 1.0"),
            ("x-account", "second"),
        ]
        .into_iter()
        .collect(),
        transferred_by: None,
        transfer_failed: None,
        identity: None,
    }
}

/// Records every action; `dial` answers with `dial_result`, `record` with
/// `record_result`, `read_digits` with `digits`.
pub struct FakeCall {
    pub actions: Mutex<Vec<String>>,
    pub dial_result: DialOutcome,
    pub record_result: RecordResult,
    pub digits: String,
    /// When set, this action reports that the caller has gone.
    pub gone_on: Option<&'static str>,
    /// When set, the call model refuses this action (`pbx`'s
    /// `ActionError::Failed`).
    pub fails_on: Option<&'static str>,
}

impl Default for FakeCall {
    fn default() -> Self {
        Self {
            actions: Mutex::new(Vec::new()),
            dial_result: DialOutcome {
                status: DialStatus::Answered,
                code: 200,
                answered_by: None,
            },
            record_result: RecordResult {
                duration: Duration::from_millis(2500),
                reason: RecordEnd::Terminator,
            },
            digits: String::new(),
            gone_on: None,
            fails_on: None,
        }
    }
}

impl FakeCall {
    pub fn actions(&self) -> Vec<String> {
        self.actions.lock().expect("lock").clone()
    }

    fn log(&self, action: &'static str, text: String) -> Result<(), ActionError> {
        self.actions.lock().expect("lock").push(text);
        if self.gone_on == Some(action) {
            return Err(ActionError::Ended);
        }
        if self.fails_on == Some(action) {
            return Err(ActionError::Failed("the caller has no media".into()));
        }
        Ok(())
    }
}

impl CallApi for FakeCall {
    async fn ring(&self) -> Result<(), ActionError> {
        self.log("ring", "ring".into())
    }

    async fn answer(&self) -> Result<(), ActionError> {
        self.log("answer", "answer".into())
    }

    async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        let text = match reason {
            Some(reason) => format!("reject {code} {reason}"),
            None => format!("reject {code}"),
        };
        self.log("reject", text)
    }

    async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        self.log("redirect", format!("redirect {uri}"))
    }

    async fn hangup(&self) -> Result<(), ActionError> {
        self.log("hangup", "hangup".into())
    }

    async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        tokio::time::sleep(duration).await;
        self.log("sleep", format!("sleep {}ms", duration.as_millis()))
    }

    async fn dial(&self, request: ScriptDial) -> Result<DialOutcome, ActionError> {
        self.log("dial", format!("dial {request:?}"))?;
        Ok(self.dial_result.clone())
    }

    async fn play(&self, file: String) -> Result<(), ActionError> {
        self.log("play", format!("play {file}"))
    }

    async fn record(&self, file: String, opts: RecordOptions) -> Result<RecordResult, ActionError> {
        self.log("record", format!("record {file} {opts:?}"))?;
        Ok(self.record_result)
    }

    async fn read_digits(&self, opts: DigitOptions) -> Result<String, ActionError> {
        self.log("read_digits", format!("read_digits {opts:?}"))?;
        Ok(self.digits.clone())
    }

    async fn echo(&self) -> Result<(), ActionError> {
        self.log("echo", "echo".into())
    }

    async fn hold(&self, class: Option<String>) -> Result<(), ActionError> {
        self.log("hold", format!("hold {}", class.as_deref().unwrap_or("-")))
    }

    async fn unhold(&self) -> Result<(), ActionError> {
        self.log("unhold", "unhold".into())
    }

    async fn park(
        &self,
        slot: Option<u16>,
        timeout: Duration,
        announce: bool,
        ringback: Option<String>,
    ) -> Result<u16, ActionError> {
        self.log(
            "park",
            format!(
                "park {slot:?} {}s announce={announce} ringback={ringback:?}",
                timeout.as_secs()
            ),
        )?;
        Ok(slot.unwrap_or(71))
    }

    async fn pickup(&self, target: Option<String>) -> Result<DialOutcome, ActionError> {
        self.log("pickup", format!("pickup {target:?}"))?;
        Ok(DialOutcome {
            status: DialStatus::Unavailable,
            code: 404,
            answered_by: None,
        })
    }

    async fn unpark(&self, slot: u16) -> Result<DialOutcome, ActionError> {
        self.log("unpark", format!("unpark {slot}"))?;
        Ok(DialOutcome {
            status: DialStatus::Unavailable,
            code: 404,
            answered_by: None,
        })
    }
}
