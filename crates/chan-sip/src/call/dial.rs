//! A dial (RFC 3261 §16.7-style forking done as a B2BUA, each fork a UAC
//! INVITE of §13.2): the route's targets resolved and an INVITE sent to
//! each with an SDP offer on its own media (ports), their provisional
//! answers (ringing, early media, RFC 3960) passed to the caller (the
//! fork whose early media it hears lends the call its leg), the first
//! 2xx put through and bridged while the others get CANCEL (§9.1), and
//! the dial's end when none answers.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use pbx::{ActionError, DialOutcome, DialRequest, DialStatus, Disposition, LegState};
use sip_net::InviteEvent;
use sip_proto::{HeaderName, Headers, Method, Request};
use tokio::sync::oneshot;

use super::{Bridge, Call, Dial, Dialing, transfer, trunkdial};
use crate::Side;
use crate::anchor::{Failure, MediaEndpoint, Settled};
use crate::channel::SipChannel;
use crate::dialog::new_tag;
use crate::leg::{SipLeg, our_contact};
use crate::outbound::{Outbound, Progress};
use crate::relay::{send_stateless, set_body};
use crate::target::{self, Destination};

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

impl Call {
    /// `call:dial{}`: the targets resolved to contacts (or trunks) and an
    /// INVITE sent to each; the call enters `Dialing`, and `done` hears
    /// how the dial ended (or, answered, when its bridge ends).
    pub(super) async fn dial(
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
        let timeout = request.timeout.unwrap_or(self.inner.config.ring_timeout);
        let mut trunks = trunkdial::Failover::split(&mut destinations, &request, timeout);
        // Each target its own media and offer; a failover list's trunks
        // share the first's (tried one at a time).
        let mut no_media = None;
        for dest in destinations {
            match self.start_target(dest, &request, &mut trunks).await {
                Ok(Some(id)) => started.push(id),
                Ok(None) => codes.push(503),
                Err(failure) => {
                    tracing::warn!("dial: {}", failure.text());
                    codes.push(failure.status());
                    no_media = Some(failure);
                }
            }
        }
        // A trunk of a failover list that could not be tried: the next one.
        while started.is_empty()
            && let Some(list) = trunks.as_mut().filter(|l| !l.rest.is_empty())
        {
            let next = list.rest.remove(0);
            match self.start_target(next, &request, &mut trunks).await {
                Ok(Some(id)) => started.push(id),
                Ok(None) | Err(_) => codes.push(503),
            }
        }
        if started.is_empty()
            && let Some(failure) = no_media
        {
            // No ports for media: the dial failed here, not at the targets.
            let _ = done.send(Ok(DialOutcome {
                status: DialStatus::Failed,
                code: failure.status(),
                answered_by: None,
            }));
            return;
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
        if self.a.leg().state == LegState::Up
            && self.phase.bridge().is_none()
            && self.media.held_by().is_none()
        {
            // Answered by the dialplan (an IVR transferring): the caller
            // hears ringback, not silence, while the targets ring. One the
            // dialplan holds (`call:hold`, a queue ringing its agents)
            // keeps hearing its music.
            self.lend_parties();
            self.media.ringback().await;
        }
        let mut dialing = Dialing::new(
            done,
            Instant::now() + timeout,
            started,
            Dial {
                early: None,
                heard: None,
                trunks,
                confirm,
                confirming: Vec::new(),
            },
        );
        for code in codes {
            dialing.failed(code);
        }
        self.enter_dialing(Box::new(dialing));
    }

    /// The display name and user of an outbound INVITE's From: the
    /// dialplan's `caller_id` (`"1000"` or `"Reception <1000>"`) when set,
    /// else the authenticated extension's id and configured name. `None`
    /// for a caller ID that cannot be a SIP user.
    pub(super) fn outbound_identity(
        &self,
        caller_id: Option<&str>,
    ) -> Option<(Option<String>, String)> {
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
                    .or_else(|| self.record.caller().map(str::to_owned))
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

    /// Media for a dial's target `dest`: its own ports, our offer to it
    /// (a trunk's codecs only, when it names them).
    pub(super) fn target_media(
        &self,
        dest: &Destination,
    ) -> Result<(Box<MediaEndpoint>, Bytes), Failure> {
        let ip = self
            .inner
            .endpoint
            .local_addr_for(dest.transport, dest.addr)
            .map(|a| a.ip());
        let only = dest.trunk.as_ref().and_then(|t| t.trunk.codecs.as_deref());
        let prefer = self.a.party.preferred();
        self.media.callee_endpoint(ip, only, &prefer)
    }

    /// Starts a branch to `dest` on media of its own (a failover list,
    /// if any, keeps the offer for the trunks after it): the branch, or
    /// `None` when its INVITE could not go; `Err` when no media could be
    /// had.
    async fn start_target(
        &mut self,
        dest: Destination,
        request: &DialRequest,
        trunks: &mut Option<Box<trunkdial::Failover>>,
    ) -> Result<Option<u32>, Failure> {
        let (party, offer) = self.target_media(&dest)?;
        if let Some(list) = trunks {
            list.offer = offer.clone();
        }
        Ok(self.start_branch(dest, request, &offer, party).await)
    }

    /// Branch `id`'s answer to our offer (`body`, in a 18x, or its 2xx
    /// when `last`; its SIP from `peer`) settled on its own media, which
    /// becomes what the caller hears: its leg is lent to the call (the
    /// branch heard before gets its own back), or, heard already, it
    /// goes on in the codec the answer settled. `Err` when the answer
    /// cannot be used (RFC 3264 §6: it had to accept our offer) or the
    /// branch has no media (any more).
    async fn hear_branch(
        &mut self,
        id: u32,
        body: &[u8],
        peer: IpAddr,
        last: bool,
    ) -> Result<(), Failure> {
        let party = self
            .branches
            .get_mut(&id)
            .and_then(|b| b.media.as_deref_mut())
            .ok_or_else(|| Failure::NoPorts("the target's media is gone".into()))?;
        party.set_signalling(peer);
        let stream = party.read_answer(body)?;
        let settled = party.settle(&stream)?;
        if last {
            party.withdraw_offer();
        }
        let heard = self.phase.dialing().and_then(|d| d.driver.heard);
        if heard == Some(id) {
            if settled == Settled::Restart {
                // Its leg, lent, goes back to its endpoint for the new
                // codec and is lent again.
                self.lend_parties();
                let suspended = self.media.suspend().await;
                self.settle_heard(id);
                self.lend_parties();
                self.media.go_on(suspended).await;
            }
            return Ok(());
        }
        self.lend_parties();
        let previous = self.media.return_callee().await;
        if let (Some(before), Some(leg)) = (heard, previous)
            && let Some(party) = self
                .branches
                .get_mut(&before)
                .and_then(|b| b.media.as_mut())
        {
            party.park_leg(leg);
        }
        if let Some(leg) = self
            .branches
            .get_mut(&id)
            .and_then(|b| b.media.as_mut())
            .and_then(|m| m.take_leg())
        {
            self.media.lend_callee(leg);
        }
        if let Some(dialing) = self.phase.dialing_mut() {
            dialing.driver.heard = Some(id);
        }
        Ok(())
    }

    /// Gives the heard branch `id` its leg back when nothing runs on it,
    /// and lends it again (set to what its SDP settled on meanwhile).
    fn settle_heard(&mut self, id: u32) {
        if let Some(leg) = self.media.idle_callee()
            && let Some(party) = self.branches.get_mut(&id).and_then(|b| b.media.as_mut())
        {
            party.park_leg(leg);
            if let Some(leg) = party.take_leg() {
                self.media.lend_callee(leg);
            }
        }
    }

    /// Branch `id`'s media, its leg back from the call if it was heard,
    /// for a party that leaves the fork with it (a confirmation, the next
    /// trunk of a failover list).
    pub(super) async fn take_branch_media(&mut self, id: u32) -> Option<Box<MediaEndpoint>> {
        let mut party = self.branches.get_mut(&id).and_then(|b| b.media.take())?;
        if let Some(dialing) = self.phase.dialing_mut()
            && dialing.driver.heard == Some(id)
        {
            dialing.driver.heard = None;
            self.lend_parties();
            if let Some(leg) = self.media.return_callee().await {
                party.park_leg(leg);
            }
        }
        Some(party)
    }

    /// Sends one outbound INVITE with `offer` (made on `media`, the
    /// target's own) and starts the task that reads its responses.
    pub(super) async fn start_branch(
        &mut self,
        dest: Destination,
        request: &DialRequest,
        offer: &Bytes,
        media: Box<MediaEndpoint>,
    ) -> Option<u32> {
        let inner = &self.inner;
        let domain = &inner.config.domain;
        let max_forwards = self.a.max_forwards.saturating_sub(1).min(70);
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
        let trace = self.record.trace();
        let branch = Outbound::start(
            &self.inner,
            &self.events_tx,
            id,
            dest,
            invite,
            media,
            trunk_channel,
            trace,
        )
        .await?;
        self.branches.insert(id, Box::new(branch));
        Some(id)
    }

    /// What branch `id`'s INVITE heard (its SIP done by the branch:
    /// ACKs, a trunk's challenge): the caller told it rings, the dial
    /// told it failed, or the answer put through.
    pub(super) async fn on_branch(&mut self, id: u32, event: InviteEvent) {
        let Some(branch) = self.branches.get_mut(&id) else {
            return;
        };
        let peer = branch.dest.addr.ip();
        match branch.on_event(&self.inner, &self.events_tx, event).await {
            Progress::Nothing => {}
            Progress::Ringing {
                status,
                first,
                early,
            } => self.on_ringing(id, status, first, early, peer).await,
            Progress::Challenged { status } => {
                let trunk = self.branches.get(&id).map(|b| b.dest.label.clone());
                self.note(|| {
                    format!(
                        "{status} challenged with {}; sent again with credentials",
                        trunk.unwrap_or_default()
                    )
                });
            }
            Progress::Failed(status) => self.on_branch_failed(id, status).await,
            Progress::AnsweredAgain { seq } => {
                // The party may have moved on (a transfer): then its new
                // owner has the dialog, and the 2xx goes unanswered.
                if let Some(b) = self.phase.bridge_mut().filter(|b| b.branch == id) {
                    let dialog = &mut b.leg.leg.dialog;
                    let ack = dialog.request(Method::Ack, None, Some(seq));
                    send_stateless(&self.inner, ack, dialog.transport, dialog.peer);
                }
            }
            Progress::Answered { leg, body } => self.on_answered(id, *leg, body).await,
        }
    }

    /// Branch `id` rings (18x): the caller rings too, hearing its early
    /// media if it sent some (or, answered by the dialplan already,
    /// hearing it instead of our ringback).
    async fn on_ringing(
        &mut self,
        id: u32,
        status: u16,
        first: bool,
        early: Option<Bytes>,
        peer: IpAddr,
    ) {
        if first {
            // The admin API shows which contacts are ringing.
            self.publish();
        }
        let Some(dialing) = self.phase.dialing_mut().filter(|d| d.is_target(id)) else {
            return;
        };
        dialing.ringing();
        if !self.a.party.invite.is_answered() {
            // Early media: the callee's answer anchored, ours to the
            // caller, bridged at once.
            let ours = match &early {
                Some(body) => self.early_media(id, body, peer).await,
                None => None,
            };
            let mut out = self.a.party.invite.response(status);
            set_body(
                &mut out.headers,
                &mut out.body,
                ours.map(|b| ("application/sdp".to_owned(), b)),
            );
            self.a.party.invite.respond(out);
            self.a.leg_mut().state = LegState::Ringing;
        } else if let Some(body) = early {
            self.early_after_answer(id, &body, peer).await;
        }
    }

    /// Branch `id` did not answer (`status`): the next trunk of a
    /// failover list, or the fork is one target fewer (its early media
    /// replaced by our ringback).
    async fn on_branch_failed(&mut self, id: u32, status: u16) {
        let was_early = self
            .phase
            .dialing()
            .is_some_and(|d| d.driver.early == Some(id));
        if self.fail_over(id, Some(status)).await {
            return;
        }
        self.branch_failed(id, status);
        if was_early && let Some(dialing) = self.phase.dialing_mut() {
            // Its early media is gone and others still ring: back to
            // our ringback.
            dialing.driver.early = None;
            self.lend_parties();
            self.media.ringback().await;
        }
    }

    /// Branch `id` answered (`leg`, ACKed; `body`, its answer to our
    /// offer): asked to confirm, or put through as the bridged party's
    /// channel with its own media; a late answer gets BYE.
    async fn on_answered(&mut self, id: u32, mut leg: SipLeg, body: Bytes) {
        let wins = !self.phase.is_ended()
            && self.phase.bridge().is_none()
            && self
                .phase
                .dialing()
                .is_some_and(|d| d.is_target(id) && !d.is_picked());
        let Some(branch) = self.branches.get(&id).filter(|_| wins) else {
            // A second answer (a fork that answered too late, or after the
            // caller left): it has a dialog now, so end it with BYE.
            leg.bye();
            return;
        };
        let label = branch.dest.label.clone();
        let answered_at = format!("{}:{}", branch.dest.transport, branch.dest.addr);
        if self
            .phase
            .dialing()
            .is_some_and(|d| d.driver.confirm.is_some())
        {
            // Asked to confirm on its own media, while the others ring on
            // (and may answer, and be asked, too).
            self.start_confirm(id, leg, &body, label, answered_at).await;
            return;
        }
        // Its answer settled on its own media, which it takes along as the
        // bridged party's channel (its leg lent to the call).
        let peer = leg.dialog.peer.ip();
        if let Err(failure) = self.hear_branch(id, &body, peer, true).await {
            tracing::info!(callee = %label, "dial: unusable SDP answer: {}", failure.text());
            leg.bye();
            self.branch_failed(id, failure.status());
            return;
        }
        if let Some(dialing) = self.phase.dialing_mut() {
            dialing.driver.heard = None;
        }
        let media = self.branches.get_mut(&id).and_then(|b| b.media.take());
        if let Some(media) = media.as_deref() {
            media.answered();
        }
        // Its dialog's requests stay on this call's queue, served
        // through the channel, until it leaves (`take_bridge`).
        let events = self.events_tx.clone();
        let channel = SipChannel::owned(self.inner.clone(), leg, media, events, Side::Outbound(id));
        self.put_through(id, channel, label, answered_at).await;
    }

    /// The branch `id` answered and the caller is put through to it (its
    /// `channel`, with its media): the others stop ringing, the dial
    /// becomes the bridge, the caller is answered if need be.
    pub(super) async fn put_through(
        &mut self,
        id: u32,
        mut channel: SipChannel,
        label: String,
        answered_at: String,
    ) {
        let Some(dialing) = self.leave_dialing() else {
            return;
        };
        // Noted before the CANCELs: their branch tasks send (and trace)
        // them at once, and the ladder reads answer first, then CANCEL.
        self.note(|| format!("answered by {label} at {answered_at}"));
        // The others stop ringing (and give their ports back).
        for other in dialing.targets() {
            if *other != id
                && let Some(b) = self.branches.get_mut(other)
            {
                b.media = None;
                b.cancel();
            }
        }
        self.record.set_callee(Some(label.clone()));
        if let Some(leg) = pbx::Channel::take_media(&mut channel) {
            self.media.lend_callee(leg);
        }
        // Filed (in `bridge_with`) before the caller hears the 200, so
        // anyone the caller tells sees the bridge.
        self.bridge_with(Bridge {
            branch: id,
            leg: channel,
            done: Some(dialing.into_done()),
            answered_by: Some(label),
        });
        // Its dialog is the bridged leg's now: a 2xx again is acknowledged
        // from there.
        if let Some(b) = self.branches.get_mut(&id) {
            b.hand_over_dialog();
        }
        if self.answer_and_bridge().await {
            // A transfer's target answered: the transferor is released.
            self.transfer_connected();
        }
    }

    /// The bridged party is in place: the caller is answered if it is not
    /// yet (our SDP), and their media joined. `false` when the caller's
    /// media cannot be answered (the call is over then).
    pub(super) async fn answer_and_bridge(&mut self) -> bool {
        if self.a.leg().state != LegState::Up {
            // The callee's codec first: no transcoding when the caller has it.
            let prefer = self.media.callee_codec();
            if let Err(failure) = self.a.party.answer_preferring(&prefer) {
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.leg.bye();
                }
                self.finish(Disposition::Failed, failure.status(), "media");
                return false;
            }
            self.record.answered();
            self.publish();
        }
        self.bridge_media().await;
        true
    }

    /// A branch of the dial ended without an answer; the dial ends when
    /// every branch has.
    pub(super) fn branch_failed(&mut self, id: u32, status: u16) {
        if let Some(b) = self.branches.get_mut(&id) {
            b.give_up();
        }
        if let Some(dialing) = self.phase.dialing_mut()
            && dialing.is_target(id)
            && !dialing.is_picked()
        {
            dialing.failed(status);
            let all_done = dialing.driver.confirming.is_empty()
                && dialing
                    .targets()
                    .iter()
                    .all(|b| self.branches.get(b).is_none_or(|b| b.done));
            if all_done {
                let outcome = dialing.unanswered();
                self.end_dial(outcome);
            }
        }
    }

    /// A callee's early answer (18x): its side anchored, the caller's
    /// answer made, both joined so the caller hears the callee's tones.
    /// Early media (a 180/183 with SDP) from branch `id` while the caller
    /// was answered by the dialplan already: the caller hears the callee's
    /// media (a carrier's announcement, a remote ringback) instead of ours.
    async fn early_after_answer(&mut self, id: u32, body: &Bytes, peer: IpAddr) {
        if self.hear_branch(id, body, peer, false).await.is_err() {
            return;
        }
        self.lend_parties();
        self.media.bridge().await;
        if let Some(dialing) = self.phase.dialing_mut() {
            dialing.driver.early = Some(id);
        }
        self.note(|| "early media from the callee replaces the ringback".to_owned());
    }

    async fn early_media(&mut self, id: u32, body: &Bytes, peer: IpAddr) -> Option<Bytes> {
        self.hear_branch(id, body, peer, false).await.ok()?;
        let prefer = self.media.callee_codec();
        let ours = self.a.party.description(&prefer).ok()?;
        self.lend_parties();
        self.media.bridge().await;
        Some(ours)
    }

    pub(super) async fn on_dial_timeout(&mut self) {
        let ringing = self.phase.dialing().map(|d| d.targets().to_vec());
        if let Some(ringing) = ringing
            && let [only] = ringing.as_slice()
            && self
                .phase
                .dialing()
                .is_some_and(|d| d.driver.trunks.as_ref().is_some_and(|l| !l.rest.is_empty()))
        {
            // A trunk of a failover list did not answer in time: CANCEL it,
            // try the next.
            if let Some(b) = self.branches.get_mut(only) {
                b.done = true;
                b.cancel();
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

    /// The caller left while targets ring (CANCEL, or BYE on an early
    /// dialog): they stop ringing and the route's dial hears `Cancelled`.
    pub(super) fn abandon_dial(&mut self) {
        if let Some(dialing) = self.leave_dialing() {
            self.cancel_branches();
            dialing.finish(Ok(DialOutcome {
                status: DialStatus::Cancelled,
                code: 487,
                answered_by: None,
            }));
        }
    }

    pub(super) fn cancel_branches(&mut self) {
        for branch in self.branches.values_mut() {
            branch.cancel();
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
                    self.route.give_up();
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
            dialing.finish(Ok(outcome));
        }
        if !self.phase.is_ended() {
            self.publish();
        }
    }
}
