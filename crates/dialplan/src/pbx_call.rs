//! The Lua `call` object's actions on a real call: [`PbxCall`] carries each
//! [`CallApi`] action out through the call's [`pbx::CallHandle`], and adds
//! what a route needs on top of the call model's commands: prompts loaded
//! from the sounds dir, digit reading with type-ahead and terminators,
//! recording to a WAV file until a key, silence or hangup, and prompts the
//! caller can interrupt (DESIGN.md "Dialplan (Lua)", the media actions).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::either::Either;

use pbx::{ActionError, CallHandle, DialOutcome, DialRequest};

use crate::call::{CallApi, DigitOptions, RecordEnd, RecordOptions, RecordResult, ScriptDial};
use crate::router::MediaFiles;

/// A real call as the Lua `call` object sees it.
pub struct PbxCall {
    handle: CallHandle,
    files: Arc<MediaFiles>,
    /// The caller's digits, subscribed at the first media action so that
    /// what is typed during a prompt is read by the next `read_digits`
    /// (type-ahead, as IVR callers expect).
    digits: tokio::sync::Mutex<Option<media::Digits>>,
}

impl PbxCall {
    /// The actions of the call behind `handle`, with prompts and
    /// recordings in `files`.
    pub fn new(handle: CallHandle, files: Arc<MediaFiles>) -> Self {
        Self {
            handle,
            files,
            digits: tokio::sync::Mutex::new(None),
        }
    }

    /// Loads the prompt `file` (off the runtime's threads).
    async fn prompt(&self, file: &str) -> Result<Arc<media::Prompt>, ActionError> {
        let path = self.files.prompt(file);
        let prompt = tokio::task::spawn_blocking(move || media::Prompt::load(&path))
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))??;
        Ok(Arc::new(prompt))
    }

    /// Subscribes to the caller's digits once (this answers the call).
    async fn subscribe(&self) -> Result<(), ActionError> {
        let mut slot = self.digits.lock().await;
        if slot.is_none() {
            *slot = Some(self.handle.digits().await?);
        }
        Ok(())
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

/// Writes `recording` to `path`, making its directory (owner only:
/// recordings are people's voices).
fn write_recording(
    recording: &media::Recording,
    path: &std::path::Path,
) -> Result<(), media::Error> {
    if let Some(dir) = path.parent() {
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
    recording.write_wav(path)
}

impl CallApi for PbxCall {
    fn step(&self, location: Option<String>, text: String) {
        self.handle.step(location, text);
    }

    fn is_traced(&self) -> bool {
        self.handle.is_traced()
    }

    async fn ring(&self) -> Result<(), ActionError> {
        self.handle.ring().await
    }

    async fn answer(&self) -> Result<(), ActionError> {
        self.handle.answer().await
    }

    async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.handle.reject(code, reason).await
    }

    async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        self.handle.redirect(uri).await
    }

    fn is_ended(&self) -> bool {
        self.handle.is_ended()
    }

    async fn hangup(&self) -> Result<(), ActionError> {
        self.handle.hangup().await
    }

    async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        self.handle.sleep(duration).await
    }

    /// Not an `async fn`: without a confirmation prompt to load, the dial
    /// is sent at once and the future (which lives as long as the call)
    /// only waits for its outcome; an `async fn` would keep the request.
    fn dial(
        &self,
        mut request: ScriptDial,
    ) -> impl Future<Output = Result<DialOutcome, ActionError>> + Send {
        let request_with = |request: ScriptDial, confirm| DialRequest {
            targets: request.targets,
            timeout: request.timeout,
            caller_id: request.caller_id,
            headers: request.headers,
            moh: request.moh,
            attest: request.attest,
            confirm,
        };
        match request.confirm.take() {
            None => Either::Left(self.handle.dial(request_with(request, None))),
            Some(c) => Either::Right(Box::pin(async move {
                let confirm = pbx::DialConfirm {
                    prompt: self.prompt(&c.prompt).await?,
                    key: c.key,
                    timeout: c.timeout,
                };
                self.handle.dial(request_with(request, Some(confirm))).await
            })),
        }
    }

    async fn play(&self, file: String) -> Result<(), ActionError> {
        let prompt = self.prompt(&file).await?;
        self.subscribe().await?;
        self.handle.play(prompt).await
    }

    async fn play_interruptible(&self, file: String) -> Result<Option<char>, ActionError> {
        let prompt = self.prompt(&file).await?;
        self.subscribe().await?;
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
            played = self.handle.play(prompt) => played.map(|()| None),
            key = key => {
                self.handle.stop_playing().await?;
                Ok(Some(key))
            }
        }
    }

    async fn record(&self, file: String, opts: RecordOptions) -> Result<RecordResult, ActionError> {
        let path = self.files.recording(&file);
        self.subscribe().await?;
        let silent = self.handle.record(opts.max, opts.silence).await?;
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
        let recording = self.handle.stop_recording().await?;
        let duration = recording.duration();
        tokio::task::spawn_blocking(move || write_recording(&recording, &path))
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))??;
        Ok(RecordResult { duration, reason })
    }

    async fn read_digits(&self, opts: DigitOptions) -> Result<String, ActionError> {
        self.subscribe().await?;
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
        self.handle.hold(class).await
    }

    async fn unhold(&self) -> Result<(), ActionError> {
        self.handle.unhold().await
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
            let n = self.handle.reserve_park(slot).await?;
            let digits = n.to_string();
            let files = std::iter::once("park-parked-in.wav".to_owned())
                .chain(digits.chars().map(|d| format!("digit-{d}.wav")));
            for file in files {
                let prompt = self.prompt(&file).await?;
                self.handle.play(prompt).await?;
            }
            Some(n)
        } else {
            slot
        };
        self.handle.park(slot, timeout, ringback).await
    }

    async fn pickup(&self, target: Option<String>) -> Result<DialOutcome, ActionError> {
        self.handle.pickup(target).await
    }

    async fn unpark(&self, slot: u16) -> Result<DialOutcome, ActionError> {
        self.handle.unpark(slot).await
    }

    async fn echo(&self) -> Result<(), ActionError> {
        self.handle.echo().await?;
        // Like Asterisk's Echo(): until the caller hangs up.
        self.handle.ended_token().cancelled().await;
        Ok(())
    }
}
