//! Calls in the binary: the Lua dialplan as the `pbx` router (every new
//! call runs, as a coroutine in the current generation's Lua states, its
//! context's `route(call)`), and the call actions Lua sees, carried out
//! through the call's [`pbx::CallHandle`] (DESIGN.md "Calls", "Dialplan").

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dialplan::{
    ActionError, CallApi, CallInfo, DialOptions, DialResult, DialStatus, DigitOptions, RecordEnd,
    RecordOptions, RecordResult, RouteOutcome, Runtime, Source, UriParts,
};
use pbx::{CallDetails, CallHandle, DialRequest, Party, RouteEnd, Router};

/// Where `play` finds prompts and `record` writes recordings
/// (`dialplan.sounds`, `dialplan.recordings`); names starting with
/// `voicemail/` are in the mailboxes (`dialplan.voicemail`) for both.
#[derive(Debug, Clone)]
pub struct MediaFiles {
    /// Prompts.
    pub sounds: PathBuf,
    /// Recordings.
    pub recordings: PathBuf,
    /// The mailboxes.
    pub voicemail: PathBuf,
}

impl MediaFiles {
    /// `file` (checked by the dialplan: relative, no `..`) under `base`,
    /// or under the mailboxes for a `voicemail/` name.
    fn path(&self, base: &std::path::Path, file: &str) -> PathBuf {
        match file.strip_prefix(crate::voicemail::PREFIX) {
            Some(rest) => self.voicemail.join(rest),
            None => base.join(file),
        }
    }
}

/// Routes every call through the Lua runtime.
pub struct LuaRouter {
    runtime: Arc<Runtime>,
    files: Arc<MediaFiles>,
}

impl LuaRouter {
    /// A router on `runtime`, with prompts and recordings in `files`.
    pub fn new(runtime: Arc<Runtime>, files: MediaFiles) -> Self {
        Self {
            runtime,
            files: Arc::new(files),
        }
    }
}

impl Router for LuaRouter {
    fn route(
        &self,
        call: CallHandle,
        details: CallDetails,
    ) -> Pin<Box<dyn Future<Output = RouteEnd> + Send + 'static>> {
        let state = match self.runtime.call_state() {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(call_id = %details.id, error = %e, "no Lua state for the call");
                let end = RouteEnd::Failed(format!("dialplan unavailable: {e}"));
                return Box::pin(async move { end });
            }
        };
        // Converted before the future is made, so it holds one copy.
        let info = call_info(details);
        let call = LuaCall {
            handle: call,
            files: Arc::clone(&self.files),
            digits: tokio::sync::Mutex::new(None),
        };
        // Started now, so the future the call's task keeps only waits.
        let route = state.start_route(Arc::new(call), info);
        Box::pin(async move {
            match route.await {
                RouteOutcome::Failed { failure, .. }
                    if failure.kind == dialplan::FailureKind::Unavailable =>
                {
                    RouteEnd::Unavailable(failure.to_string())
                }
                RouteOutcome::Failed { failure, .. } => RouteEnd::Failed(failure.to_string()),
                _ => RouteEnd::Done,
            }
        })
    }

    fn handles_failed_transfer(&self, context: &str) -> bool {
        self.runtime.handles_failed_transfer(context)
    }
}

fn dial_status(status: pbx::DialStatus) -> DialStatus {
    match status {
        pbx::DialStatus::Answered => DialStatus::Answered,
        pbx::DialStatus::Busy => DialStatus::Busy,
        pbx::DialStatus::NoAnswer => DialStatus::NoAnswer,
        pbx::DialStatus::Unavailable => DialStatus::Unavailable,
        pbx::DialStatus::Cancelled => DialStatus::Cancelled,
        _ => DialStatus::Failed,
    }
}

fn dial_result(outcome: pbx::DialOutcome) -> DialResult {
    DialResult {
        status: dial_status(outcome.status),
        code: outcome.code,
        answered_by: outcome.answered_by,
    }
}

fn uri_parts(p: Party) -> UriParts {
    UriParts {
        user: p.user,
        host: p.host,
        display: p.display,
        uri: p.uri,
    }
}

fn call_info(d: CallDetails) -> CallInfo {
    CallInfo {
        id: d.id,
        from: uri_parts(d.from),
        to: uri_parts(d.to),
        request_uri: uri_parts(d.request_uri),
        source: Source {
            ip: d.source_ip,
            port: d.source_port,
            transport: d.transport,
        },
        caller: d.caller,
        context: d.context,
        trunk: d.trunk,
        did: d.did,
        headers: d.headers,
        transferred_by: d.transferred_by,
        transfer_failed: d.transfer_failed.map(dial_status),
        identity: d.identity.map(|i| dialplan::CallIdentity {
            verified: i.verified,
            attest: i.attest,
            reason: i.reason,
        }),
    }
}

/// The Lua `call` object's actions on a real call.
struct LuaCall {
    handle: CallHandle,
    files: Arc<MediaFiles>,
    /// The caller's digits, subscribed at the first media action so that
    /// what is typed during a prompt is read by the next `read_digits`
    /// (type-ahead, as IVR callers expect).
    digits: tokio::sync::Mutex<Option<media::Digits>>,
}

impl LuaCall {
    /// Loads the prompt `file` (off the runtime's threads).
    async fn prompt(&self, file: &str) -> Result<media::Prompt, ActionError> {
        let path = self.files.path(&self.files.sounds, file);
        tokio::task::spawn_blocking(move || media::Prompt::load(&path))
            .await
            .map_err(|e| failed("play", e))?
            .map_err(|e| failed("play", e))
    }

    /// Subscribes to the caller's digits once (this answers the call).
    async fn subscribe(&self, name: &'static str) -> Result<(), ActionError> {
        let mut slot = self.digits.lock().await;
        if slot.is_none() {
            *slot = Some(self.handle.digits().await.map_err(|e| action(e, name))?);
        }
        Ok(())
    }
}

fn failed(name: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> ActionError {
    ActionError::Failed {
        action: name,
        source: Box::new(e),
    }
}

/// Drops the digits already waiting, without waiting for more.
async fn drain(digits: &mut media::Digits) {
    loop {
        tokio::select! {
            biased;
            Some(_) = digits.next() => {}
            () = std::future::ready(()) => return,
        }
    }
}

/// Waits for `terminator` among the digits (forever without one).
async fn terminator(digits: Option<&mut media::Digits>, terminator: Option<char>) {
    if let (Some(digits), Some(t)) = (digits, terminator) {
        while let Some(d) = digits.next().await {
            if d.as_char() == t {
                return;
            }
        }
    }
    std::future::pending().await
}

fn action(e: pbx::ActionError, name: &'static str) -> ActionError {
    match e {
        pbx::ActionError::Ended => ActionError::Ended,
        other => ActionError::Failed {
            action: name,
            source: Box::new(other),
        },
    }
}

impl CallApi for LuaCall {
    fn step(&self, location: Option<String>, text: String) {
        self.handle.step(location, text);
    }

    async fn ring(&self) -> Result<(), ActionError> {
        self.handle.ring().await.map_err(|e| action(e, "ring"))
    }

    async fn answer(&self) -> Result<(), ActionError> {
        self.handle.answer().await.map_err(|e| action(e, "answer"))
    }

    async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.handle
            .reject(code, reason)
            .await
            .map_err(|e| action(e, "reject"))
    }

    async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        self.handle
            .redirect(uri)
            .await
            .map_err(|e| action(e, "redirect"))
    }

    fn is_ended(&self) -> bool {
        self.handle.is_ended()
    }

    async fn hangup(&self) -> Result<(), ActionError> {
        self.handle.hangup().await.map_err(|e| action(e, "hangup"))
    }

    async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        self.handle
            .sleep(duration)
            .await
            .map_err(|e| action(e, "sleep"))
    }

    async fn dial(
        &self,
        targets: Vec<String>,
        opts: DialOptions,
    ) -> Result<DialResult, ActionError> {
        let confirm = match opts.confirm {
            Some(c) => Some(pbx::DialConfirm {
                prompt: Arc::new(self.prompt(&c.prompt).await?),
                key: c.key,
                timeout: c.timeout,
            }),
            None => None,
        };
        let request = DialRequest {
            targets,
            timeout: opts.timeout,
            caller_id: opts.caller_id,
            headers: opts.headers,
            moh: opts.moh,
            attest: opts.attest,
            confirm,
        };
        let outcome = self
            .handle
            .dial(request)
            .await
            .map_err(|e| action(e, "dial"))?;
        Ok(dial_result(outcome))
    }

    async fn play(&self, file: String) -> Result<(), ActionError> {
        let prompt = self.prompt(&file).await?;
        self.subscribe("play").await?;
        self.handle
            .play(Arc::new(prompt))
            .await
            .map_err(|e| action(e, "play"))
    }

    async fn play_interruptible(&self, file: String) -> Result<Option<char>, ActionError> {
        let prompt = self.prompt(&file).await?;
        self.subscribe("play").await?;
        let mut slot = self.digits.lock().await;
        let key = async {
            // A key typed before the prompt began stops it too (type-ahead).
            if let Some(digits) = slot.as_mut()
                && let Some(d) = digits.next().await
            {
                return d.as_char();
            }
            std::future::pending().await
        };
        tokio::select! {
            played = self.handle.play(Arc::new(prompt)) => {
                played.map(|()| None).map_err(|e| action(e, "play"))
            }
            key = key => {
                self.handle
                    .stop_playing()
                    .await
                    .map_err(|e| action(e, "play"))?;
                Ok(Some(key))
            }
        }
    }

    async fn record(&self, file: String, opts: RecordOptions) -> Result<RecordResult, ActionError> {
        let path = self.files.path(&self.files.recordings, &file);
        self.subscribe("record").await?;
        let silent = self
            .handle
            .record(opts.max, opts.silence)
            .await
            .map_err(|e| action(e, "record"))?;
        let ended = self.handle.ended_token();
        let reason = {
            let mut digits = self.digits.lock().await;
            // Keys typed before the recording began cannot mean "stop
            // it" (a '#' left from a menu would end it at once).
            if let Some(d) = digits.as_mut() {
                drain(d).await;
            }
            tokio::select! {
                // The recorder stops at `max` of media time; this is the
                // wall clock's bound on the same.
                () = tokio::time::sleep(opts.max + Duration::from_millis(100)) => RecordEnd::Max,
                () = ended.cancelled() => RecordEnd::Hangup,
                () = terminator(digits.as_mut(), opts.terminator) => RecordEnd::Terminator,
                () = silent.notified(), if opts.silence.is_some() => RecordEnd::Silence,
            }
        };
        let recording = self
            .handle
            .stop_recording()
            .await
            .map_err(|e| action(e, "record"))?;
        let duration = recording.duration();
        tokio::task::spawn_blocking(move || -> Result<(), media::Error> {
            if let Some(dir) = path.parent() {
                // Owner only: recordings are people's voices.
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder
                    .create(dir)
                    .map_err(|source| media::Error::WriteWav {
                        path: dir.to_owned(),
                        source,
                    })?;
            }
            recording.write_wav(&path)
        })
        .await
        .map_err(|e| failed("record", e))?
        .map_err(|e| failed("record", e))?;
        Ok(RecordResult { duration, reason })
    }

    async fn read_digits(&self, opts: DigitOptions) -> Result<String, ActionError> {
        self.subscribe("read_digits").await?;
        let ended = self.handle.ended_token();
        let mut slot = self.digits.lock().await;
        let Some(digits) = slot.as_mut() else {
            return Ok(String::new());
        };
        let mut out = String::new();
        while out.len() < opts.max {
            let digit = tokio::select! {
                d = digits.next() => d,
                () = tokio::time::sleep(opts.timeout) => None,
                () = ended.cancelled() => return Err(ActionError::Ended),
            };
            let Some(digit) = digit else { break };
            let c = digit.as_char();
            if Some(c) == opts.terminator {
                break;
            }
            out.push(c);
        }
        Ok(out)
    }

    async fn hold(&self, class: Option<String>) -> Result<(), ActionError> {
        self.handle.hold(class).await.map_err(|e| action(e, "hold"))
    }

    async fn unhold(&self) -> Result<(), ActionError> {
        self.handle.unhold().await.map_err(|e| action(e, "unhold"))
    }

    async fn park(
        &self,
        slot: Option<u16>,
        timeout: Duration,
        announce: bool,
        ringback: Option<String>,
    ) -> Result<u16, ActionError> {
        let slot = if announce {
            // The slot is held first, so the number heard is the one used.
            let n = self
                .handle
                .reserve_park(slot)
                .await
                .map_err(|e| action(e, "park"))?;
            let digits = n.to_string();
            let files = std::iter::once("park-parked-in.wav".to_owned())
                .chain(digits.chars().map(|d| format!("digit-{d}.wav")));
            for file in files {
                let prompt = self.prompt(&file).await?;
                self.handle
                    .play(Arc::new(prompt))
                    .await
                    .map_err(|e| action(e, "park"))?;
            }
            Some(n)
        } else {
            slot
        };
        self.handle
            .park(slot, timeout, ringback)
            .await
            .map_err(|e| action(e, "park"))
    }

    async fn pickup(&self, target: Option<String>) -> Result<DialResult, ActionError> {
        let outcome = self
            .handle
            .pickup(target)
            .await
            .map_err(|e| action(e, "pickup"))?;
        Ok(dial_result(outcome))
    }

    async fn unpark(&self, slot: u16) -> Result<DialResult, ActionError> {
        let outcome = self
            .handle
            .unpark(slot)
            .await
            .map_err(|e| action(e, "unpark"))?;
        Ok(dial_result(outcome))
    }

    async fn echo(&self) -> Result<(), ActionError> {
        self.handle.echo().await.map_err(|e| action(e, "echo"))?;
        // Like Asterisk's Echo(): until the caller hangs up.
        self.handle.ended_token().cancelled().await;
        Ok(())
    }
}
