//! The caller's side of a call (RFC 3261 §13.3, the UAS core for an
//! INVITE): a new INVITE admitted and its call task started, our 2xx sent
//! again until the ACK (§13.3.1.4), the ACK with the answer to an offer in
//! our 2xx (RFC 3264 §5), and the caller's CANCEL (§9.2).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pbx::{CallDetails, CallHandle, Cdr, DialStatus, LegState, Party, RouteEnd};
use sip_net::{Incoming, InviteTx};
use sip_proto::{HeaderName, Request, Uri};

use super::{Call, Inbound};
use crate::admit::Caller;
use crate::anchor::CallMedia;
use crate::channel::SipChannel;
use crate::dialog::Dialog;
use crate::leg::{SipLeg, our_contact};
use crate::{Inner, Side};

/// A trunk call's Identity check before its route (RFC 8224): the
/// verifier, the Identity header, and the calling and called numbers.
type StirCheck = (
    Arc<crate::trunk::StirVerify>,
    Option<String>,
    String,
    String,
);

/// Accepts a new INVITE (no To tag): loop check, authentication, capacity;
/// then the call's task takes it.
pub(crate) fn start(inner: Arc<Inner>, incoming: Incoming, mut tx: InviteTx) {
    let request = &incoming.request;
    let Some(call_id) = request.call_id().map(str::to_owned) else {
        let r = tx.response(400);
        tx.respond(r);
        return;
    };
    // An INVITE with the Call-ID of a dialog we own came back to us: one of
    // our own outbound INVITEs looped (RFC 3261 §8.2.2.2, §16.3 step 4).
    if inner.dialogs.contains(&call_id) {
        let r =
            tx.response_with_warning(482, &inner.config.domain, "request looped back to this PBX");
        tx.respond(r);
        return;
    }
    let caller = match crate::admit::admit(&inner, &incoming) {
        Ok(caller) => caller,
        Err(denied) => {
            // Traced under the Call-ID, so "why doesn't it ring?" has an
            // answer: the INVITE, why, and the answer (the tap files it).
            if let Some(t) = inner.traces.attempt(&call_id) {
                crate::trace::record_invite(&t, &incoming);
                t.step(
                    None,
                    format!(
                        "not admitted ({}): {}",
                        denied.response.status, denied.reason
                    ),
                );
            }
            // Stateless, as Kamailio's sl does: no retransmissions of the
            // challenge towards a source that may be spoofed.
            tx.respond_stateless(denied.response);
            return;
        }
    };
    // Traced from here: the INVITE (the tap saw it before the call was
    // known, unless an earlier refused round started the trace), then
    // everything the endpoint sends and receives for it.
    let trace = inner.traces.start(&call_id);
    if let Some(t) = &trace {
        crate::trace::record_invite(t, &incoming);
    }
    // Authenticated: now the caller hears that we are working on it (not
    // before, so a spoofed INVITE gets the 407 alone).
    tx.trying();
    if let Some(ct) = request.headers.content_type()
        && !request.body.is_empty()
        && !ct
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
    {
        let mut r = tx.response(415);
        r.headers.push(HeaderName::Accept, "application/sdp");
        tx.respond(r);
        return;
    }
    let offer = match crate::anchor::check_offer(&inner.media, &request.body) {
        Ok(offer) => offer,
        Err(failure) => {
            let r =
                tx.response_with_warning(failure.status(), &inner.config.domain, failure.text());
            tx.respond(r);
            return;
        }
    };
    let media = CallMedia::new(inner.media.clone());
    if inner.draining.load(Ordering::Relaxed) {
        let mut r = tx.response_with_warning(503, &inner.config.domain, "shutting down");
        r.headers.push(HeaderName::RetryAfter, "30");
        tx.respond(r);
        return;
    }
    if inner.active.fetch_add(1, Ordering::Relaxed) >= inner.config.max_calls {
        inner.active.fetch_sub(1, Ordering::Relaxed);
        let mut r = tx.response_with_warning(503, &inner.config.domain, "too many calls");
        r.headers.push(HeaderName::RetryAfter, "5");
        tx.respond(r);
        return;
    }
    let (events_tx, events) = crate::queue::events(64);
    if !inner.dialogs.insert(
        call_id.clone(),
        events_tx.clone(),
        Side::Inbound,
        incoming.source.ip(),
        caller.extension().map(str::to_owned),
    ) {
        inner.active.fetch_sub(1, Ordering::Relaxed);
        let r = tx.response(482);
        tx.respond(r);
        return;
    }
    let Some(dialog) = Dialog::uas(request, tx.to_tag(), incoming.transport, incoming.source)
    else {
        inner.dialogs.remove(&call_id);
        inner.active.fetch_sub(1, Ordering::Relaxed);
        let r = tx.response(400);
        tx.respond(r);
        return;
    };
    metrics::gauge!("calls_active").set(inner.active.load(Ordering::Relaxed) as f64);
    let context = match &caller {
        Caller::Trunk(trunk, _) => trunk.context.clone(),
        Caller::Extension(id) => inner
            .extensions
            .load()
            .get(id)
            .map_or_else(|| "default".to_owned(), |e| e.context.clone()),
    };
    let details = details(&incoming, &call_id, &caller, &context);
    // One span per call (issue 12): every line its task and its route log
    // carries the Call-ID. At info, as the lines it is for: below that
    // level it is disabled and costs nothing.
    let span = tracing::info_span!(
        "call",
        call_id = %call_id,
        from = %details.from.user,
        to = %details.to.user
    );
    // A trunk's call with trust anchors configured: its Identity (RFC
    // 8224) is checked before the route runs.
    let stir = caller.trunk().and(inner.trunks.verify()).map(|verify| {
        let header = request
            .headers
            .get(&HeaderName::parse("Identity"))
            .map(str::to_owned);
        let orig = stir_orig(request, &details.from.user);
        (verify, header, orig, details.to.user.clone())
    });
    let verstat = Arc::new(std::sync::OnceLock::new());
    let (handle, commands) = CallHandle::new();
    let handle = handle.with_trace(trace.clone());
    let contact = our_contact(&inner, incoming.transport, incoming.source);
    let now = pbx::unix_ms();
    let (cdr_caller, trunk_channel) = match caller {
        Caller::Extension(id) => (Some(id), None),
        Caller::Trunk(_, seized) => (None, Some(seized)),
    };
    let record = pbx::CallRecord::open(
        inner.registry.clone(),
        inner.cdrs.clone(),
        trace,
        Cdr {
            caller: cdr_caller,
            ..Cdr::begin(
                call_id.clone(),
                details.from.uri.clone(),
                details.to.uri.clone(),
                context.clone(),
                now,
            )
        },
    );
    // An INVITE with Replaces (RFC 3891) takes another call's party's
    // place instead of being routed: a BLF key picking up a ringing call,
    // a phone completing an attended transfer.
    let replaces = incoming.request.headers.replaces().ok().flatten();
    let router = inner.router.clone();
    // In the call's span: the router starts the route at once (on the Lua
    // pool), and the route takes the span along.
    let route_verstat = verstat.clone();
    let route = span.in_scope(|| {
        pbx::RouteTask::spawn(handle, commands, move |handle| {
            route(handle, details, replaces, stir, router, route_verstat)
        })
    });
    let leg = SipLeg::new(
        inner.clone(),
        dialog,
        "inbound",
        LegState::Calling,
        contact.clone(),
        crate::leg::allows(&incoming.request.headers, "UPDATE"),
    );
    // The caller is a channel from its INVITE on, owned by the call: its
    // dialog's requests come to the call's queue, served through it.
    let mut party = SipChannel::owned(inner.clone(), leg, None, events_tx.clone(), Side::Inbound);
    party.offered(tx, offer);
    let a = Inbound {
        max_forwards: incoming.request.max_forwards().unwrap_or(70),
        party,
    };
    let mut call = Call::new(inner.clone(), record, route, (events_tx, events), a, media);
    call._trunk_channel = trunk_channel;
    call.verstat = verstat;
    call.spawn(span);
}

/// The route of a new call: the dialplan's, after a trunk call's Identity
/// is checked (`stir`); or, for an INVITE with Replaces, taking the
/// replaced dialog's party's place.
fn route(
    handle: CallHandle,
    mut details: CallDetails,
    replaces: Option<sip_proto::header::Replaces>,
    stir: Option<StirCheck>,
    router: Arc<dyn pbx::Router>,
    verstat: Arc<std::sync::OnceLock<&'static str>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = RouteEnd> + Send>> {
    match (replaces, stir) {
        (Some(replaces), _) => {
            let dialog = pbx::DialogIds {
                call_id: replaces.call_id.clone(),
                local_tag: replaces.to_tag().unwrap_or_default().to_owned(),
                remote_tag: replaces.from_tag().map(str::to_owned),
            };
            let early_only = replaces.early_only();
            Box::pin(async move {
                match handle.replace(dialog, early_only).await {
                    Ok(o) if o.status == DialStatus::Answered => {}
                    _ => {
                        let _ = handle.reject(481, None).await;
                    }
                }
                RouteEnd::Done
            })
        }
        (None, Some((verify, header, from, to))) => Box::pin(async move {
            let (result, value) = verify.check(header.as_deref(), &from, &to).await;
            tracing::info!(verified = result.verified, attest = ?result.attest, reason = ?result.reason, "STIR/SHAKEN: {value}");
            let _ = verstat.set(value);
            details.identity = Some(result);
            router.route(handle, details).await
        }),
        (None, None) => router.route(handle, details),
    }
}

/// The calling number a PASSporT's `orig` must match (RFC 8224 §6.2
/// step 2, as SHAKEN verifiers apply it): the From user when it is a
/// telephone number, else P-Asserted-Identity's (an anonymous From whose
/// number the carrier asserts, RFC 3325).
fn stir_orig(request: &Request, from_user: &str) -> String {
    if identity::canonical_tn(from_user).is_ok() {
        return from_user.to_owned();
    }
    request
        .headers
        .get(&HeaderName::parse("P-Asserted-Identity"))
        .and_then(|v| sip_proto::header::NameAddr::parse(v).ok())
        .and_then(|na| match na.uri {
            Uri::Sip(s) => s.user,
            Uri::Tel(t) => Some(t.number),
            Uri::Other { .. } => None,
        })
        .unwrap_or_else(|| from_user.to_owned())
}

fn party(value: Option<sip_proto::header::NameAddr>) -> Party {
    let Some(na) = value else {
        return Party::default();
    };
    let (user, host) = match &na.uri {
        Uri::Sip(s) => (s.user.clone().unwrap_or_default(), s.host.to_string()),
        Uri::Tel(t) => (t.number.clone(), String::new()),
        Uri::Other { .. } => (String::new(), String::new()),
    };
    Party {
        user,
        host,
        display: na.display.clone(),
        uri: na.uri.to_string(),
    }
}

fn details(incoming: &Incoming, call_id: &str, caller: &Caller, context: &str) -> CallDetails {
    let req = &incoming.request;
    let to = party(req.headers.to().ok());
    let trunk = caller.trunk();
    CallDetails {
        id: call_id.to_owned(),
        from: party(req.headers.from().ok()),
        did: trunk.and_then(|_| {
            let ruri_user = req.uri.as_sip().and_then(|s| s.user.as_deref());
            crate::trunk::to_e164(ruri_user.unwrap_or(&to.user))
                .or_else(|| crate::trunk::to_e164(&to.user))
        }),
        trunk: trunk.map(|t| t.name.clone()),
        to,
        request_uri: party(Some(sip_proto::header::NameAddr::new(req.uri.clone()))),
        source_ip: incoming.source.ip().to_string(),
        source_port: incoming.source.port(),
        transport: incoming.transport.to_string(),
        caller: caller.extension().map(str::to_owned),
        context: context.to_owned(),
        // Credentials are for us, not for scripts (or their logs).
        headers: req
            .headers
            .iter()
            .filter(|h| {
                !matches!(
                    h.name,
                    HeaderName::Authorization | HeaderName::ProxyAuthorization
                )
            })
            .map(|h| (h.name.as_str(), h.value.to_string()))
            .collect(),
        transferred_by: None,
        transfer_failed: None,
        identity: None,
    }
}
