//! A SIP dialog as one side of the B2BUA keeps it: `sip_proto`'s sans-IO
//! [`sip_proto::dialog::Dialog`] (RFC 3261 §12: tags, route set, remote
//! target, CSeq) plus where its requests go on the wire, which is the
//! address the peer's messages come from (a phone behind NAT is reached
//! there, not at its private Contact).

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use sip_net::Transport;
use sip_proto::{Request, Response};

/// One dialog and its peer's transport address.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    state: sip_proto::dialog::Dialog,
    pub transport: Transport,
    pub peer: SocketAddr,
}

impl Dialog {
    /// The UAS side, from the INVITE we received and the To tag we answer
    /// with (§12.1.1); our first CSeq is drawn at random (§8.1.1.5).
    pub fn uas(
        invite: &Request,
        local_tag: &str,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<Dialog> {
        let first = rand::random::<u16>().into();
        let state = sip_proto::dialog::Dialog::uas(invite, local_tag, first)?;
        Some(Dialog {
            state,
            transport,
            peer,
        })
    }

    /// The UAC side, from the INVITE we sent and the 2xx that answered it
    /// (§12.1.2).
    pub fn uac(
        invite: &Request,
        response: &Response,
        transport: Transport,
        peer: SocketAddr,
    ) -> Option<Dialog> {
        let state = sip_proto::dialog::Dialog::uac(invite, response)?;
        Some(Dialog {
            state,
            transport,
            peer,
        })
    }
}

impl Deref for Dialog {
    type Target = sip_proto::dialog::Dialog;

    fn deref(&self) -> &Self::Target {
        &self.state
    }
}

impl DerefMut for Dialog {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.state
    }
}

/// A tag for a header value we create (RFC 3261 §19.3).
pub(crate) fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}
