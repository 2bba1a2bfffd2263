//! The pieces of the B2BUA that work on one message or one branch, apart
//! from a call's state: reading an outbound INVITE's responses and
//! CANCELling it (RFC 3261 §9.1), ACKs for 2xx (§13.2.2.4), a body put
//! into a message, and the inactive SDP
//! answer for calls the dialplan answers itself (RFC 3264 §6).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sip_net::{ClientInviteTx, InviteEvent, Transport};
use sip_proto::{HeaderName, Headers, Request};
use tokio::sync::oneshot;

use crate::Inner;
use crate::call::CallEvent;

/// Reads one outbound INVITE's responses and passes them to the call; sends
/// CANCEL when the call asks (or goes away) once the branch has had a
/// provisional response (RFC 3261 §9.1).
pub(crate) async fn branch_task(
    id: u32,
    // Boxed: the task lives until the transaction ends (32 s after a 2xx),
    // and a future taking it by value would keep room for it twice.
    mut ctx: Box<ClientInviteTx>,
    events: crate::queue::EventTx,
    mut cancel: oneshot::Receiver<()>,
) {
    let mut provisional = false;
    let mut finished = false;
    let mut cancel_wanted = false;
    let mut cancel_sent = false;
    loop {
        tokio::select! {
            event = ctx.next() => {
                let Some(event) = event else { break };
                match &event {
                    InviteEvent::Response(r) if r.status < 200 => provisional = true,
                    _ => {
                        finished = true;
                        ctx.forget_request();
                    }
                }
                if cancel_wanted && provisional && !finished && !cancel_sent {
                    cancel_sent = true;
                    tokio::spawn(ctx.cancel());
                }
                if events.send(CallEvent::Branch { id, event }).await.is_err() && finished {
                    break;
                }
            }
            _ = &mut cancel, if !cancel_wanted => {
                cancel_wanted = true;
                if provisional && !finished && !cancel_sent {
                    cancel_sent = true;
                    tokio::spawn(ctx.cancel());
                }
            }
        }
    }
}

pub(crate) fn send_stateless(
    inner: &Inner,
    request: Request,
    transport: Transport,
    peer: SocketAddr,
) {
    let endpoint = inner.endpoint.clone();
    let mut send = Box::pin(async move {
        if let Err(e) = endpoint.send_stateless(request, transport, peer).await {
            tracing::debug!(%peer, error = %e, "ACK not sent");
        }
    });
    // Over UDP, or on an open TCP connection, the ACK goes out at once:
    // poll once here rather than spawning a task per ACK. Only a send that
    // waits (a TCP connection being opened) moves to its own task, which
    // polls it again with a real waker.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if send.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(send);
    }
}

pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Puts `body` (with its Content-Type) into a message's headers and body.
pub(crate) fn set_body(headers: &mut Headers, slot: &mut Bytes, body: Option<(String, Bytes)>) {
    if let Some((content_type, body)) = body {
        headers.push(HeaderName::ContentType, content_type);
        *slot = body;
    }
}
