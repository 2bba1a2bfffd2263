//! Who a new INVITE is from (DESIGN.md "Trunks", RFC 3261 §22): a trunk
//! (its source is in the trunk's `match`, or is the registrar the trunk
//! registers with; no challenge), an extension (digest, through the
//! registrar), or nobody: 407, or 403 at once when `security.anonymous =
//! "reject"` and the From user is no extension. Such a call never reaches
//! the dialplan.

use std::sync::Arc;

use sip_net::Incoming;
use sip_proto::{HeaderName, Response};

use crate::Inner;
use crate::trunk::{ChannelSeized, Trunk};

/// Who placed an admitted call.
pub(crate) enum Caller {
    /// An authenticated extension.
    Extension(String),
    /// A carrier; the call holds one of the trunk's channels.
    Trunk(Arc<Trunk>, ChannelSeized),
}

impl Caller {
    /// The extension id, for an extension's call.
    pub fn extension(&self) -> Option<&str> {
        match self {
            Caller::Extension(id) => Some(id),
            Caller::Trunk(..) => None,
        }
    }

    /// The trunk, for a carrier's call.
    pub fn trunk(&self) -> Option<&Trunk> {
        match self {
            Caller::Extension(_) => None,
            Caller::Trunk(t, _) => Some(t),
        }
    }
}

/// A refused INVITE: the answer and why (for the trace).
pub(crate) struct Refused {
    pub response: Response,
    pub reason: String,
}

/// Admits `incoming` or says why not.
pub(crate) fn admit(inner: &Inner, incoming: &Incoming) -> Result<Caller, Refused> {
    if let Some(trunk) = inner.trunks.identify(incoming.source.ip()) {
        return match inner.trunks.seize(&trunk) {
            Some(seized) => Ok(Caller::Trunk(trunk, seized)),
            None => {
                let mut response = incoming.response_with_warning(
                    503,
                    &inner.config.domain,
                    "trunk at max_channels",
                );
                response.headers.push(HeaderName::RetryAfter, "5");
                Err(Refused {
                    response,
                    reason: format!(
                        "trunk {} already carries max_channels ({}) calls",
                        trunk.name,
                        trunk.max_channels.unwrap_or(0)
                    ),
                })
            }
        };
    }
    if inner.config.reject_anonymous && !has_credentials(incoming) {
        let from_user = incoming
            .request
            .headers
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().and_then(|s| s.user.clone()));
        let known = from_user
            .as_deref()
            .is_some_and(|u| inner.extensions.load().contains_key(u));
        if !known {
            return Err(Refused {
                response: incoming.response(403),
                reason: "neither an extension nor a trunk (security.anonymous = \"reject\")"
                    .to_owned(),
            });
        }
    }
    inner
        .registrar
        .authenticate_call_explained(incoming)
        .map(Caller::Extension)
        .map_err(|denied| Refused {
            response: denied.response,
            reason: denied.reason,
        })
}

fn has_credentials(incoming: &Incoming) -> bool {
    let h = &incoming.request.headers;
    h.get(&HeaderName::ProxyAuthorization).is_some() || h.get(&HeaderName::Authorization).is_some()
}
