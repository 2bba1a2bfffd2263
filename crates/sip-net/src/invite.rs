//! INVITE transactions as a transaction user sees them (RFC 3261 §17.1.1,
//! §17.2.1, §9): [`InviteTx`], the server side a call answers through over
//! time (1xx, then one final; CANCEL arrives as a signal), and
//! [`ClientInviteTx`], an INVITE we sent, whose responses arrive as
//! [`InviteEvent`]s and which can be CANCELled.

use std::sync::Weak;

use sip_proto::{HeaderName, Headers, Method, Request, Response};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::endpoint::{ClientError, Core};
use crate::response::warning_value;
use crate::tx::{Key, ReplyTarget};
use crate::{EndpointHandle, Transport};

/// The server side of one INVITE (initial or re-INVITE): the call answers
/// through it, and learns from it that a CANCEL arrived.
///
/// Dropping it without a final response answers 500, so a failing call
/// never leaves a phone waiting for Timer B.
pub struct InviteTx {
    pub(crate) core: Weak<Core>,
    pub(crate) key: Key,
    pub(crate) to_tag: String,
    pub(crate) target: ReplyTarget,
    pub(crate) cancel: CancellationToken,
    pub(crate) request: Request,
    pub(crate) server: std::sync::Arc<str>,
    pub(crate) final_sent: bool,
}

impl std::fmt::Debug for InviteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteTx")
            .field("key", &self.key)
            .field("final_sent", &self.final_sent)
            .finish_non_exhaustive()
    }
}

/// Sends an INVITE's 2xx again after whoever answered it has moved on
/// (a call handing its caller's dialog to another owner before the ACK
/// came): the TU's retransmission of RFC 3261 §13.3.1.4, nothing else.
#[derive(Debug, Clone)]
pub struct OkResender {
    core: Weak<Core>,
    key: Key,
    to_tag: String,
    target: ReplyTarget,
}

impl OkResender {
    /// Sends `ok` (the 2xx already sent once) again.
    pub fn resend(&self, ok: Response) {
        if (200..300).contains(&ok.status)
            && let Some(core) = self.core.upgrade()
        {
            core.respond(&self.key, &self.to_tag, ok, &self.target);
        }
    }
}

impl InviteTx {
    /// A handle that can send this transaction's 2xx again (see
    /// [`OkResender`]).
    pub fn ok_resender(&self) -> OkResender {
        OkResender {
            core: self.core.clone(),
            key: self.key.clone(),
            to_tag: self.to_tag.clone(),
            target: self.target.clone(),
        }
    }

    /// Sends a response: any number of 1xx, then one final. A 2xx may be
    /// sent again (the TU retransmits it until the ACK, §13.3.1.4); any
    /// other response after the final one is dropped by the transaction.
    pub fn respond(&mut self, response: Response) {
        if response.status >= 200 {
            self.final_sent = true;
        }
        if let Some(core) = self.core.upgrade() {
            core.respond(&self.key, &self.to_tag, response, &self.target);
        }
    }

    /// Lets the transaction send 100 Trying (RFC 3261 §17.2.1): it goes
    /// out only if no other response has been sent 200 ms after the INVITE
    /// arrived (at once if that time has passed, or a retransmitted INVITE
    /// came meanwhile), and again for each retransmitted INVITE until a
    /// response follows. A call answered or ringing within 200 ms sends
    /// none. The endpoint sends none by itself: call this once the INVITE
    /// is accepted (authenticated, or inside a known dialog), so that an
    /// INVITE from a source that may be spoofed gets its challenge alone.
    pub fn trying(&mut self) {
        if self.final_sent {
            return;
        }
        let response = self.response(100);
        if let Some(core) = self.core.upgrade() {
            core.arm_trying(&self.key, response, &self.target);
        }
    }

    /// Sends a final non-2xx response once, without keeping the transaction
    /// (no retransmissions, nothing to match the ACK): for answers that a
    /// spoofed source could otherwise have multiplied towards a victim
    /// (a digest challenge to an INVITE from nobody yet known; RFC 3261
    /// §26.3.2.4 on reflection). A retransmitted INVITE gets a fresh answer.
    pub fn respond_stateless(mut self, response: Response) {
        self.final_sent = true;
        if let Some(core) = self.core.upgrade() {
            core.send_stateless_response(&self.key, response, &self.target);
        }
    }

    /// A response to the INVITE with `status`, this transaction's To tag
    /// (for status > 100) and our `Server` header.
    pub fn response(&self, status: u16) -> Response {
        let tag = if status > 100 {
            self.to_tag.as_str()
        } else {
            ""
        };
        crate::response::response_to(&self.request, status, tag, &self.server)
    }

    /// A response with a `Warning` header carrying `text`.
    pub fn response_with_warning(&self, status: u16, agent: &str, text: &str) -> Response {
        let mut r = self.response(status);
        r.headers
            .push(HeaderName::Warning, warning_value(agent, text));
        r
    }

    /// The To tag of this transaction's responses (the UAS dialog's local tag).
    pub fn to_tag(&self) -> &str {
        &self.to_tag
    }

    /// Resolves when a CANCEL for this INVITE arrives (the endpoint has
    /// already answered the CANCEL with 200; the TU should answer 487).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// A token that is cancelled when a CANCEL for this INVITE arrives
    /// (for waiting on it while the handle itself is borrowed).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Whether a CANCEL has arrived.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether a final response was sent.
    pub fn is_answered(&self) -> bool {
        self.final_sent
    }
}

impl Drop for InviteTx {
    fn drop(&mut self) {
        if !self.final_sent {
            let status = if self.cancel.is_cancelled() { 487 } else { 500 };
            let response = self.response(status);
            self.respond(response);
        }
    }
}

/// What happened to an INVITE we sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum InviteEvent {
    /// A response: provisional, final, or a retransmitted 2xx (send the
    /// ACK again). Boxed: events queue per call, and a small event keeps
    /// the queue small.
    Response(Box<Response>),
    /// No final response within 64*T1 (Timer B).
    Timeout,
    /// The request could not be delivered.
    TransportError,
}

/// An INVITE we sent (an outbound call leg or a re-INVITE): read its
/// responses with [`next`](Self::next), CANCEL it with
/// [`cancel`](Self::cancel). The ACK for a non-2xx final response is sent by
/// the transaction; the ACK for a 2xx is the TU's (RFC 3261 §13.2.2.4).
pub struct ClientInviteTx {
    pub(crate) events: flume::Receiver<InviteEvent>,
    pub(crate) handle: EndpointHandle,
    /// The INVITE as sent, until [`forget_request`](Self::forget_request).
    pub(crate) invite: Option<Request>,
    pub(crate) transport: Transport,
    pub(crate) dest: std::net::SocketAddr,
}

impl std::fmt::Debug for ClientInviteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInviteTx")
            .field("dest", &self.dest)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl ClientInviteTx {
    /// The next response or failure; `None` once the transaction has ended
    /// and everything was read.
    pub async fn next(&mut self) -> Option<InviteEvent> {
        self.events.recv_async().await.ok()
    }

    /// The INVITE as sent (with our top Via), unless forgotten.
    pub fn request(&self) -> Option<&Request> {
        self.invite.as_ref()
    }

    /// Drops the stored INVITE once it will not be CANCELled (a final
    /// response came): the handle may live on for Timer M to pass on 2xx
    /// retransmissions, without holding the request.
    pub fn forget_request(&mut self) {
        self.invite = None;
    }

    /// Where the INVITE was sent.
    pub fn destination(&self) -> (Transport, std::net::SocketAddr) {
        (self.transport, self.dest)
    }

    /// Sends a CANCEL for the INVITE (RFC 3261 §9.1: same Request-URI,
    /// Call-ID, From, To, CSeq number and top Via) and waits for its final
    /// response. Send it only after a provisional response arrived. The
    /// future owns what it needs, so it can be spawned while this handle
    /// keeps reading responses.
    pub fn cancel(
        &self,
    ) -> impl std::future::Future<Output = Result<Response, ClientError>> + Send + 'static {
        let cancel = self.invite.as_ref().map(build_cancel);
        let handle = self.handle.clone();
        let (transport, dest) = (self.transport, self.dest);
        async move {
            let cancel = cancel.ok_or_else(|| {
                ClientError::Transport("the INVITE was answered; nothing to cancel".into())
            })?;
            handle.send_prepared(cancel, transport, dest).await
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): Request-URI,
/// Call-ID, From, CSeq number, top Via and Route of the INVITE, To of the
/// response.
pub fn build_non2xx_ack(invite: &Request, response: &Response) -> Request {
    same_transaction(invite, Method::Ack, &response.headers)
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): as the INVITE, To
/// included.
pub fn build_cancel(invite: &Request) -> Request {
    same_transaction(invite, Method::Cancel, &invite.headers)
}

/// A request on the INVITE's transaction (its top Via, hence its branch):
/// Request-URI, Route, From, Call-ID and CSeq number of the INVITE, To from
/// `to_from`.
fn same_transaction(invite: &Request, method: Method, to_from: &Headers) -> Request {
    let mut headers = Headers::with_capacity(8);
    if let Some(via) = invite.headers.get_all(&HeaderName::Via).next() {
        headers.push(
            HeaderName::Via,
            sip_proto::header::split_list(via).next().unwrap_or(via),
        );
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, route);
    }
    headers.push(HeaderName::MaxForwards, "70");
    copy(&invite.headers, &mut headers, HeaderName::From);
    copy(to_from, &mut headers, HeaderName::To);
    copy(&invite.headers, &mut headers, HeaderName::CallId);
    let seq = invite.cseq().map_or(1, |c| c.seq);
    headers.push(HeaderName::CSeq, format!("{seq} {}", method.as_str()));
    Request {
        method,
        uri: invite.uri.clone(),
        headers,
        body: bytes::Bytes::new(),
    }
}

fn copy(from: &Headers, to: &mut Headers, name: HeaderName) {
    if let Some(value) = from.get(&name) {
        to.push(name, value);
    }
}

/// Creates the server-side handle for a new INVITE.
pub(crate) fn server_tx(
    core: Weak<Core>,
    key: Key,
    to_tag: String,
    target: ReplyTarget,
    cancel: CancellationToken,
    request: Request,
    server: std::sync::Arc<str>,
) -> InviteTx {
    InviteTx {
        core,
        key,
        to_tag,
        target,
        cancel,
        request,
        server,
        final_sent: false,
    }
}
