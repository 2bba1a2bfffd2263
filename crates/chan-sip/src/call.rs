//! One call's task (DESIGN.md "Calls"): it owns the inbound leg (the
//! caller's INVITE server transaction and UAS dialog), the outbound branches
//! of a dial (one client INVITE each; first 2xx wins, the rest get CANCEL,
//! RFC 3261 §16.7-style forking done as a B2BUA), and the bridge between the
//! caller and the winner (BYE either way ends both; re-INVITE, UPDATE and
//! INFO are passed to the other leg, in `indialog.rs`; 491 on glare). The
//! route (Lua) drives it through a [`pbx::CallHandle`]; its media is
//! `anchor.rs`'s.
//!
//! The call's state is one enum, [`Phase`]; what the admin API shows
//! (`pbx::CallState`) is derived from it. Its moves, each made by one
//! method of [`Call`]:
//!
//! | from | to | on | method |
//! |---|---|---|---|
//! | (INVITE) | Routing | a new call | `start` |
//! | (parked call timed out) | Answered | the ring-back call | `ring_back` |
//! | Routing | Answered | the route answers | `answer` |
//! | Routing, Answered | Dialing | `dial` with a target started | `enter_dialing` |
//! | Dialing | Routing, Answered | no answer, busy, failed, timeout | `leave_dialing` (`end_dial`) |
//! | Dialing | Bridged | a branch answers (or confirms); a picker's party arrives | `leave_dialing`, then `bridge_with` |
//! | Routing, Answered | Bridged | unpark; a transferee back with its transferor | `bridge_with` |
//! | Bridged | Answered | blind transfer (REFER); attended transfer's move | `take_bridge` |
//! | Bridged | Replacing | an INVITE with Replaces takes the bridged party's place | `take_bridge`, then `await_replacement` |
//! | Replacing | Bridged | the newcomer arrives | `take_replacement`, then `bridge_with` |
//! | any | Ended | BYE, CANCEL, reject, hangup, park, pickup, timeouts, shutdown | `finish` |

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pbx::{
    ActionError, CallDetails, CallHandle, CallSnapshot, CallState, Cdr, Command, DialOutcome,
    DialRequest, DialStatus, Disposition, Leg, LegState, Party, RingingSnapshot, RouteEnd,
};
use sip_net::{Incoming, InviteEvent, InviteTx, Transport};
use sip_proto::dialog::{OkRetransmit, OkTimer};
use sip_proto::{HeaderName, Headers, Method, Request, Response, Uri};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admit::Caller;
use crate::anchor::{CallMedia, Failure, Which};
use confirm::ConfirmMedia;

mod confirm;
mod indialog;
mod moves;
mod transfer;
mod trunkdial;
use crate::dialog::{Dialog, new_tag};
use crate::leg::{SipLeg, our_contact};
use crate::relay::{branch_task, dial_result, send_stateless, set_body, sleep_until};
use crate::target::{self, Destination};
use crate::{Inner, Reply, Side};
pub(crate) use indialog::info_digit;
pub(crate) use moves::ring_back;

/// How long a finished call waits for its route to return before it stops
/// waiting (a route whose actions all fail with "call has ended" returns
/// at once; this bounds a plugin stuck in storage IO).
const ROUTE_LINGER: Duration = Duration::from_secs(10);

/// The music-on-hold class of a call that names none (`sounds/moh/default.wav`).
pub const DEFAULT_MOH: &str = "default";

/// Headers a route may not set on an outbound INVITE: the B2BUA owns them.
const RESERVED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "contact",
    "m",
    "content-length",
    "l",
    "content-type",
    "c",
    "max-forwards",
    "route",
    "record-route",
    "p-asserted-identity",
    "p-preferred-identity",
];

/// Something that happened to a call, delivered to its task.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum CallEvent {
    /// BYE, UPDATE or INFO inside one of the call's dialogs.
    Request {
        /// Whose dialog.
        side: Side,
        /// The request (boxed: events queue per call, and a small event
        /// keeps the queue small).
        request: Box<Request>,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// A re-INVITE inside one of the call's dialogs.
    ReInvite {
        /// Whose dialog.
        side: Side,
        /// The request and where it came from.
        incoming: Box<Incoming>,
        /// Its server transaction.
        tx: Box<InviteTx>,
    },
    /// An ACK for one of our 2xx.
    Ack {
        /// Whose dialog.
        side: Side,
        /// The ACK.
        request: Box<Request>,
    },
    /// The party that answered a dial with `confirm` pressed the key
    /// (`accepted`) or did not; its media comes back to the call.
    Confirmed {
        /// The branch.
        id: u32,
        /// Whether it accepted the call.
        accepted: bool,
        /// Its media side, which the confirmation ran on.
        media: Box<ConfirmMedia>,
    },
    /// A response to (or the end of) an outbound branch's INVITE.
    Branch {
        /// The branch.
        id: u32,
        /// What happened.
        event: InviteEvent,
    },
    /// The admin API hangs the call up (`DELETE /api/v1/calls/{id}`).
    Hangup,
    /// Another call would pick this ringing call up: if it still rings,
    /// its targets stop ringing and it waits for the picker (`true`).
    PickupAsk {
        /// Whether it may.
        reply: oneshot::Sender<bool>,
    },
    /// Another call's attended transfer replaces one of this call's
    /// dialogs (by Call-ID and tags): the other party of this call, with
    /// its extension, or `None`.
    GiveUp {
        /// The dialog: its Call-ID, `to-tag` and `from-tag` (RFC 3891).
        dialog: Box<DialogRef>,
        /// The party.
        reply: oneshot::Sender<Option<(crate::channel::SipChannel, String)>>,
    },
    /// An INVITE with Replaces would take the place of the party in this
    /// answered dialog (Call-ID and tags, RFC 3891): if it is one of this
    /// call's bridged legs, that leg is set aside for the newcomer
    /// (`true`).
    ReplaceAsk {
        /// The dialog: its Call-ID, `to-tag` and `from-tag`.
        dialog: Box<DialogRef>,
        /// Whether it may.
        reply: oneshot::Sender<bool>,
    },
    /// The picker's party (answered), for the call that agreed.
    Adopt {
        /// The picker.
        channel: Box<crate::channel::SipChannel>,
        /// Its extension.
        label: Box<str>,
    },
    /// A re-INVITE passed across the bridge has its final answer
    /// (`None`: none came).
    ReInviteAnswered {
        /// Whose re-INVITE it was.
        from: Side,
        /// Its server transaction, to answer.
        tx: Box<InviteTx>,
        /// The other side's final response.
        response: Option<Box<Response>>,
    },
}

/// A dialog another call asks about, by Call-ID and tags (RFC 3891):
/// boxed in [`CallEvent`], which queues per call.
#[derive(Debug)]
pub(crate) struct DialogRef {
    pub(crate) call_id: String,
    /// Its `to-tag` and `from-tag`.
    pub(crate) tags: (String, String),
}

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
    let mut media = CallMedia::new(inner.media.clone());
    if let Err(failure) = media.set_caller_offer(&request.body) {
        let r = tx.response_with_warning(failure.status(), &inner.config.domain, failure.text());
        tx.respond(r);
        return;
    }
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
    let (events_tx, events) = mpsc::channel(64);
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
    let mut details = details(&incoming, &call_id, &caller, &context);
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
    let call = Call {
        inner: inner.clone(),
        id: call_id.clone(),
        events_tx,
        events,
        commands,
        ended: handle.ended_token(),
        trace,
        a: Inbound {
            cancel: tx.cancel_token(),
            tx: CallerTx(Some(Box::new(tx))),
            invite: Some(Box::new(incoming.request.clone())),
            leg: SipLeg {
                inner: inner.clone(),
                dialog,
                direction: "inbound",
                state: LegState::Calling,
                contact: contact.clone(),
                held: false,
                allows_update: crate::leg::allows(&incoming.request.headers, "UPDATE"),
            },
            ok: None,
            retrans: None,
            cancel_seen: false,
        },
        branches: HashMap::new(),
        next_branch: 1,
        phase: Phase::Routing,
        reinvite_pending: false,
        re_ok: None,
        moh: None,
        media,
        parking: None,
        transfer: None,
        failed_transfer: None,
        next_route: None,
        route_superseded: false,
        identity: None,
        transferred: None,
        _trunk_channel: trunk_channel,
        verstat: verstat.clone(),
        cdr: Cdr {
            call_id: call_id.clone(),
            from: details.from.uri.clone(),
            to: details.to.uri.clone(),
            caller: cdr_caller,
            callee: None,
            context: context.clone(),
            start_ms: now,
            answer_ms: None,
            end_ms: now,
            disposition: Disposition::Failed,
            code: 0,
            duration_ms: 0,
            billable_ms: 0,
            hangup_cause: String::new(),
            start: String::new(),
            answer: None,
            end: String::new(),
        },
    };
    call.publish();
    // An INVITE with Replaces (RFC 3891) takes another call's party's
    // place instead of being routed: a BLF key picking up a ringing call,
    // a phone completing an attended transfer.
    let route: std::pin::Pin<Box<dyn std::future::Future<Output = RouteEnd> + Send>> =
        match incoming.request.headers.replaces().ok().flatten() {
            Some(replaces) => {
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
            None => match stir {
                Some((verify, header, from, to)) => {
                    let router = inner.router.clone();
                    let verstat = verstat.clone();
                    Box::pin(async move {
                        let (result, value) = verify.check(header.as_deref(), &from, &to).await;
                        tracing::info!(verified = result.verified, attest = ?result.attest, reason = ?result.reason, "STIR/SHAKEN: {value}");
                        let _ = verstat.set(value);
                        details.identity = Some(result);
                        router.route(handle, details).await
                    })
                }
                // In the call's span: the router starts the route at once
                // (on the Lua pool), and the route takes the span along.
                None => span.in_scope(|| inner.router.route(handle, details)),
            },
        };
    let route = tokio::spawn(route.instrument(span.clone()));
    tokio::spawn(Box::new(call).run(route).instrument(span));
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
            .map(|h| (h.name.as_str().to_owned(), h.value.to_string()))
            .collect(),
        transferred_by: None,
        transfer_failed: None,
        identity: None,
    }
}

/// The caller's INVITE transaction; `None` for a caller that came to the
/// call answered already (a parked call ringing back whoever parked it),
/// to which nothing is answered.
/// Boxed: the transaction is large and is gone once the caller has its
/// final response, while the call lasts.
struct CallerTx(Option<Box<InviteTx>>);

impl CallerTx {
    fn response(&self, status: u16) -> Response {
        match &self.0 {
            Some(tx) => tx.response(status),
            None => Response {
                status,
                reason: String::new(),
                headers: Headers::default(),
                body: Bytes::new(),
            },
        }
    }

    fn response_with_warning(&self, status: u16, agent: &str, text: &str) -> Response {
        match &self.0 {
            Some(tx) => tx.response_with_warning(status, agent, text),
            None => self.response(status),
        }
    }

    /// The answer for media we cannot use, with a Warning.
    fn failure(&self, failure: &Failure, agent: &str) -> Response {
        self.response_with_warning(failure.status(), agent, failure.text())
    }

    fn respond(&mut self, response: Response) {
        if let Some(tx) = &mut self.0 {
            tx.respond(response);
        }
    }

    fn is_answered(&self) -> bool {
        self.0.as_deref().is_none_or(InviteTx::is_answered)
    }

    fn ok_resender(&self) -> Option<sip_net::OkResender> {
        self.0.as_deref().map(InviteTx::ok_resender)
    }
}

/// The caller's side.
struct Inbound {
    tx: CallerTx,
    cancel: CancellationToken,
    /// The caller's INVITE, until the call is bridged.
    invite: Option<Box<Request>>,
    leg: SipLeg,
    /// Our 2xx, kept for retransmission until the ACK (§13.3.1.4).
    ok: Option<Response>,
    retrans: Option<OkRetransmit>,
    cancel_seen: bool,
}

/// Our 2xx to a re-INVITE, sent again until its ACK (§13.3.1.4, as for
/// the first INVITE's 200).
struct ReOk {
    /// Whose re-INVITE.
    from: Side,
    /// Its CSeq number, which the ACK repeats.
    seq: u32,
    tx: InviteTx,
    ok: Response,
    retrans: OkRetransmit,
}

/// One outbound INVITE of a dial.
struct Branch {
    dest: Destination,
    /// The INVITE as sent, until its final response.
    invite: Option<Request>,
    call_id: String,
    /// Dropping or firing it CANCELs the branch (if it has not answered).
    cancel: Option<oneshot::Sender<()>>,
    done: bool,
    /// The dialog a 2xx created (kept to ACK its retransmissions).
    dialog: Option<Dialog>,
    /// It answered 180/183.
    rang: bool,
    /// Its INVITE was sent again with a trunk's credentials.
    authed: bool,
    /// The trunk channel it holds (trunk targets), until it fails or the call ends.
    trunk_channel: Option<crate::trunk::ChannelSeized>,
}

/// A dial in progress (the targets are ringing).
struct Dialing {
    done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    deadline: Instant,
    branches: Vec<u32>,
    codes: Vec<u16>,
    rang: bool,
    /// The branch whose early media the caller hears (after the dialplan
    /// answered), instead of our ringback.
    early: Option<u32>,
    /// Another call is picking this one up: the targets were cancelled
    /// and the picker's party is on its way.
    picked: bool,
    /// A list of trunks dialled one after the other (`trunkdial.rs`).
    trunks: Option<Box<trunkdial::Failover>>,
    /// Whoever answers must press a key first (`confirm.rs`).
    confirm: Option<pbx::DialConfirm>,
    /// The answered party being asked to confirm, if one is.
    confirming: Option<confirm::Confirming>,
}

/// The caller joined with the branch that answered.
struct Bridge {
    branch: u32,
    leg: SipLeg,
    /// The route's `dial` returns when the bridge ends.
    done: Option<oneshot::Sender<Result<DialOutcome, ActionError>>>,
    /// The dial's target that answered, as the route gave it (the dial
    /// result's `answered_by`); `None` for a party that came otherwise
    /// (a pickup, a transfer).
    answered_by: Option<String>,
}

/// Where the route's `dial` (or a pickup's, an unpark's) hears how it
/// ended: when the targets give up, or when the bridge it made ends.
type DialDone = oneshot::Sender<Result<DialOutcome, ActionError>>;

/// The call's phase: which parties it has and what the route waits for.
/// Each variant holds what exists only in that phase, so "a dial and a
/// bridge at once" or "a bridge after the end" cannot be written; the
/// moves between them are [`Call`]'s transition methods (the table is in
/// the module docs), and what the admin API and the lamps see is derived
/// from it ([`Phase::call_state`]).
///
/// Kept beside it in [`Call`], because they are not phases:
/// - `transfer`: a blind transfer's transferor, set aside while the call
///   goes on through `Answered` and `Dialing` (the transferee's own
///   phases) until the target answers or fails;
/// - `failed_transfer`: a step deferred until the current event is handled;
/// - `parking`: a slot held while the route announces it (any live phase);
/// - `next_route` / `route_superseded`: which route task drives the call,
///   not which parties it has;
/// - `re_ok`, `reinvite_pending`, the caller's `ok`/`retrans`: in-dialog
///   transactions (2xx until ACK, §13.3.1.4; §14 glare) that run in any
///   answered phase;
/// - `moh`, `identity`, `transferred`, `verstat`: the call's attributes.
enum Phase {
    /// The route runs and the caller is not answered.
    Routing,
    /// The caller is answered by us and alone: its media is the call's own
    /// (prompts, echo, recording, music), or it waits while a transfer's
    /// route runs.
    Answered,
    /// Targets ring (boxed: a dial is large and lasts seconds).
    Dialing(Box<Dialing>),
    /// The caller is bridged with another party (inline, as before the
    /// phase: an established call is the common case and keeps it).
    Bridged(Bridge),
    /// An INVITE with Replaces released the bridged party; the newcomer
    /// takes its place ([`Call::on_adopt`]) and the route's dial goes on
    /// until then.
    Replacing(DialDone),
    /// The call is over; its route may still run, its actions failing
    /// with "call has ended". The bridged party's leg (if it was bridged)
    /// is kept until the task ends: its dialog is still this call's (a
    /// late request in it is answered, cleanup gives its Call-ID back).
    Ended(Option<Bridge>),
}

impl Phase {
    fn is_ended(&self) -> bool {
        matches!(self, Phase::Ended(_))
    }

    /// The caller with nobody else, dialling nobody: what a dial, a
    /// pickup, an unpark, a park and the media actions start from.
    fn is_alone(&self) -> bool {
        matches!(self, Phase::Routing | Phase::Answered)
    }

    /// The dial in progress.
    fn dialing(&self) -> Option<&Dialing> {
        match self {
            Phase::Dialing(d) => Some(d),
            _ => None,
        }
    }

    fn dialing_mut(&mut self) -> Option<&mut Dialing> {
        match self {
            Phase::Dialing(d) => Some(d),
            _ => None,
        }
    }

    /// The bridged party: while bridged, and after the end for the leg
    /// that was.
    fn bridge(&self) -> Option<&Bridge> {
        match self {
            Phase::Bridged(b) | Phase::Ended(Some(b)) => Some(b),
            _ => None,
        }
    }

    fn bridge_mut(&mut self) -> Option<&mut Bridge> {
        match self {
            Phase::Bridged(b) | Phase::Ended(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// What the admin API and the busy lamps show. A call waiting for its
    /// replacement still counts as bridged (the newcomer is on its way).
    fn call_state(&self) -> CallState {
        match self {
            Phase::Routing => CallState::Routing,
            Phase::Answered => CallState::Answered,
            Phase::Dialing(_) => CallState::Dialing,
            Phase::Bridged(_) | Phase::Replacing(_) => CallState::Bridged,
            Phase::Ended(_) => CallState::Ending,
        }
    }
}

struct Call {
    inner: Arc<Inner>,
    id: String,
    events_tx: mpsc::Sender<CallEvent>,
    events: mpsc::Receiver<CallEvent>,
    commands: mpsc::Receiver<Command>,
    ended: CancellationToken,
    /// This call's trace, if traces are kept.
    trace: Option<Arc<pbx::CallTrace>>,
    a: Inbound,
    /// Boxed: a branch is large and a map's table has room for several.
    branches: HashMap<u32, Box<Branch>>,
    next_branch: u32,
    /// Where the call is in its life: the one place that says whether
    /// targets ring, who is bridged, whether it is over ([`Phase`]).
    phase: Phase,
    reinvite_pending: bool,
    /// Our 2xx to the latest re-INVITE, until its ACK (UDP only).
    re_ok: Option<Box<ReOk>>,
    /// The music-on-hold class the other side hears when one side holds
    /// (`None`: [`DEFAULT_MOH`]).
    moh: Option<Box<str>>,
    media: CallMedia,
    /// A parking slot held for this call's caller (announced, then parked).
    parking: Option<pbx::Reservation>,
    /// A blind transfer in progress (`transfer.rs`).
    transfer: Option<Box<transfer::Transferring>>,
    /// Its target failed: to settle once the current event is handled.
    failed_transfer: Option<DialOutcome>,
    /// A route taking the call over from the one running (a transfer's).
    next_route: Option<JoinHandle<RouteEnd>>,
    /// The running route gave the call up: its end does not end the call.
    route_superseded: bool,
    /// The extension whose identity the call's party has when it is not
    /// the caller's (the callee kept after the caller transferred).
    identity: Option<String>,
    /// What a transfer did to this call, for its CDR's hangup cause.
    transferred: Option<String>,
    /// The trunk channel a carrier's call holds, given back when the call ends.
    _trunk_channel: Option<crate::trunk::ChannelSeized>,
    /// A trunk call's STIR/SHAKEN `verstat`, set once its Identity is
    /// checked (before its route runs): on From and P-Asserted-Identity
    /// towards phones.
    verstat: Arc<std::sync::OnceLock<&'static str>>,
    cdr: Cdr,
}

impl Call {
    /// The call's task. Boxed: a future that took the call by value
    /// would keep room for it twice (the argument and the local it moves
    /// into).
    async fn run(mut self: Box<Self>, mut route: JoinHandle<RouteEnd>) {
        let mut route_done = false;
        let mut linger_until: Option<Instant> = None;
        let cancel = self.a.cancel.clone();
        let stop = self.inner.stop.clone();
        loop {
            if self.phase.is_ended() && route_done {
                break;
            }
            if self.phase.is_ended() && linger_until.is_none() {
                linger_until = Some(Instant::now() + ROUTE_LINGER);
            }
            // The dial that rang ended unanswered: no more ringback.
            if self.phase.dialing().is_none() && self.media.is_ringback() {
                // Boxed, as the handlers below: a future that would
                // otherwise sit in every call task for the whole call.
                Box::pin(self.media.stop_ringback()).await;
            }
            let retrans_at = self.a.retrans.and_then(|r| r.poll_timeout());
            let re_ok_at = self.re_ok.as_ref().and_then(|r| r.retrans.poll_timeout());
            let dial_deadline = self.phase.dialing().map(|d| d.deadline);
            let linger_at = linger_until.filter(|_| !route_done);
            // One timer for the three deadlines (a timer is a sizeable part
            // of a call's memory): the earliest, then see which are due.
            let wake_at = [retrans_at, re_ok_at, dial_deadline, linger_at]
                .into_iter()
                .flatten()
                .min();
            let watch_cancel = !self.a.cancel_seen && !self.a.tx.is_answered();
            let silence = self.media.watch();
            let watch_silence =
                !silence.is_empty() && !self.phase.is_ended() && self.a.leg.state == LegState::Up;
            tokio::select! {
                // Boxed: what handling an event or a command awaits (SDP,
                // media legs, a bridge's restart) would otherwise sit in
                // every call's task for the whole call.
                Some(command) = self.commands.recv() => Box::pin(self.on_command(command)).await,
                Some(event) = self.events.recv() => Box::pin(self.on_event(event)).await,
                (which, silent) = silence.silent(), if watch_silence => self.on_silence(which, silent),
                () = cancel.cancelled(), if watch_cancel => self.on_caller_cancel(),
                () = stop.cancelled(), if !self.phase.is_ended() => self.on_shutdown(),
                end = &mut route, if !route_done => {
                    route_done = true;
                    let end = end.unwrap_or_else(|e| RouteEnd::Failed(format!("route task failed: {e}")));
                    if !std::mem::take(&mut self.route_superseded) {
                        self.on_route_end(end);
                    }
                }
                () = sleep_until(wake_at), if wake_at.is_some() => {
                    let now = Instant::now();
                    if retrans_at.is_some_and(|at| at <= now) {
                        self.on_retransmit();
                    }
                    if re_ok_at.is_some_and(|at| at <= now) {
                        self.on_re_ok_retransmit();
                    }
                    if dial_deadline.is_some_and(|at| at <= now) {
                        Box::pin(self.on_dial_timeout()).await;
                    }
                    if linger_at.is_some_and(|at| at <= now) {
                        tracing::warn!("route still running {}s after the call ended; abandoning it", ROUTE_LINGER.as_secs());
                        route.abort();
                        break;
                    }
                }
            }
            if let Some(outcome) = self.failed_transfer.take() {
                Box::pin(self.transfer_return(outcome)).await;
            }
            // A transfer's route takes over; the one it replaces winds down
            // on its own (its actions fail with "call has ended").
            if let Some(next) = self.next_route.take() {
                route = next;
                route_done = false;
                linger_until = None;
                self.route_superseded = false;
            }
        }
        self.cleanup();
    }

    // ---- the route's commands ----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Ring(done) => {
                let r = self.ring();
                let _ = done.send(r);
            }
            Command::Answer(done) => {
                let r = self.answer().await;
                let _ = done.send(r);
            }
            Command::Reject { code, reason, done } => {
                let r = self.reject(code, reason.map(String::from));
                let _ = done.send(r);
            }
            Command::Redirect { uri, done } => {
                let r = self.redirect(&uri);
                let _ = done.send(r);
            }
            Command::Hangup(done) => {
                let r = self.hangup();
                let _ = done.send(r);
            }
            Command::Dial { request, done } => self.dial(*request, done).await,
            Command::Echo(done) => {
                let r = self.echo().await;
                let _ = done.send(r);
            }
            Command::Digits(done) => {
                let r = self.digits().await;
                let _ = done.send(r);
            }
            Command::Play { prompt, done } => match self.own_media().await {
                Ok(()) => self.media.play(prompt, done).await,
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Command::Record { limits, done } => {
                let (max, silence) = *limits;
                let r = match self.own_media().await {
                    Ok(()) => self.media.record(max, silence).await,
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::Hold { class, done } => {
                let r = self.hold_caller(class.map(String::from)).await;
                let _ = done.send(r);
            }
            Command::Unhold(done) => {
                let r = match self.own_media().await {
                    Ok(()) => {
                        self.media.unhold().await;
                        self.media.listen().await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::StopPlaying(done) => {
                self.media.stop_playing().await;
                let _ = done.send(Ok(()));
            }
            Command::Park { request, done } => {
                let pbx::ParkRequest {
                    slot,
                    timeout,
                    parker,
                    ..
                } = *request;
                let r = self.park(slot, timeout, parker).await;
                let _ = done.send(r);
            }
            Command::Unpark { slot, done } => self.unpark(slot, done).await,
            Command::Pickup { target, done } => self.pickup(target.map(String::from), done).await,
            Command::Replace {
                dialog,
                early_only,
                done,
            } => self.replace(*dialog, early_only, done).await,
            Command::ReservePark { slot, done } => {
                let r = self.reserve_park(slot);
                let _ = done.send(r);
            }
            Command::StopRecording(done) => {
                let r = self
                    .media
                    .stop_recording()
                    .await
                    .ok_or_else(|| ActionError::Failed("nothing is being recorded".into()));
                let _ = done.send(r);
            }
            _ => {}
        }
    }

    fn live(&self) -> Result<(), ActionError> {
        if self.phase.is_ended() {
            Err(ActionError::Ended)
        } else {
            Ok(())
        }
    }

    fn ring(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if !self.a.tx.is_answered() {
            let r = self.a.tx.response(180);
            self.a.tx.respond(r);
            self.a.leg.state = LegState::Ringing;
        }
        Ok(())
    }

    async fn answer(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg.state == LegState::Up {
            return Ok(());
        }
        let body = match self.caller_sdp().await {
            Ok(body) => body,
            Err(failure) => {
                let r = self.a.tx.failure(&failure, &self.inner.config.domain);
                self.a.tx.respond(r);
                self.finish(Disposition::Failed, failure.status(), "media");
                return Err(ActionError::Failed(format!(
                    "cannot answer: {}",
                    failure.text()
                )));
            }
        };
        self.send_ok(Some(("application/sdp".to_owned(), body)));
        self.media.listen().await;
        if matches!(self.phase, Phase::Routing) {
            self.phase = Phase::Answered;
        }
        self.publish();
        Ok(())
    }

    /// The caller's media, answering first if need be (as Asterisk's
    /// Playback and Echo do); not while it is bridged to a callee.
    async fn own_media(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if !self.phase.is_alone() {
            return Err(ActionError::Failed(
                "the call is bridged or dialling: media actions need the caller alone".into(),
            ));
        }
        self.answer().await
    }

    /// `call:hold()`: music on hold to the caller alone (an IVR's queue).
    async fn hold_caller(&mut self, class: Option<String>) -> Result<(), ActionError> {
        self.own_media().await?;
        let name = class.as_deref().unwrap_or(self.moh_class());
        let music = self.media.music(name).ok_or_else(|| {
            ActionError::Failed(format!(
                "no music-on-hold class {name:?}: add sounds/moh/{name}.wav"
            ))
        })?;
        // Nobody holds: the far side (absent) "holds" the caller.
        self.media.hold(crate::anchor::Which::B, music).await;
        Ok(())
    }

    async fn echo(&mut self) -> Result<(), ActionError> {
        self.own_media().await?;
        self.media.echo().await;
        Ok(())
    }

    async fn digits(&mut self) -> Result<media::Digits, ActionError> {
        self.own_media().await?;
        self.media
            .caller_digits()
            .ok_or_else(|| ActionError::Failed("the caller has no media".into()))
    }

    fn reject(&mut self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg.state == LegState::Up {
            return Err(ActionError::Failed(
                "the call is answered: use hangup() to end it".into(),
            ));
        }
        if !(300..=699).contains(&code) {
            return Err(ActionError::Failed(format!(
                "reject needs a final status 300-699, got {code}"
            )));
        }
        let mut r = self.a.tx.response(code);
        if let Some(reason) = reason.filter(|r| !r.is_empty() && !r.contains(['\r', '\n'])) {
            r.reason = reason;
        }
        self.a.tx.respond(r);
        let disposition = match code {
            486 | 600 | 603 => Disposition::Busy,
            _ => Disposition::Rejected,
        };
        self.finish(disposition, code, "dialplan");
        Ok(())
    }

    fn redirect(&mut self, uri: &str) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg.state == LegState::Up {
            return Err(ActionError::Failed(
                "the call is answered: it cannot be redirected".into(),
            ));
        }
        let uri = Uri::parse(uri.trim())
            .map_err(|e| ActionError::Failed(format!("redirect: bad URI {uri:?}: {e}")))?;
        let mut r = self.a.tx.response(302);
        r.headers.push(HeaderName::Contact, format!("<{uri}>"));
        self.a.tx.respond(r);
        self.finish(Disposition::Rejected, 302, "redirected");
        Ok(())
    }

    fn hangup(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg.state == LegState::Up {
            self.a.leg.bye();
            self.finish(Disposition::Answered, 200, "dialplan");
        } else {
            // What Asterisk and FreeSWITCH send for an unanswered hangup.
            let r = self.a.tx.response(603);
            self.a.tx.respond(r);
            self.finish(Disposition::Rejected, 603, "dialplan");
        }
        Ok(())
    }

    async fn dial(
        &mut self,
        request: DialRequest,
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    ) {
        if self.phase.is_ended() {
            let _ = done.send(Err(ActionError::Ended));
            return;
        }
        if !self.phase.is_alone() {
            let _ = done.send(Err(ActionError::Failed(
                "a dial is already in progress on this call".into(),
            )));
            return;
        }
        if request.targets.is_empty() {
            let _ = done.send(Err(ActionError::Failed("dial needs a target".into())));
            return;
        }
        if let Some(class) = &request.moh {
            self.moh = Some(class.as_str().into());
        }
        let confirm = request.confirm.clone();
        let mut destinations = Vec::new();
        let mut codes = Vec::new();
        for target in &request.targets {
            match target::resolve(&self.inner, target).await {
                Ok(mut d) => destinations.append(&mut d),
                Err(unreachable) => {
                    tracing::info!(%target, "dial: {}", unreachable.why);
                    codes.push(unreachable.code);
                }
            }
        }
        let mut started = Vec::new();
        // One offer for every fork, on the callee side's ports.
        let offer = match destinations.first() {
            Some(d) => {
                let ip = self
                    .inner
                    .endpoint
                    .local_addr_for(d.transport, d.addr)
                    .map(|a| a.ip());
                let only = d.trunk.as_ref().and_then(|t| t.trunk.codecs.as_deref());
                match self.media.callee_offer_with(ip, only) {
                    Ok(offer) => offer,
                    Err(failure) => {
                        tracing::warn!("dial: {}", failure.text());
                        let _ = done.send(Ok(DialOutcome {
                            status: DialStatus::Failed,
                            code: failure.status(),
                            answered_by: None,
                        }));
                        return;
                    }
                }
            }
            None => Bytes::new(),
        };
        let timeout = request.timeout.unwrap_or(self.inner.config.ring_timeout);
        let mut trunks = trunkdial::Failover::split(&mut destinations, &request, &offer, timeout);
        for dest in destinations {
            if let Some(id) = self.start_branch(dest, &request, &offer).await {
                started.push(id);
            } else {
                codes.push(503);
            }
        }
        // A trunk of a failover list that could not be tried: the next one.
        while started.is_empty()
            && let Some(list) = trunks.as_mut().filter(|l| !l.rest.is_empty())
        {
            let next = list.rest.remove(0);
            if let Some(id) = self.start_branch(next, &request, &offer).await {
                started.push(id);
            } else {
                codes.push(503);
            }
        }
        self.note(|| {
            let to: Vec<String> = started
                .iter()
                .filter_map(|id| self.branches.get(id))
                .map(|b| format!("{} at {}:{}", b.dest.label, b.dest.transport, b.dest.addr))
                .collect();
            format!(
                "dialled {} contact{}{}{}",
                to.len(),
                if to.len() == 1 { "" } else { "s" },
                if to.is_empty() { "" } else { ": " },
                to.join(", ")
            )
        });
        if started.is_empty() {
            let code = codes.iter().copied().min().unwrap_or(480);
            let _ = done.send(Ok(DialOutcome {
                status: DialStatus::Unavailable,
                code,
                answered_by: None,
            }));
            return;
        }
        if self.a.leg.state == LegState::Up
            && self.phase.bridge().is_none()
            && self.media.held_by().is_none()
        {
            // Answered by the dialplan (an IVR transferring): the caller
            // hears ringback, not silence, while the targets ring. One the
            // dialplan holds (`call:hold`, a queue ringing its agents)
            // keeps hearing its music.
            self.media.ringback().await;
        }
        self.enter_dialing(Box::new(Dialing {
            done,
            deadline: Instant::now() + timeout,
            branches: started,
            codes,
            rang: false,
            early: None,
            picked: false,
            trunks,
            confirm,
            confirming: None,
        }));
    }

    /// The display name and user of an outbound INVITE's From: the
    /// dialplan's `caller_id` (`"1000"` or `"Reception <1000>"`) when set,
    /// else the authenticated extension's id and configured name. `None`
    /// for a caller ID that cannot be a SIP user.
    fn outbound_identity(&self, caller_id: Option<&str>) -> Option<(Option<String>, String)> {
        let (display, user) = match caller_id {
            Some(id) => match id.trim().strip_suffix('>').and_then(|s| s.split_once('<')) {
                Some((name, number)) => {
                    let name = name.trim().trim_matches('"').trim();
                    (
                        (!name.is_empty()).then(|| name.to_owned()),
                        number.trim().to_owned(),
                    )
                }
                None => (None, id.trim().to_owned()),
            },
            None => {
                let id = self
                    .identity
                    .clone()
                    .or_else(|| self.cdr.caller.clone())
                    .unwrap_or_else(|| "anonymous".to_owned());
                let name = self
                    .inner
                    .extensions
                    .load()
                    .get(&id)
                    .and_then(|e| e.name.clone());
                (name, id)
            }
        };
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/%".contains(&b));
        let display = display.map(|d| d.replace(['"', '\\', '\r', '\n'], ""));
        user_ok.then_some((display, user))
    }

    /// Sends one outbound INVITE and starts the task that reads its responses.
    async fn start_branch(
        &mut self,
        dest: Destination,
        request: &DialRequest,
        offer: &Bytes,
    ) -> Option<u32> {
        let inner = &self.inner;
        let domain = &inner.config.domain;
        let max_forwards = self
            .a
            .invite
            .as_deref()
            .and_then(Request::max_forwards)
            .unwrap_or(70)
            .saturating_sub(1)
            .min(70);
        // Who the callee sees: the authenticated extension (its id and
        // configured name), never what the phone wrote in its From, unless
        // the dialplan chose a caller ID.
        let (identity, asserted, private, signed) = match &dest.trunk {
            Some(t) => {
                let number = dest
                    .uri
                    .as_sip()
                    .and_then(|s| s.user.clone())
                    .unwrap_or_default();
                let id = self.trunk_identity(t, request, &number);
                (id.from, id.asserted, id.private, id.signed)
            }
            None => {
                let Some((display, user)) = self.outbound_identity(request.caller_id.as_deref())
                else {
                    tracing::warn!(caller_id = ?request.caller_id, "dial: caller_id is not a usable SIP user; branch not started");
                    return None;
                };
                // A trunk call whose Identity was checked: the phone is
                // told how (ATIS-1000074 verstat, in the URI's user part).
                let user = match self.verstat.get() {
                    Some(v) => format!("{user};verstat={v}"),
                    None => user,
                };
                let identity = match display {
                    Some(d) => format!("\"{d}\" <sip:{user}@{domain}>"),
                    None => format!("<sip:{user}@{domain}>"),
                };
                (identity.clone(), Some(identity), false, None)
            }
        };
        let trunk_channel = match &dest.trunk {
            Some(t) => match inner.trunks.seize(&t.trunk) {
                Some(seized) => Some(seized),
                None => {
                    tracing::info!(trunk = %t.trunk.name, "dial: trunk at max_channels; branch not started");
                    return None;
                }
            },
            None => None,
        };
        let from = format!("{identity};tag={}", new_tag());
        let call_id = format!("{:032x}@{domain}", rand::random::<u128>());
        let mut headers = Headers::with_capacity(16);
        for route in &dest.route {
            headers.push(HeaderName::Route, route.as_str());
        }
        headers.push(HeaderName::MaxForwards, max_forwards.to_string());
        headers.push(HeaderName::From, from);
        // RFC 3325: the identity this PBX vouches for, which desk phones
        // show in preference to From.
        if let Some(asserted) = asserted {
            headers.push(HeaderName::parse("P-Asserted-Identity"), asserted);
        }
        if private {
            headers.push(HeaderName::parse("Privacy"), "id");
        }
        // RFC 8224: the PASSporT the trunk's key signed (STIR/SHAKEN).
        if let Some(signed) = signed {
            headers.push(HeaderName::parse("Identity"), signed);
        }
        headers.push(HeaderName::To, dest.to.as_str());
        headers.push(HeaderName::CallId, call_id.as_str());
        headers.push(HeaderName::CSeq, "1 INVITE");
        headers.push(
            HeaderName::Contact,
            our_contact(inner, dest.transport, dest.addr),
        );
        headers.push(
            HeaderName::Allow,
            "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO",
        );
        headers.push(HeaderName::UserAgent, inner.config.user_agent.as_str());
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED.contains(&lower.as_str())
                || name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                || value.contains(['\r', '\n'])
            {
                tracing::warn!(header = %name, "dial: header not allowed on an outbound INVITE; left out");
                continue;
            }
            headers.push(HeaderName::parse(name), value.as_str());
        }
        headers.push(HeaderName::ContentType, "application/sdp");
        let invite = Request {
            method: Method::Invite,
            uri: dest.uri.clone(),
            headers,
            body: offer.clone(),
        };
        let id = self.next_branch;
        self.next_branch += 1;
        // A callee that is one of our extensions may re-authenticate from
        // a new address; any other must keep signalling from where we sent.
        let callee = self
            .inner
            .extensions
            .load()
            .contains_key(&dest.label)
            .then(|| dest.label.clone());
        if !self.inner.dialogs.insert(
            call_id.clone(),
            self.events_tx.clone(),
            Side::Outbound(id),
            dest.addr.ip(),
            callee,
        ) {
            return None;
        }
        if let Some(t) = &self.trace {
            self.inner.traces.add_leg(t, &call_id);
        }
        let ctx = match self
            .inner
            .endpoint
            .invite(invite, dest.transport, dest.addr)
            .await
        {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::info!(to = %dest.addr, error = %e, "dial: cannot send INVITE");
                self.inner.dialogs.remove(&call_id);
                return None;
            }
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let sent = ctx.request().cloned();
        tokio::spawn(
            branch_task(id, Box::new(ctx), self.events_tx.clone(), cancel_rx).in_current_span(),
        );
        self.branches.insert(
            id,
            Box::new(Branch {
                dest,
                invite: sent,
                call_id,
                cancel: Some(cancel_tx),
                done: false,
                dialog: None,
                rang: false,
                authed: false,
                trunk_channel,
            }),
        );
        Some(id)
    }

    // ---- events ----

    async fn on_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Branch { id, event } => self.on_branch(id, event).await,
            CallEvent::Confirmed {
                id,
                accepted,
                media,
            } => self.on_confirmed(id, accepted, media.0).await,
            CallEvent::Request {
                side,
                request,
                reply,
            } => self.on_request(side, *request, reply).await,
            CallEvent::ReInvite { side, incoming, tx } => {
                self.on_reinvite(side, *incoming, *tx).await;
            }
            CallEvent::Ack { side, request } => self.on_ack(side, &request).await,
            CallEvent::ReInviteAnswered { from, tx, response } => {
                self.on_reinvite_answered(from, *tx, response).await;
            }
            CallEvent::Hangup => self.on_admin_hangup(),
            CallEvent::ReplaceAsk { dialog, reply } => {
                let DialogRef { call_id, tags } = *dialog;
                let agreed = self.on_replace_ask(&call_id, tags).await;
                let _ = reply.send(agreed);
            }
            CallEvent::PickupAsk { reply } => {
                let _ = reply.send(self.on_pickup_ask());
            }
            CallEvent::Adopt { channel, label } => self.on_adopt(*channel, label.into()).await,
            CallEvent::GiveUp { dialog, reply } => {
                let DialogRef { call_id, tags } = *dialog;
                let party = self.give_up(&call_id, tags).await;
                let _ = reply.send(party);
            }
        }
    }

    async fn on_ack(&mut self, side: Side, request: &Request) {
        if let Some(re) = &self.re_ok
            && re.from == side
            && request.cseq().is_some_and(|c| c.seq == re.seq)
        {
            self.re_ok = None;
        }
        let which = match side {
            Side::Inbound if self.a.leg.dialog.matches(request) => {
                self.a.retrans = None;
                // Nothing left to retransmit.
                self.a.ok = None;
                Which::A
            }
            Side::Outbound(id)
                if self
                    .phase
                    .bridge()
                    .is_some_and(|b| b.branch == id && b.leg.dialog.matches(request)) =>
            {
                Which::B
            }
            _ => return,
        };
        // The answer to the offer in our 2xx (late offer, offerless
        // re-INVITE).
        if let Err(failure) = self.media.ack_answer(which, &request.body).await {
            tracing::info!("ACK: {}", failure.text());
        }
    }

    async fn on_branch(&mut self, id: u32, event: InviteEvent) {
        let Some(branch) = self.branches.get_mut(&id) else {
            return;
        };
        let peer = branch.dest.addr.ip();
        let status = match &event {
            InviteEvent::Response(r) => r.status,
            InviteEvent::Timeout => 408,
            InviteEvent::TransportError => 503,
            _ => 500,
        };
        if status < 200 {
            if status > 100 && !branch.rang {
                branch.rang = true;
                // The admin API shows which contacts are ringing.
                self.publish();
            }
            if status > 100
                && let Some(dialing) = self.phase.dialing_mut()
                && dialing.branches.contains(&id)
            {
                dialing.rang = true;
                if !self.a.tx.is_answered()
                    && let InviteEvent::Response(r) = &event
                {
                    // Early media: the callee's answer anchored, ours to
                    // the caller, bridged at once.
                    let early = if r.body.is_empty() {
                        None
                    } else {
                        self.early_media(&r.body, peer).await
                    };
                    let mut out = self.a.tx.response(status);
                    set_body(
                        &mut out.headers,
                        &mut out.body,
                        early.map(|b| ("application/sdp".to_owned(), b)),
                    );
                    self.a.tx.respond(out);
                    self.a.leg.state = LegState::Ringing;
                } else if let InviteEvent::Response(r) = &event
                    && !r.body.is_empty()
                {
                    self.early_after_answer(id, &r.body, peer).await;
                }
            }
            return;
        }
        if (status == 401 || status == 407) && self.answer_trunk_challenge(id, &event).await {
            return;
        }
        let Some(branch) = self.branches.get_mut(&id) else {
            return;
        };
        if status >= 300 {
            branch.done = true;
            branch.cancel = None;
            branch.invite = None;
            let was_early = self.phase.dialing().is_some_and(|d| d.early == Some(id));
            if self.fail_over(id, Some(status)).await {
                return;
            }
            self.branch_failed(id, status);
            if was_early && let Some(dialing) = self.phase.dialing_mut() {
                // Its early media is gone and others still ring: back to
                // our ringback.
                dialing.early = None;
                self.media.ringback().await;
            }
            return;
        }
        // A 2xx.
        let InviteEvent::Response(response) = event else {
            return;
        };
        branch.done = true;
        if let Some(dialog) = &mut branch.dialog {
            // A retransmission of a 2xx we already acknowledged.
            let seq = dialog.local_cseq;
            let ack = dialog.request(Method::Ack, None, Some(seq));
            send_stateless(&self.inner, ack, dialog.transport, dialog.peer);
            return;
        }
        let Some(invite) = branch.invite.take() else {
            return;
        };
        let Some(dialog) = Dialog::uac(&invite, &response, branch.dest.transport, branch.dest.addr)
        else {
            return;
        };
        let mut dialog = dialog;
        let seq = dialog.local_cseq;
        let ack = dialog.request(Method::Ack, None, Some(seq));
        send_stateless(&self.inner, ack, dialog.transport, dialog.peer);
        branch.dialog = Some(dialog.clone());
        let wins = !self.phase.is_ended()
            && self.phase.bridge().is_none()
            && self
                .phase
                .dialing()
                .is_some_and(|d| d.branches.contains(&id) && !d.picked && d.confirming.is_none());
        let mut leg = SipLeg {
            inner: self.inner.clone(),
            dialog,
            direction: "outbound",
            state: LegState::Up,
            contact: our_contact(&self.inner, branch.dest.transport, branch.dest.addr),
            held: false,
            allows_update: crate::leg::allows(&response.headers, "UPDATE"),
        };
        if !wins {
            // A second answer (a fork that answered too late, or after the
            // caller left): it has a dialog now, so end it with BYE.
            leg.bye();
            return;
        }
        let label = branch.dest.label.clone();
        let answered_at = format!("{}:{}", branch.dest.transport, branch.dest.addr);
        let stream = match self.media.callee_answer(&response.body) {
            Ok(stream) => stream,
            Err(failure) => {
                // An answer we cannot use is no answer (RFC 3264 §6: it
                // had to accept our offer).
                tracing::info!(callee = %label, "dial: unusable SDP answer: {}", failure.text());
                leg.bye();
                self.branch_failed(id, 488);
                return;
            }
        };
        if self.phase.dialing().is_some_and(|d| d.confirm.is_some()) {
            self.start_confirm(id, leg, &stream, label, answered_at)
                .await;
            return;
        }
        self.put_through(id, leg, label, answered_at, Some(&stream))
            .await;
    }

    /// The branch `id` answered and the caller is put through to it: the
    /// others stop ringing, the dial becomes the bridge, the caller is
    /// answered if need be. `stream`: the callee's SDP answer to apply
    /// (`None` when its media is in place already, after a confirmation).
    async fn put_through(
        &mut self,
        id: u32,
        leg: SipLeg,
        label: String,
        answered_at: String,
        stream: Option<&sdp::Stream>,
    ) {
        let Some(dialing) = self.leave_dialing() else {
            return;
        };
        // Noted before the CANCELs: their branch tasks send (and trace)
        // them at once, and the ladder reads answer first, then CANCEL.
        self.note(|| format!("answered by {label} at {answered_at}"));
        // The others stop ringing.
        for other in &dialing.branches {
            if *other != id
                && let Some(b) = self.branches.get_mut(other)
                && let Some(cancel) = b.cancel.take()
            {
                let _ = cancel.send(());
            }
        }
        self.cdr.callee = Some(label.clone());
        // Filed (in `bridge_with`) before the caller hears the 200, so
        // anyone the caller tells sees the bridge.
        self.bridge_with(Bridge {
            branch: id,
            leg,
            done: Some(dialing.done),
            answered_by: Some(label),
        });
        // The caller's INVITE was for dialling; bridged, it is not needed.
        let _ = self.a.invite.take();
        let peer = self.phase.bridge().map(|b| b.leg.dialog.peer.ip());
        let peer = peer.unwrap_or(self.a.leg.dialog.peer.ip());
        if let Some(stream) = stream
            && let Err(failure) = self.media.apply_callee(stream, true, peer).await
        {
            tracing::info!("dial: {}", failure.text());
        }
        if self.answer_and_bridge().await {
            // A transfer's target answered: the transferor is released.
            self.transfer_connected();
        }
    }

    /// The bridged party is in place: the caller is answered if it is not
    /// yet (our SDP), and their media joined. `false` when the caller's
    /// media cannot be answered (the call is over then).
    async fn answer_and_bridge(&mut self) -> bool {
        if self.a.leg.state != LegState::Up {
            match self.caller_sdp().await {
                Ok(body) => self.send_ok(Some(("application/sdp".to_owned(), body))),
                Err(failure) => {
                    let r = self.a.tx.failure(&failure, &self.inner.config.domain);
                    self.a.tx.respond(r);
                    if let Some(b) = self.phase.bridge_mut() {
                        b.leg.bye();
                    }
                    self.finish(Disposition::Failed, failure.status(), "media");
                    return false;
                }
            }
            self.publish();
        }
        self.media.bridge().await;
        true
    }

    /// A branch of the dial ended without an answer; the dial ends when
    /// every branch has.
    fn branch_failed(&mut self, id: u32, status: u16) {
        if let Some(b) = self.branches.get_mut(&id) {
            b.done = true;
        }
        if let Some(dialing) = self.phase.dialing_mut()
            && dialing.branches.contains(&id)
            && !dialing.picked
        {
            dialing.codes.push(status);
            let all_done = dialing.confirming.is_none()
                && dialing
                    .branches
                    .iter()
                    .all(|b| self.branches.get(b).is_none_or(|b| b.done));
            if all_done {
                let (status, code) = dial_result(&dialing.codes, dialing.rang);
                self.end_dial(DialOutcome {
                    status,
                    code,
                    answered_by: None,
                });
            }
        }
    }

    /// What the caller gets as SDP (our answer, or our offer), on the
    /// address it reaches us on.
    async fn caller_sdp(&mut self) -> Result<Bytes, Failure> {
        let ip = self
            .inner
            .endpoint
            .local_addr_for(self.a.leg.dialog.transport, self.a.leg.dialog.peer)
            .map(|a| a.ip());
        let peer = self.a.leg.dialog.peer.ip();
        self.media.caller_description(ip, peer).await
    }

    /// A callee's early answer (18x): its side anchored, the caller's
    /// answer made, both joined so the caller hears the callee's tones.
    /// Early media (a 180/183 with SDP) from branch `id` while the caller
    /// was answered by the dialplan already: the caller hears the callee's
    /// media (a carrier's announcement, a remote ringback) instead of ours.
    async fn early_after_answer(&mut self, id: u32, body: &Bytes, peer: IpAddr) {
        let Ok(stream) = self.media.callee_answer(body) else {
            return;
        };
        if self.media.apply_callee(&stream, false, peer).await.is_err() {
            return;
        }
        self.media.bridge().await;
        if let Some(dialing) = self.phase.dialing_mut() {
            dialing.early = Some(id);
        }
        self.note(|| "early media from the callee replaces the ringback".to_owned());
    }

    async fn early_media(&mut self, body: &Bytes, peer: IpAddr) -> Option<Bytes> {
        let stream = self.media.callee_answer(body).ok()?;
        self.media.apply_callee(&stream, false, peer).await.ok()?;
        let ours = self.caller_sdp().await.ok()?;
        self.media.bridge().await;
        Some(ours)
    }

    /// A leg has sent no RTP for `media.rtp_timeout`: the call is dead
    /// (a phone that lost power or network sends no BYE).
    fn on_silence(&mut self, which: Which, silent: Duration) {
        tracing::info!(side = ?which, silent_ms = silent.as_millis() as u64, "no RTP; hanging up");
        metrics::counter!("rtp_timeouts_total").increment(1);
        self.a.leg.bye();
        if let Some(b) = self.phase.bridge_mut() {
            b.leg.bye();
        }
        self.finish(Disposition::Answered, 200, "rtp timeout");
    }

    fn on_caller_cancel(&mut self) {
        self.a.cancel_seen = true;
        if self.a.tx.is_answered() || self.phase.is_ended() {
            return;
        }
        let r = self.a.tx.response(487);
        self.a.tx.respond(r);
        self.a.leg.state = LegState::Ended;
        if let Some(dialing) = self.leave_dialing() {
            self.cancel_branches();
            let _ = dialing.done.send(Ok(DialOutcome {
                status: DialStatus::Cancelled,
                code: 487,
                answered_by: None,
            }));
        }
        self.finish(Disposition::Cancelled, 487, "cancel");
    }

    /// Notes in the trace what the call made of a dialplan step.
    /// The call's music-on-hold class.
    fn moh_class(&self) -> &str {
        self.moh.as_deref().unwrap_or(DEFAULT_MOH)
    }

    fn note(&self, text: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            t.step(None, text());
        }
    }

    /// The admin API ends the call whatever its state: BYE to each party
    /// that answered, 480 to a caller still waiting, CANCEL to ringing
    /// branches (in `finish`).
    fn on_admin_hangup(&mut self) {
        if self.phase.is_ended() {
            return;
        }
        tracing::info!("call hung up by the admin API");
        if let Some(b) = self.phase.bridge_mut() {
            b.leg.bye();
        }
        if self.a.leg.state == LegState::Up {
            self.a.leg.bye();
            self.finish(Disposition::Answered, 200, "admin hangup");
        } else {
            let r = self.a.tx.response_with_warning(
                480,
                &self.inner.config.domain,
                "hung up by the administrator",
            );
            self.a.tx.respond(r);
            self.a.leg.state = LegState::Ended;
            self.finish(Disposition::Failed, 480, "admin hangup");
        }
    }

    /// The server is stopping: end the call whatever its state.
    fn on_shutdown(&mut self) {
        if self.a.leg.state == LegState::Up {
            self.a.leg.bye();
            if let Some(b) = self.phase.bridge_mut() {
                b.leg.bye();
            }
            self.finish(Disposition::Answered, 200, "shutdown");
        } else {
            let r =
                self.a
                    .tx
                    .response_with_warning(503, &self.inner.config.domain, "shutting down");
            self.a.tx.respond(r);
            self.finish(Disposition::Failed, 503, "shutdown");
        }
    }

    fn on_retransmit(&mut self) {
        let Some(r) = &mut self.a.retrans else {
            return;
        };
        match r.handle_timeout(Instant::now()) {
            OkTimer::Resend => {
                if let Some(ok) = &self.a.ok {
                    self.a.tx.respond(ok.clone());
                }
            }
            OkTimer::GiveUp => {
                // §13.3.1.4: no ACK for the 2xx: the dialog is over.
                tracing::info!("no ACK for our 200 OK; ending the call");
                self.a.retrans = None;
                self.a.leg.bye();
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.bye();
                }
                self.finish(Disposition::Failed, 408, "no ACK from caller");
            }
            _ => {}
        }
    }

    /// Sends our 2xx to a re-INVITE again (T1 doubling to T2); with no
    /// ACK within 64×T1 the call is over (§13.3.1.4).
    fn on_re_ok_retransmit(&mut self) {
        let Some(re) = &mut self.re_ok else {
            return;
        };
        match re.retrans.handle_timeout(Instant::now()) {
            OkTimer::Resend => re.tx.respond(re.ok.clone()),
            OkTimer::GiveUp => {
                tracing::info!("no ACK for our 200 OK to a re-INVITE; ending the call");
                self.re_ok = None;
                self.a.leg.bye();
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.bye();
                }
                self.finish(Disposition::Answered, 408, "no ACK for re-INVITE");
            }
            _ => {}
        }
    }

    /// Answers a re-INVITE from `from`; a 2xx over UDP is kept and sent
    /// again until its ACK.
    fn respond_reinvite(&mut self, from: Side, mut tx: InviteTx, r: Response) {
        let transport = match from {
            Side::Inbound => Some(self.a.leg.dialog.transport),
            Side::Outbound(_) => self.phase.bridge().map(|b| b.leg.dialog.transport),
        };
        let keep = (200..300).contains(&r.status) && transport == Some(Transport::Udp);
        let seq = r.cseq().map(|c| c.seq);
        tx.respond(r.clone());
        if let (true, Some(seq)) = (keep, seq) {
            let config = &self.inner.config;
            self.re_ok = Some(Box::new(ReOk {
                from,
                seq,
                tx,
                ok: r,
                retrans: OkRetransmit::start(Instant::now(), config.t1, config.t2),
            }));
        }
    }

    async fn on_dial_timeout(&mut self) {
        let ringing = self.phase.dialing().map(|d| d.branches.clone());
        if let Some(ringing) = ringing
            && let [only] = ringing.as_slice()
            && self
                .phase
                .dialing()
                .is_some_and(|d| d.trunks.as_ref().is_some_and(|l| !l.rest.is_empty()))
        {
            // A trunk of a failover list did not answer in time: CANCEL it,
            // try the next.
            if let Some(b) = self.branches.get_mut(only) {
                b.done = true;
                if let Some(cancel) = b.cancel.take() {
                    let _ = cancel.send(());
                }
            }
            if self.fail_over(*only, None).await {
                return;
            }
        }
        if self.phase.dialing().is_some() {
            self.cancel_branches();
            self.end_dial(DialOutcome {
                status: DialStatus::NoAnswer,
                code: 408,
                answered_by: None,
            });
        }
    }

    fn on_route_end(&mut self, end: RouteEnd) {
        if self.phase.is_ended() {
            return;
        }
        let failed = matches!(end, RouteEnd::Failed(_) | RouteEnd::Unavailable(_));
        if self.a.leg.state == LegState::Up {
            self.a.leg.bye();
            if let Some(b) = self.phase.bridge_mut() {
                b.leg.bye();
            }
            // Answered, then lost to an error (a missing prompt, say):
            // the CDR says which.
            let cause = match &end {
                RouteEnd::Failed(why) | RouteEnd::Unavailable(why) => format!("error: {why}"),
                _ => "dialplan".to_owned(),
            };
            self.finish(Disposition::Answered, 200, &cause);
            return;
        }
        if let Some(dialing) = self.leave_dialing() {
            self.cancel_branches();
            drop(dialing);
        }
        let (code, text, cause) = match &end {
            RouteEnd::Failed(why) => (500, why.as_str(), "error"),
            // The storage is out of reach for now: the caller may retry.
            RouteEnd::Unavailable(why) => (503, why.as_str(), "error"),
            _ => (404, "no route for this number", "no route"),
        };
        let r = self
            .a
            .tx
            .response_with_warning(code, &self.inner.config.domain, text);
        self.a.tx.respond(r);
        let disposition = if failed {
            Disposition::Failed
        } else {
            Disposition::Rejected
        };
        self.finish(disposition, code, cause);
    }

    // ---- the phase's transitions (the table is in the module docs) ----

    /// The phase of a caller with nobody else: answered or not.
    fn alone(&self) -> Phase {
        if self.a.leg.state == LegState::Up {
            Phase::Answered
        } else {
            Phase::Routing
        }
    }

    /// Routing | Answered -> Dialing: the targets ring.
    fn enter_dialing(&mut self, dialing: Box<Dialing>) {
        self.phase = Phase::Dialing(dialing);
        self.publish();
    }

    /// Dialing -> Routing | Answered: the dial is over (the caller gets
    /// its result, or a bridge follows at once). `None` when not dialling.
    fn leave_dialing(&mut self) -> Option<Box<Dialing>> {
        if !matches!(self.phase, Phase::Dialing(_)) {
            return None;
        }
        let alone = self.alone();
        match std::mem::replace(&mut self.phase, alone) {
            Phase::Dialing(dialing) => Some(dialing),
            _ => None,
        }
    }

    /// Routing | Answered (a dial just left, a pickup, an unpark, a
    /// replacement arriving, a transferee back) -> Bridged.
    fn bridge_with(&mut self, bridge: Bridge) {
        self.phase = Phase::Bridged(bridge);
        self.publish();
    }

    /// Bridged -> Answered: the bridged party leaves (a transfer, a
    /// replacement, an attended transfer's move). `None` when not bridged.
    fn take_bridge(&mut self) -> Option<Bridge> {
        if !matches!(self.phase, Phase::Bridged(_)) {
            return None;
        }
        let alone = self.alone();
        match std::mem::replace(&mut self.phase, alone) {
            Phase::Bridged(bridge) => Some(bridge),
            _ => None,
        }
    }

    /// Answered (the bridged party just released) -> Replacing.
    fn await_replacement(&mut self, done: DialDone) {
        self.phase = Phase::Replacing(done);
    }

    /// Replacing -> Answered: the newcomer is here (and is bridged next).
    fn take_replacement(&mut self) -> Option<DialDone> {
        if !matches!(self.phase, Phase::Replacing(_)) {
            return None;
        }
        let alone = self.alone();
        match std::mem::replace(&mut self.phase, alone) {
            Phase::Replacing(done) => Some(done),
            _ => None,
        }
    }

    // ---- helpers ----

    /// Whether `request` carries the tags of the dialog of the leg it came
    /// from (the bridged callee's, or else the caller's).
    fn in_dialog(&self, from_bridge: bool, request: &Request) -> bool {
        if from_bridge {
            self.phase
                .bridge()
                .is_some_and(|b| b.leg.dialog.matches(request))
        } else {
            self.a.leg.dialog.matches(request)
        }
    }

    /// §12.2.2: records a request's CSeq in its leg's dialog; `false` if it
    /// is not newer than the last one (out of order: 500).
    fn accept_cseq(&mut self, from_bridge: bool, seq: u32) -> bool {
        if from_bridge {
            self.phase
                .bridge_mut()
                .is_some_and(|b| b.leg.dialog.accept_remote_cseq(seq))
        } else {
            self.a.leg.dialog.accept_remote_cseq(seq)
        }
    }

    /// Answers the caller with 200 (and the body) and starts retransmitting
    /// it until the ACK (§13.3.1.4).
    fn send_ok(&mut self, body: Option<(String, Bytes)>) {
        let mut ok = self.a.tx.response(200);
        ok.headers
            .push(HeaderName::Contact, self.a.leg.contact.as_str());
        ok.headers.push(
            HeaderName::Allow,
            "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO",
        );
        if let Some((content_type, body)) = body {
            ok.headers.push(HeaderName::ContentType, content_type);
            ok.body = body;
        }
        self.a.tx.respond(ok.clone());
        self.a.ok = Some(ok);
        self.a.leg.state = LegState::Up;
        if self.a.leg.dialog.transport == Transport::Udp {
            let config = &self.inner.config;
            self.a.retrans = Some(OkRetransmit::start(Instant::now(), config.t1, config.t2));
        }
        self.cdr.answer_ms = Some(pbx::unix_ms());
    }

    fn cancel_branches(&mut self) {
        for branch in self.branches.values_mut() {
            if let Some(cancel) = branch.cancel.take() {
                let _ = cancel.send(());
            }
        }
    }

    fn end_dial(&mut self, outcome: DialOutcome) {
        self.note(|| format!("dial ended: {:?} ({})", outcome.status, outcome.code));
        if outcome.status != DialStatus::Answered {
            match self.transfer_failed(&outcome) {
                transfer::TargetFailed::Route => {}
                transfer::TargetFailed::Return => {
                    // Back to the transferor (once this event is handled);
                    // the transfer's route is done with the call.
                    self.failed_transfer = Some(outcome);
                    self.supersede_route();
                    drop(self.leave_dialing());
                    return;
                }
                transfer::TargetFailed::Hook => {
                    // The hook's route has taken over; the transfer's
                    // route is done with the call.
                    drop(self.leave_dialing());
                    return;
                }
            }
        }
        if let Some(dialing) = self.leave_dialing() {
            let _ = dialing.done.send(Ok(outcome));
        }
        if !self.phase.is_ended() {
            self.publish();
        }
    }

    /// The call is over: the route's pending and later actions fail with
    /// "call has ended", a dial in progress returns.
    fn finish(&mut self, disposition: Disposition, code: u16, cause: &str) {
        if self.phase.is_ended() {
            return;
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Ended(None));
        self.ended.cancel();
        self.transfer_abandoned();
        // The ports go back to the pool now, not when the route returns.
        self.media.release();
        self.cancel_branches();
        // The route's dial returns: a ringing one with "call has ended",
        // an answered one (bridged, or waiting for its replacement) as
        // answered.
        let answered = |answered_by| {
            Ok(DialOutcome {
                status: DialStatus::Answered,
                code: 200,
                answered_by,
            })
        };
        match phase {
            Phase::Dialing(dialing) => {
                let _ = dialing.done.send(Err(ActionError::Ended));
            }
            Phase::Bridged(mut bridge) => {
                if let Some(done) = bridge.done.take() {
                    let _ = done.send(answered(bridge.answered_by.clone()));
                }
                self.phase = Phase::Ended(Some(bridge));
            }
            Phase::Replacing(done) => {
                let _ = done.send(answered(None));
            }
            Phase::Routing | Phase::Answered | Phase::Ended(_) => {}
        }
        self.note(|| format!("call ended: {} {code} ({cause})", disposition.as_str()));
        self.cdr.disposition = disposition;
        self.cdr.code = code;
        self.cdr.hangup_cause = match &self.transferred {
            // The CDR says the call was transferred, and by whom.
            Some(what) => format!("{cause}; {what}"),
            None => cause.to_owned(),
        };
        self.cdr.end_ms = pbx::unix_ms();
    }

    /// A new offer from one side (re-INVITE, UPDATE): notes whether it
    /// puts the call on hold, for the admin API.
    fn note_hold(&mut self, from_bridge: bool, offer: &[u8]) {
        let Some(held) = crate::leg::offers_hold(offer) else {
            return;
        };
        let leg = if from_bridge {
            self.phase.bridge_mut().map(|b| &mut b.leg)
        } else {
            Some(&mut self.a.leg)
        };
        if let Some(leg) = leg
            && leg.held != held
        {
            leg.held = held;
            self.publish();
        }
    }

    fn publish(&self) {
        let mut legs = vec![self.a.leg.snapshot()];
        if let Some(b) = self.phase.bridge() {
            legs.push(b.leg.snapshot());
        }
        let ringing = self
            .phase
            .dialing()
            .iter()
            .flat_map(|d| &d.branches)
            .filter_map(|id| self.branches.get(id))
            .filter(|b| !b.done)
            .map(|b| RingingSnapshot {
                target: b.dest.label.clone(),
                contact: b.dest.uri.to_string(),
                address: format!("{}:{}", b.dest.transport, b.dest.addr),
                state: if b.rang {
                    LegState::Ringing
                } else {
                    LegState::Calling
                },
                dialog: pbx::DialogIds {
                    call_id: b.call_id.clone(),
                    local_tag: b
                        .invite
                        .as_ref()
                        .and_then(|i| i.headers.from().ok())
                        .and_then(|f| f.tag().map(str::to_owned))
                        .unwrap_or_default(),
                    remote_tag: None,
                },
            })
            .collect();
        self.inner.registry.insert(CallSnapshot {
            id: self.id.clone(),
            from: self.cdr.from.clone(),
            to: self.cdr.to.clone(),
            caller: self.cdr.caller.clone(),
            callee: self.cdr.callee.clone(),
            context: self.cdr.context.clone(),
            state: self.phase.call_state(),
            started_ms: self.cdr.start_ms,
            answered_ms: self.cdr.answer_ms,
            legs,
            ringing,
        });
    }

    fn cleanup(mut self) {
        if !self.phase.is_ended() {
            self.finish(Disposition::Failed, 500, "internal");
        }
        let inner = &self.inner;
        // A party that moved on (parked) keeps its dialog.
        inner.dialogs.remove_owned(&self.id, &self.events_tx);
        for branch in self.branches.values() {
            inner.dialogs.remove(&branch.call_id);
        }
        if let Some(b) = self.phase.bridge() {
            inner
                .dialogs
                .remove_owned(&b.leg.dialog.call_id, &self.events_tx);
        }
        inner.registry.remove(&self.id);
        if let Some(t) = &self.trace {
            t.end();
        }
        let active = inner
            .active
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("calls_active").set(active as f64);
        metrics::counter!("calls_total", "disposition" => self.cdr.disposition.as_str())
            .increment(1);
        let cdr = std::mem::replace(
            &mut self.cdr,
            Cdr {
                call_id: String::new(),
                from: String::new(),
                to: String::new(),
                caller: None,
                callee: None,
                context: String::new(),
                start_ms: 0,
                answer_ms: None,
                end_ms: 0,
                disposition: Disposition::Failed,
                code: 0,
                duration_ms: 0,
                billable_ms: 0,
                hangup_cause: String::new(),
                start: String::new(),
                answer: None,
                end: String::new(),
            },
        )
        .with_durations();
        tracing::info!(
            from = %cdr.from,
            to = %cdr.to,
            disposition = cdr.disposition.as_str(),
            code = cdr.code,
            cause = %cdr.hangup_cause,
            duration_ms = cdr.duration_ms,
            "call ended"
        );
        inner.cdrs.write(cdr);
    }
}
