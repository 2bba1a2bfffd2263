//! The Lua dialplan as `pbx`'s [`Router`]: every new call runs, as a
//! coroutine in the current generation's Lua states, its context's
//! `route(call)`, whose actions go to the call's [`pbx::CallHandle`]
//! through [`PbxCall`] (DESIGN.md "Calls", "Dialplan (Lua)").

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use pbx::{CallDetails, CallHandle, RouteEnd, Router};

use crate::mailbox::VOICEMAIL_PREFIX;
use crate::pbx_call::PbxCall;
use crate::route::{FailureKind, RouteOutcome};
use crate::runtime::Runtime;

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
    /// The prompt `file` (checked by the dialplan: relative, no `..`).
    pub fn prompt(&self, file: &str) -> PathBuf {
        self.path(&self.sounds, file)
    }

    /// Where the recording `file` (checked likewise) is written.
    pub fn recording(&self, file: &str) -> PathBuf {
        self.path(&self.recordings, file)
    }

    /// `file` under `base`, or under the mailboxes for a `voicemail/` name.
    fn path(&self, base: &Path, file: &str) -> PathBuf {
        match file.strip_prefix(VOICEMAIL_PREFIX) {
            Some(rest) => self.voicemail.join(rest),
            None => base.join(file),
        }
    }
}

/// Routes every call through the Lua runtime (the binary hands it to the
/// SIP channel driver as the calls' [`Router`]).
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
        let call = PbxCall::new(call, Arc::clone(&self.files));
        // Started now, so the future the call's task keeps only waits.
        let route = state.start_route(Arc::new(call), details);
        Box::pin(async move {
            match route.await {
                RouteOutcome::Failed { failure, .. }
                    if failure.kind == FailureKind::Unavailable =>
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
