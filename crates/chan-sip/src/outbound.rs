//! A dial's target until it answers: the outbound side of the SIP channel
//! driver. Our INVITE as a UAC (RFC 3261 §13.2), in the dialog table
//! under its own Call-ID; CANCEL once it has rung (§9.1); an ACK for each
//! 2xx, a retransmitted one included (§13.2.2.4); a trunk's 401/407
//! answered once with its credentials (§22.2, §8.1.3.5: same Call-ID,
//! next CSeq). What its INVITE's transaction hears comes back as a
//! [`Progress`], in the terms of `pbx::ChannelEvent` (ringing with or
//! without early media, failed, answered), and the first 2xx gives the
//! answered dialog as a [`SipLeg`], which its owner makes a
//! [`SipChannel`](crate::channel::SipChannel) with the target's media.
//! Whom the INVITE names and vouches for is the dialling call's to say
//! (`call/dial.rs`).

use std::sync::Arc;

use bytes::Bytes;
use pbx::{LegState, RingingSnapshot};
use sip_net::InviteEvent;
use sip_proto::{HeaderName, Method, Request, Response};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::anchor::MediaEndpoint;
use crate::dialog::Dialog;
use crate::leg::{SipLeg, allows, our_contact};
use crate::queue::EventTx;
use crate::relay::{branch_task, send_stateless};
use crate::target::Destination;
use crate::trunk::{ChannelSeized, authorization};
use crate::{Inner, Side};

/// One outbound INVITE of a dial, from its sending to its final response
/// (and, answered, the 2xx's retransmissions).
pub(crate) struct Outbound {
    id: u32,
    pub dest: Destination,
    /// The INVITE as sent, until its final response.
    /// Boxed: gone at the final response, and a branch lasts the call.
    invite: Option<Box<Request>>,
    call_id: String,
    /// Dropping or firing it CANCELs the INVITE (if it has not answered).
    cancel: Option<oneshot::Sender<()>>,
    /// It has had its final response (or was given up).
    pub done: bool,
    /// Its 2xx was acknowledged (and how to do it again).
    acked: Option<Acked>,
    /// It answered 180/183.
    rang: bool,
    /// Its INVITE was sent again with a trunk's credentials.
    authed: bool,
    /// The trunk channel it holds (trunk targets), until it fails or the
    /// call ends.
    trunk_channel: Option<ChannelSeized>,
    /// Its media (its own ports, our offer to it) until the call takes it
    /// (its early media heard, its answer put through or asked to
    /// confirm) or it ends.
    pub media: Option<Box<MediaEndpoint>>,
}

/// How an answered target's 2xx is acknowledged again when it comes again
/// (our ACK was lost, RFC 3261 §13.2.2.4).
enum Acked {
    /// From its own copy of its dialog (a party not bridged: a late
    /// answer that got a BYE, one being asked to confirm).
    Own(Box<Dialog>),
    /// By the bridged party, which owns the dialog, with the INVITE's
    /// CSeq number: a copy kept for the whole call only to build this ACK
    /// was most of a kilobyte per call.
    Bridged {
        /// The INVITE's CSeq number, which the ACK repeats.
        seq: u32,
    },
}

/// What an outbound INVITE's transaction heard, for its owner.
pub(crate) enum Progress {
    /// Nothing to act on (100 Trying; a 2xx again, acknowledged).
    Nothing,
    /// A 180 or 183: the target rings (`first`: the first time), with the
    /// SDP of its early media if it sent some (RFC 3960).
    Ringing {
        status: u16,
        first: bool,
        early: Option<Bytes>,
    },
    /// A trunk's challenge (`status`, 401 or 407) was answered: the
    /// INVITE went out again with its credentials and rings on.
    Challenged { status: u16 },
    /// It did not answer: the final status (408 for no final response,
    /// 503 for a transport error).
    Failed(u16),
    /// It answered (ACKed): its dialog and the body of its 2xx (our
    /// offer's answer).
    Answered { leg: Box<SipLeg>, body: Bytes },
    /// Its 2xx came again after the bridged party took its dialog: that
    /// party acknowledges it, with this CSeq number.
    AnsweredAgain { seq: u32 },
}

impl Outbound {
    /// Sends `invite` (our offer on `media`, the target's own) to `dest`
    /// as branch `id` of the call whose queue is `events`: its Call-ID is
    /// filed in the dialog table (and the call's `trace`), and a task
    /// feeds the transaction's events to the call as
    /// `CallEvent::Branch`. `None` when it could not go.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        inner: &Arc<Inner>,
        events: &EventTx,
        id: u32,
        dest: Destination,
        invite: Request,
        media: Box<MediaEndpoint>,
        trunk_channel: Option<ChannelSeized>,
        trace: Option<&Arc<pbx::CallTrace>>,
    ) -> Option<Outbound> {
        let call_id = invite.call_id()?.to_owned();
        // A callee that is one of our extensions may re-authenticate from
        // a new address; any other must keep signalling from where we sent.
        let callee = inner
            .extensions
            .load()
            .contains_key(&dest.label)
            .then(|| dest.label.clone());
        if !inner.dialogs.insert(
            call_id.clone(),
            events.clone(),
            Side::Outbound(id),
            dest.addr.ip(),
            callee,
        ) {
            return None;
        }
        if let Some(t) = trace {
            inner.traces.add_leg(t, &call_id);
        }
        let ctx = match inner
            .endpoint
            .invite(invite, dest.transport, dest.addr)
            .await
        {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::info!(to = %dest.addr, error = %e, "dial: cannot send INVITE");
                inner.dialogs.remove(&call_id);
                return None;
            }
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let sent = ctx.request().cloned().map(Box::new);
        tokio::spawn(branch_task(id, Box::new(ctx), events.clone(), cancel_rx).in_current_span());
        Some(Outbound {
            id,
            dest,
            invite: sent,
            call_id,
            cancel: Some(cancel_tx),
            done: false,
            acked: None,
            rang: false,
            authed: false,
            trunk_channel,
            media: Some(media),
        })
    }

    /// What `event` of its INVITE's transaction means for the owner; the
    /// SIP it asks for (ACK, the challenge's answer) is sent here.
    pub async fn on_event(
        &mut self,
        inner: &Arc<Inner>,
        events: &EventTx,
        event: InviteEvent,
    ) -> Progress {
        let response = match event {
            InviteEvent::Response(r) => r,
            InviteEvent::Timeout => return self.failed(408),
            InviteEvent::TransportError => return self.failed(503),
            _ => return self.failed(500),
        };
        let status = response.status;
        if status == 100 {
            return Progress::Nothing;
        }
        if status < 200 {
            let first = !self.rang;
            self.rang = true;
            let early = (!response.body.is_empty()).then_some(response.body);
            return Progress::Ringing {
                status,
                first,
                early,
            };
        }
        if (status == 401 || status == 407) && self.answer_challenge(inner, events, &response).await
        {
            return Progress::Challenged { status };
        }
        if status >= 300 {
            return self.failed(status);
        }
        self.answered(inner, *response)
    }

    fn failed(&mut self, status: u16) -> Progress {
        self.done = true;
        self.cancel = None;
        self.invite = None;
        Progress::Failed(status)
    }

    /// A 2xx: ACKed (again, when it repeats), and the first one's dialog
    /// as the answered party's leg.
    fn answered(&mut self, inner: &Arc<Inner>, response: Response) -> Progress {
        self.done = true;
        match &mut self.acked {
            Some(Acked::Own(dialog)) => {
                let seq = dialog.local_cseq;
                let ack = dialog.request(Method::Ack, None, Some(seq));
                send_stateless(inner, ack, dialog.transport, dialog.peer);
                return Progress::Nothing;
            }
            Some(Acked::Bridged { seq }) => return Progress::AnsweredAgain { seq: *seq },
            None => {}
        }
        let Some(invite) = self.invite.take() else {
            return Progress::Nothing;
        };
        let Some(mut dialog) = Dialog::uac(&invite, &response, self.dest.transport, self.dest.addr)
        else {
            return Progress::Nothing;
        };
        let seq = dialog.local_cseq;
        let ack = dialog.request(Method::Ack, None, Some(seq));
        send_stateless(inner, ack, dialog.transport, dialog.peer);
        self.acked = Some(Acked::Own(Box::new(dialog.clone())));
        let leg = SipLeg::new(
            inner.clone(),
            dialog,
            "outbound",
            LegState::Up,
            our_contact(inner, self.dest.transport, self.dest.addr),
            allows(&response.headers, "UPDATE"),
        );
        Progress::Answered {
            leg: Box::new(leg),
            body: response.body,
        }
    }

    /// A trunk target got 401/407: its INVITE goes again, once, with the
    /// trunk's credentials. `true` when it went out.
    async fn answer_challenge(
        &mut self,
        inner: &Arc<Inner>,
        events: &EventTx,
        response: &Response,
    ) -> bool {
        let Some(t) = &self.dest.trunk else {
            return false;
        };
        if self.authed {
            return false;
        }
        let (Some(user), Some(password)) = (t.trunk.auth_user(), t.trunk.password.as_deref())
        else {
            return false;
        };
        let Some(sent) = self.invite.as_ref() else {
            return false;
        };
        let uri = sent.uri.to_string();
        let Some((name, value)) = authorization(response, "INVITE", &uri, user, password) else {
            return false;
        };
        let mut invite = (**sent).clone();
        let seq = invite.headers.cseq().map_or(1, |c| c.seq) + 1;
        invite.headers.remove(&HeaderName::Via);
        invite
            .headers
            .set(HeaderName::CSeq, format!("{seq} INVITE"));
        invite.headers.push(name, value);
        let (transport, addr) = (self.dest.transport, self.dest.addr);
        self.authed = true;
        let ctx = match inner.endpoint.invite(invite, transport, addr).await {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::info!(to = %addr, error = %e, "dial: cannot send the authenticated INVITE");
                return false;
            }
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.invite = ctx.request().cloned().map(Box::new);
        self.cancel = Some(cancel_tx);
        tokio::spawn(
            branch_task(self.id, Box::new(ctx), events.clone(), cancel_rx).in_current_span(),
        );
        true
    }

    /// Stops it ringing: CANCEL once it has rung (its task sends it when
    /// the first provisional response comes, if none has yet).
    pub fn cancel(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }

    /// It is done without an answer (or was given up): its media goes.
    pub fn give_up(&mut self) {
        self.done = true;
        self.media = None;
    }

    /// Gives back the trunk channel it holds (a trunk that failed).
    pub fn release_trunk(&mut self) {
        self.trunk_channel = None;
    }

    /// The party it reached is bridged and owns the dialog now: a 2xx
    /// again is acknowledged from there ([`Progress::AnsweredAgain`]).
    pub fn hand_over_dialog(&mut self) {
        if let Some(Acked::Own(dialog)) = &self.acked {
            self.acked = Some(Acked::Bridged {
                seq: dialog.local_cseq,
            });
        }
    }

    /// Takes its Call-ID out of the dialog table, if it is still the
    /// call's (`events`): a party that answered took its dialog along.
    pub fn forget(&self, inner: &Inner, events: &EventTx) {
        inner.dialogs.remove_owned(&self.call_id, events);
    }

    /// What the admin API shows of it while it rings.
    pub fn snapshot(&self) -> RingingSnapshot {
        let dest = &self.dest;
        RingingSnapshot {
            target: dest.label.clone(),
            contact: dest.uri.to_string(),
            address: format!("{}:{}", dest.transport, dest.addr),
            state: if self.rang {
                LegState::Ringing
            } else {
                LegState::Calling
            },
            dialog: pbx::DialogIds {
                call_id: self.call_id.clone(),
                local_tag: self
                    .invite
                    .as_ref()
                    .and_then(|i| i.headers.from().ok())
                    .and_then(|f| f.tag().map(str::to_owned))
                    .unwrap_or_default(),
                remote_tag: None,
            },
        }
    }
}
