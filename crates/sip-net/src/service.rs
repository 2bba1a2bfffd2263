//! The transaction user interface (RFC 3261 §17: the TU above the
//! transaction layer): a [`Service`] serves the methods the endpoint does
//! not answer by itself, one [`Incoming`] request at a time.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use sip_proto::{Method, Request, Response};

use crate::Transport;
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
}
