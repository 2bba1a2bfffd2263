//! The transaction user interface (RFC 3261 §17: the TU above the
//! transaction layer): a [`Service`] serves the methods the endpoint does
//! not answer by itself, one [`Incoming`] request at a time.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use sip_proto::{Method, Request, Response};

use crate::Transport;
use crate::invite::InviteTx;
use crate::response::response_to;

/// A new request handed to a [`Service`], with where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The request, its top Via already stamped with `received`/`rport`.
    pub request: Request,
    /// The address the request came from (after NAT).
    pub source: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
    pub(crate) to_tag: String,
    pub(crate) server: Arc<str>,
}

impl Incoming {
    /// A response to this request with the right Via/From/To (with the
    /// transaction's To tag)/Call-ID/CSeq and our `Server` header
    /// (RFC 3261 §8.2.6). Add headers or a body to it before returning it.
    pub fn response(&self, status: u16) -> Response {
        response_to(&self.request, status, &self.to_tag, &self.server)
    }

    /// A response with a `Warning` header carrying `text` from `agent`
    /// (RFC 3261 §20.43), as [`InviteTx::response_with_warning`] makes.
    ///
    /// [`InviteTx::response_with_warning`]: crate::InviteTx::response_with_warning
    pub fn response_with_warning(&self, status: u16, agent: &str, text: &str) -> Response {
        let mut r = self.response(status);
        r.headers.push(
            sip_proto::HeaderName::Warning,
            crate::response::warning_value(agent, text),
        );
        r
    }

    /// The To tag this transaction's final response carries.
    pub fn to_tag(&self) -> &str {
        &self.to_tag
    }
}

/// A boxed future, as [`Service::handle`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Serves requests the endpoint passes up (registrar, calls, ...).
pub trait Service: Send + Sync + 'static {
    /// Methods this service answers; they are listed in `Allow` and a
    /// request of any other method never reaches [`handle`](Self::handle).
    fn methods(&self) -> Vec<Method>;

    /// Option tags the service supports (`Supported`, and `Require`
    /// checks pass for them).
    fn supported(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether to process anything from `source` at all. A `false` drops
    /// the message silently (ban lists: a banned scanner learns nothing).
    fn admit(&self, source: IpAddr) -> bool {
        let _ = source;
        true
    }

    /// Serves one request; the response is sent through the server
    /// transaction, which meanwhile absorbs retransmissions.
    fn handle(&self, incoming: Incoming) -> BoxFuture<Response>;

    /// Serves an INVITE (initial or re-INVITE), if [`methods`](Self::methods)
    /// lists INVITE: the service answers through `tx` over time, spawning
    /// whatever task it needs. The endpoint has sent no 100 Trying: call
    /// [`InviteTx::trying`] once the INVITE is accepted. The default
    /// answers 501.
    fn handle_invite(&self, incoming: Incoming, tx: InviteTx) {
        let mut tx = tx;
        let response = incoming.response(501);
        tx.respond(response);
    }

    /// An ACK that matched no transaction: the ACK for a 2xx to an INVITE
    /// (RFC 3261 §13.2.2.4, §17.1.1.3). The default drops it.
    fn handle_ack(&self, incoming: Incoming) {
        let _ = incoming;
    }
}

/// Several services behind one endpoint, each serving its own methods
/// (the registrar REGISTER, the calls INVITE/BYE/...). A request goes to the
/// first service that lists its method; a source is admitted only if every
/// service admits it.
#[derive(Default)]
pub struct ServiceMux {
    services: Vec<Arc<dyn Service>>,
}

impl ServiceMux {
    /// An empty mux.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service; earlier ones win for a method both list.
    pub fn with(mut self, service: Arc<dyn Service>) -> Self {
        self.services.push(service);
        self
    }

    fn for_method(&self, method: &Method) -> Option<&Arc<dyn Service>> {
        self.services
            .iter()
            .find(|s| s.methods().iter().any(|m| m == method))
    }
}

impl Service for ServiceMux {
    fn methods(&self) -> Vec<Method> {
        let mut all: Vec<Method> = Vec::new();
        for service in &self.services {
            for method in service.methods() {
                if !all.contains(&method) {
                    all.push(method);
                }
            }
        }
        all
    }

    fn supported(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for service in &self.services {
            for tag in service.supported() {
                if !all.contains(&tag) {
                    all.push(tag);
                }
            }
        }
        all
    }

    fn admit(&self, source: IpAddr) -> bool {
        self.services.iter().all(|s| s.admit(source))
    }

    fn handle(&self, incoming: Incoming) -> BoxFuture<Response> {
        match self.for_method(&incoming.request.method) {
            Some(service) => service.handle(incoming),
            None => {
                let response = incoming.response(501);
                Box::pin(async move { response })
            }
        }
    }

    fn handle_invite(&self, incoming: Incoming, tx: InviteTx) {
        match self.for_method(&Method::Invite) {
            Some(service) => service.handle_invite(incoming, tx),
            None => {
                let mut tx = tx;
                let response = incoming.response(501);
                tx.respond(response);
            }
        }
    }

    fn handle_ack(&self, incoming: Incoming) {
        if let Some(service) = self.for_method(&Method::Invite) {
            service.handle_ack(incoming);
        }
    }
}

/// Sees every SIP message an endpoint receives (once admitted, before
/// parsing) or sends (retransmissions included), as bytes: call traces.
/// Called on the packet path, so it must be quick and never block.
pub trait Tap: Send + Sync + 'static {
    /// `bytes` were received from (`inbound`) or sent to `peer` over `transport`.
    fn message(
        &self,
        inbound: bool,
        transport: crate::Transport,
        peer: std::net::SocketAddr,
        bytes: &bytes::Bytes,
    );
}
