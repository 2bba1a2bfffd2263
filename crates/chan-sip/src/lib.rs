//! `chan-sip`: Switchboard's SIP channel, a B2BUA (RFC 3261 §12, §13, §15,
//! §9; RFC 7092 for what a B2BUA is). Every INVITE from an extension
//! (challenged with 407) becomes a `pbx` call run by one task; the dialplan
//! ([`pbx::Router`]) decides what to do with it; each outbound branch is a
//! new dialog of ours. Media is anchored: every SDP we
//! send is ours and RTP runs through our ports (`anchor.rs`).
//!
//! Read `lib.rs` (the [`ChanSip`] service: which call a request belongs
//! to), then `call.rs` (one call's task: commands from the route, the
//! inbound leg, dialling and forking, the bridge), `dialog.rs` (RFC 3261
//! §12 dialog state) and `target.rs` (what a dial target resolves to).

mod admit;
mod anchor;
mod call;
mod channel;
mod dialog;
mod leg;
mod outbound;
mod party;
mod queue;
mod relay;
mod target;
mod trace;
mod trunk;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use pbx::{Registry, Router};
use registrar::Registrar;
use sip_net::{BoxFuture, EndpointHandle, Incoming, InviteTx, Service};
use sip_proto::{HeaderName, Method, Response};
use tokio::sync::oneshot;

pub use anchor::MediaConfig;
pub(crate) use call::CallEvent;
pub use call::DEFAULT_MOH;
pub use trace::{TraceTap, trace_json};
pub use trunk::{
    CallerIdFormat, ChannelSeized, Dns, RegState, StirKey, StirVerify, Trunk, TrunkStatus, Trunks,
    to_e164,
};

/// What the channel needs to know of one extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The dialplan context its calls enter.
    pub context: String,
    /// The display name, if configured.
    pub name: Option<String>,
    /// Its pickup group: `call:pickup()` from it takes a call ringing
    /// another member.
    pub pickup_group: Option<String>,
    /// Its outside number (E.164), the caller ID and P-Asserted-Identity of its calls through trunks.
    pub did: Option<String>,
}

/// The channel's settings.
#[derive(Debug, Clone)]
pub struct ChanSipConfig {
    /// Our SIP domain (the host of extensions' URIs).
    pub domain: String,
    /// Our `User-Agent`/`Server` and Warning agent.
    pub user_agent: String,
    /// How long a dial rings when the route gives no timeout.
    pub ring_timeout: Duration,
    /// Most calls at once; past it new INVITEs get 503.
    pub max_calls: usize,
    /// T1, for retransmitting our 2xx until the ACK (RFC 3261 §13.3.1.4).
    pub t1: Duration,
    /// T2.
    pub t2: Duration,
    /// How many recent calls keep their trace (0: none).
    pub trace_calls: usize,
    /// The parking lot's slots (`call:park`, dialled 71-79 in default.lua).
    pub park_slots: std::ops::RangeInclusive<u16>,
    /// `security.anonymous = "reject"`: an INVITE without credentials
    /// whose From user is no extension (and not from a trunk) gets 403,
    /// not a 407 challenge.
    pub reject_anonymous: bool,
}

impl Default for ChanSipConfig {
    fn default() -> Self {
        Self {
            domain: "switchboard.local".into(),
            user_agent: "Switchboard".into(),
            ring_timeout: Duration::from_secs(60),
            max_calls: 10_000,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            trace_calls: 100,
            park_slots: 71..=79,
            reject_anonymous: false,
        }
    }
}

/// The SIP channel: serves INVITE, ACK, BYE, CANCEL, UPDATE and INFO.
#[derive(Clone)]
pub struct ChanSip {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ChanSipConfig,
    pub endpoint: EndpointHandle,
    pub registrar: Registrar,
    pub cdrs: pbx::CdrWriter,
    pub extensions: Arc<ArcSwap<HashMap<String, Extension>>>,
    pub router: Arc<dyn Router>,
    pub registry: Arc<Registry>,
    pub dialogs: Dialogs,
    pub active: AtomicUsize,
    /// Set when the server drains: new calls get 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Fired to hang up every call (shutdown after the grace period).
    pub stop: tokio_util::sync::CancellationToken,
    /// Media anchoring: ports, codecs, addresses.
    pub media: Arc<MediaConfig>,
    /// The traces of recent calls.
    pub traces: Arc<pbx::Traces>,
    /// Parked calls.
    pub parking: pbx::ParkingLot,
    /// The SIP trunks: inbound identification, outbound targets, registrations.
    pub trunks: Trunks,
}

impl ChanSip {
    /// RTP/RTCP port pairs leased now (two per bridged call).
    pub fn rtp_pairs_in_use(&self) -> usize {
        self.inner.media.pool.in_use()
    }

    /// A channel sending through `endpoint`, authenticating with
    /// `registrar` and finding extensions' phones through its location
    /// lookup, routing
    /// every call through `router` and keeping CDRs in `cdrs`. The
    /// `extensions` map is shared: whoever holds it may swap in a new one
    /// (a config reload), which calls placed from then on see.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ChanSipConfig,
        endpoint: EndpointHandle,
        registrar: Registrar,
        cdrs: pbx::CdrWriter,
        extensions: Arc<ArcSwap<HashMap<String, Extension>>>,
        router: Arc<dyn Router>,
        media: MediaConfig,
        trunks: Trunks,
    ) -> ChanSip {
        let traces = Arc::new(pbx::Traces::new(config.trace_calls));
        let slots = config.park_slots.clone();
        ChanSip {
            inner: Arc::new_cyclic(|me: &std::sync::Weak<Inner>| {
                let me = me.clone();
                // A call parked too long rings back whoever parked it.
                let parking = pbx::ParkingLot::new(
                    slots,
                    Arc::new(move |timed_out| {
                        if let Some(inner) = me.upgrade() {
                            tokio::spawn(call::ring_back(inner, timed_out));
                        }
                    }),
                );
                Inner {
                    parking,
                    traces,
                    trunks,
                    config,
                    endpoint,
                    registrar,
                    cdrs,
                    extensions,
                    router,
                    media: Arc::new(media),
                    registry: Arc::new(Registry::new()),
                    dialogs: Dialogs::default(),
                    active: AtomicUsize::new(0),
                    draining: std::sync::atomic::AtomicBool::new(false),
                    stop: tokio_util::sync::CancellationToken::new(),
                }
            }),
        }
    }

    /// The parking lot.
    pub fn parking(&self) -> pbx::ParkingLot {
        self.inner.parking.clone()
    }

    /// The SIP trunks.
    pub fn trunks(&self) -> &Trunks {
        &self.inner.trunks
    }

    /// The live calls.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry.clone()
    }

    /// The traces of recent calls, by any leg's Call-ID.
    pub fn traces(&self) -> Arc<pbx::Traces> {
        self.inner.traces.clone()
    }

    /// What the endpoint shows every message to, for the traces.
    pub fn trace_tap(&self) -> Arc<dyn sip_net::Tap> {
        Arc::new(TraceTap::new(self.inner.traces.clone()))
    }

    /// Number of calls in progress.
    pub fn active_calls(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Stops taking new calls (they get 503 with Retry-After); calls in
    /// progress go on.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Resolves once the CDRs of every call that has ended are stored.
    pub async fn flush_cdrs(&self) {
        self.inner.cdrs.flush().await;
    }

    /// Hangs up the call one of whose dialogs has the Call-ID `call_id`
    /// (its inbound leg's, which is the call's id, or an outbound
    /// branch's); `false` if there is no such call.
    pub async fn hang_up(&self, call_id: &str) -> bool {
        let Some(route) = self.inner.dialogs.get(call_id) else {
            return false;
        };
        route.events.send(CallEvent::Hangup).await.is_ok()
    }

    /// Hangs up every call in progress (BYE once answered, 503 before).
    pub fn hang_up_all(&self) {
        self.inner.stop.cancel();
    }

    /// The call owning the dialog `incoming` belongs to, if it may be
    /// delivered there: it comes from the dialog's peer IP, or carries
    /// credentials of the dialog's extension (RFC 3261 §22; the peer moved).
    fn dispatch(&self, incoming: &Incoming) -> Result<(crate::queue::EventTx, Side), Refusal> {
        let route = incoming
            .request
            .call_id()
            .and_then(|id| self.inner.dialogs.get(id))
            .ok_or(Refusal::Unknown)?;
        if route.peer == incoming.source.ip() {
            return Ok((route.events, route.side));
        }
        let refuse = |reason: &str| {
            Refusal::Respond(incoming.response_with_warning(403, &self.inner.config.domain, reason))
        };
        let Some(user) = route.user else {
            tracing::info!(source = %incoming.source, peer = %route.peer, method = %incoming.request.method, "in-dialog request from another address than the dialog's peer refused");
            return Err(refuse(
                "request from an address that is not the dialog's peer",
            ));
        };
        match self.inner.registrar.authenticate_call(incoming) {
            Ok(who) if who == user => Ok((route.events, route.side)),
            Ok(_) => Err(refuse("credentials are not the dialog's extension")),
            Err(challenge) => Err(Refusal::Respond(challenge)),
        }
    }
}

/// Which of a call's dialogs a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller's (inbound) dialog.
    Inbound,
    /// An outbound branch's dialog, by branch number.
    Outbound(u32),
}

/// A response a call hands back for an in-dialog request: the service
/// builds it with the transaction's headers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body, if any, with its Content-Type.
    pub body: Option<(String, Bytes)>,
    /// One more header field (a 415's `Accept`).
    pub header: Option<(HeaderName, &'static str)>,
}

impl Reply {
    /// A bare status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            header: None,
        }
    }

    /// With `value` in the header field `name`.
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Reply {
        self.header = Some((name, value));
        self
    }
}

/// Where a dialog's messages go: its call's task, which of the call's
/// dialogs it is, and who may send them.
#[derive(Clone)]
pub(crate) struct Route {
    events: crate::queue::EventTx,
    side: Side,
    /// The IP the dialog's peer signals from: requests inside the dialog
    /// must come from there (a Call-ID and tags alone are guessable from
    /// anyone who saw one message) ...
    peer: IpAddr,
    /// ... or be re-authenticated as this extension (a phone whose address
    /// changed mid-call).
    user: Option<String>,
}

/// Why an in-dialog request was not routed to its call.
enum Refusal {
    /// No dialog of ours.
    Unknown,
    /// The answer to send instead (a challenge, or 403).
    Respond(Response),
}

/// Call-ID → the call that owns that dialog. Sharded; each lookup locks one
/// shard briefly.
#[derive(Default)]
pub(crate) struct Dialogs {
    hasher: RandomState,
    shards: [Mutex<HashMap<String, Route>>; 16],
}

impl Dialogs {
    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        let i = (self.hasher.hash_one(id) as usize) % self.shards.len();
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Files the dialog `call_id` of the call behind `events`, whose peer
    /// signals from `peer` as extension `user` (if it is one).
    pub fn insert(
        &self,
        call_id: String,
        events: crate::queue::EventTx,
        side: Side,
        peer: IpAddr,
        user: Option<String>,
    ) -> bool {
        let mut shard = self.shard(&call_id);
        if shard.contains_key(&call_id) {
            return false;
        }
        shard.insert(
            call_id,
            Route {
                events,
                side,
                peer,
                user,
            },
        );
        true
    }

    pub fn get(&self, call_id: &str) -> Option<Route> {
        self.shard(call_id).get(call_id).cloned()
    }

    pub fn contains(&self, call_id: &str) -> bool {
        self.shard(call_id).contains_key(call_id)
    }

    pub fn remove(&self, call_id: &str) {
        self.shard(call_id).remove(call_id);
    }

    /// Points the dialog `call_id` at another owner (a party moved to
    /// another call or to the parking lot), keeping who may send in it.
    pub fn repoint(&self, call_id: &str, events: crate::queue::EventTx, side: Side) -> bool {
        match self.shard(call_id).get_mut(call_id) {
            Some(route) => {
                route.events = events;
                route.side = side;
                true
            }
            None => false,
        }
    }

    /// Removes the dialog `call_id` if `events` still owns it (a party
    /// that moved on keeps its dialog).
    pub fn remove_owned(&self, call_id: &str, events: &crate::queue::EventTx) {
        let mut shard = self.shard(call_id);
        if shard
            .get(call_id)
            .is_some_and(|route| route.events.same_channel(events))
        {
            shard.remove(call_id);
        }
    }
}

impl Service for ChanSip {
    fn methods(&self) -> Vec<Method> {
        vec![
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Update,
            Method::Info,
            Method::Refer,
        ]
    }

    fn handle(&self, incoming: Incoming) -> BoxFuture<Response> {
        // BYE, UPDATE, INFO: only inside a dialog we own.
        let (events, side) = match self.dispatch(&incoming) {
            Ok(route) => route,
            Err(refusal) => {
                let response = match refusal {
                    Refusal::Unknown => incoming.response(481),
                    Refusal::Respond(r) => r,
                };
                return Box::pin(async move { response });
            }
        };
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let event = CallEvent::Request {
                side,
                request: Box::new(incoming.request.clone()),
                reply,
            };
            if events.send(event).await.is_err() {
                return incoming.response(481);
            }
            match answer.await {
                Ok(reply) => {
                    let mut response = incoming.response(reply.status);
                    if let Some((name, value)) = reply.header {
                        response.headers.push(name, value);
                    }
                    relay::set_body(&mut response.headers, &mut response.body, reply.body);
                    response
                }
                Err(_) => incoming.response(481),
            }
        })
    }

    fn handle_invite(&self, incoming: Incoming, tx: InviteTx) {
        let has_to_tag = incoming
            .request
            .headers
            .to()
            .ok()
            .is_some_and(|to| to.tag().is_some());
        if has_to_tag {
            // A re-INVITE: its dialog's call takes it.
            match self.dispatch(&incoming) {
                Ok((events, side)) => {
                    let mut tx = tx;
                    tx.trying();
                    let _ = events.try_send(CallEvent::ReInvite {
                        side,
                        incoming: Box::new(incoming),
                        tx: Box::new(tx),
                    });
                }
                Err(Refusal::Unknown) => {
                    // No such dialog: answered once, nothing kept.
                    let response = tx.response(481);
                    tx.respond_stateless(response);
                }
                Err(Refusal::Respond(r)) => {
                    // A challenge or a refusal to a stranger: nothing kept.
                    tx.respond_stateless(r);
                }
            }
            return;
        }
        call::start(self.inner.clone(), incoming, tx);
    }

    fn handle_ack(&self, incoming: Incoming) {
        // An ACK is never answered: one from elsewhere is dropped.
        if let Ok((events, side)) = self.dispatch(&incoming) {
            let _ = events.try_send(CallEvent::Ack {
                side,
                request: Box::new(incoming.request),
            });
        }
    }
}
