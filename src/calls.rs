//! Calls in the binary: the Lua dialplan as the `pbx` router (every new
//! call runs, as a coroutine in the current generation's Lua states, its
//! context's `route(call)`), and the call actions Lua sees, carried out
//! through the call's [`pbx::CallHandle`] (DESIGN.md "Calls", "Dialplan").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dialplan::{
    ActionError, CallApi, CallInfo, DialOptions, DialResult, DialStatus, RouteOutcome, Runtime,
    Source, UriParts,
};
use pbx::{CallDetails, CallHandle, DialRequest, Party, RouteEnd, Router};

/// Routes every call through the Lua runtime.
pub struct LuaRouter {
    runtime: Arc<Runtime>,
}

impl LuaRouter {
    /// A router on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
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
        Box::pin(async move {
            match state.run_route(Arc::new(LuaCall(call)), info).await {
                RouteOutcome::Failed { failure, .. } => RouteEnd::Failed(failure.to_string()),
                _ => RouteEnd::Done,
            }
        })
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
        headers: d.headers,
    }
}

/// The Lua `call` object's actions on a real call.
struct LuaCall(CallHandle);

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
    async fn ring(&self) -> Result<(), ActionError> {
        self.0.ring().await.map_err(|e| action(e, "ring"))
    }

    async fn answer(&self) -> Result<(), ActionError> {
        self.0.answer().await.map_err(|e| action(e, "answer"))
    }

    async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.0
            .reject(code, reason)
            .await
            .map_err(|e| action(e, "reject"))
    }

    async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        self.0
            .redirect(uri)
            .await
            .map_err(|e| action(e, "redirect"))
    }

    async fn hangup(&self) -> Result<(), ActionError> {
        self.0.hangup().await.map_err(|e| action(e, "hangup"))
    }

    async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        self.0.sleep(duration).await.map_err(|e| action(e, "sleep"))
    }

    async fn dial(
        &self,
        targets: Vec<String>,
        opts: DialOptions,
    ) -> Result<DialResult, ActionError> {
        let request = DialRequest {
            targets,
            timeout: opts.timeout,
            caller_id: opts.caller_id,
            headers: opts.headers,
        };
        let outcome = self.0.dial(request).await.map_err(|e| action(e, "dial"))?;
        let status = match outcome.status {
            pbx::DialStatus::Answered => DialStatus::Answered,
            pbx::DialStatus::Busy => DialStatus::Busy,
            pbx::DialStatus::NoAnswer => DialStatus::NoAnswer,
            pbx::DialStatus::Unavailable => DialStatus::Unavailable,
            pbx::DialStatus::Cancelled => DialStatus::Cancelled,
            _ => DialStatus::Failed,
        };
        Ok(DialResult {
            status,
            code: outcome.code,
        })
    }
}
