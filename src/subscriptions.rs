//! Wiring of the subscription service (`presence` crate) into the binary:
//! the office's extensions as its [`presence::Directory`], the dialplan's
//! `on_subscribe` hook as its [`presence::Authorizer`] (voicemail gives it
//! the mailbox counts, in `server.rs`). Behaviour lives in the crate.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The configured extensions (swapped on reload) as the subscription
/// service sees them.
pub struct Office(pub Arc<ArcSwap<HashMap<String, chan_sip::Extension>>>);

impl presence::Directory for Office {
    fn contains(&self, ext: &str) -> bool {
        self.0.load().contains_key(ext)
    }

    fn name(&self, ext: &str) -> Option<String> {
        self.0.load().get(ext).and_then(|e| e.name.clone())
    }
}

/// Who may watch whom: the subscriber's context's Lua hook
/// `on_subscribe(ext, event, target)` when the context defines one (a
/// truthy result allows, anything else refuses, and so does a failing
/// hook); without the hook, any extension may watch any other.
pub struct LuaAuthorizer {
    /// The dialplan, its current generation at the time of the SUBSCRIBE.
    pub runtime: Arc<dialplan::Runtime>,
    /// The extensions, for the subscriber's context.
    pub extensions: Arc<ArcSwap<HashMap<String, chan_sip::Extension>>>,
}

impl presence::Authorizer for LuaAuthorizer {
    fn allowed(&self, ext: &str, event: &str, target: &str) -> sip_net::BoxFuture<bool> {
        let context = self.extensions.load().get(ext).map(|e| e.context.clone());
        let state = self.runtime.call_state();
        let args = vec![ext.to_owned(), event.to_owned(), target.to_owned()];
        Box::pin(async move {
            let (Some(context), Ok(state)) = (context, state) else {
                return false;
            };
            match state.run_hook(context, "on_subscribe", args).await {
                Ok(Some(allowed)) => allowed,
                Ok(None) => true,
                Err(_) => false,
            }
        })
    }
}
