//! Requests inside a call's dialogs (RFC 3261 §12.2.2), each served for
//! its own party by `party.rs` (as a `SipChannel` serves its own: media
//! is anchored, so the other phone is not asked), and what the call makes
//! of what its parties did: a hang-up ends the call, a hold plays music
//! to the other side, a new codec restarts the bridge, a keypress in INFO
//! crosses to the other side as it negotiated them (RFC 4733 events or
//! INFO), a REFER is a transfer (`transfer.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sip_net::InviteTx;
use sip_proto::{Method, Request};
use tokio::sync::oneshot;

use super::Call;
use crate::anchor::{DigitTo, Which};
use crate::party::{Changed, Served};
use crate::relay::set_body;
use crate::{Reply, Side};
use pbx::{Disposition, LegState};

// Which party a request is from, and its dialog served.
impl Call {
    /// The party of a dialog the call's queue gets requests for: the
    /// caller, or the bridged party; `None`: a fork that is not (or no
    /// longer) bridged.
    pub(super) fn which(&self, side: Side) -> Option<Which> {
        match side {
            Side::Inbound => Some(Which::A),
            Side::Outbound(id) if self.phase.bridge().is_some_and(|b| b.branch == id) => {
                Some(Which::B)
            }
            Side::Outbound(_) => None,
        }
    }

    /// A request (not INVITE or ACK) in a dialog of the call that no
    /// party's channel serves (the caller's and the bridged party's serve
    /// theirs, `Call::on_event`): a fork that is not (or no longer)
    /// bridged saying goodbye (200), or asking something (481).
    pub(super) fn on_fork_request(request: &Request, reply: oneshot::Sender<Reply>) {
        let status = if request.method == Method::Bye {
            200
        } else {
            481
        };
        let _ = reply.send(Reply::status(status));
    }

    /// A re-INVITE in a dialog of the call that no party's channel
    /// serves: 481 (RFC 3261 §12.2.2).
    pub(super) fn on_fork_reinvite(mut tx: InviteTx) {
        let r = tx.response(481);
        tx.respond(r);
    }

    /// What the call makes of what `which`'s phone did in its dialog.
    pub(super) async fn on_served(&mut self, which: Which, served: Served) {
        match served {
            Served::Nothing => {}
            Served::HungUp => self.on_hung_up(which),
            Served::Offer(changed) => {
                self.on_offer_changed(which, changed).await;
                // Given back its leg in the new codec, its channel has
                // sent our answer; a leg still away (a hold's music on
                // it) does not hold the answer any longer.
                self.send_held_answer(which);
            }
            Served::Digit(digit, duration) => {
                // To the other side as it negotiated keypresses, or to
                // `read_digits` when nobody is bridged.
                if !self.media.is_bridged() {
                    if which == Which::A {
                        self.push_caller_digit(digit);
                    }
                } else if let DigitTo::Info(to) = self.media.signalled_digit(which, digit, duration)
                {
                    self.send_info_digit(to, digit, duration);
                }
            }
            Served::Refer(refer, reply) => {
                self.on_refer(which == Which::B, refer, reply).await;
            }
        }
    }

    /// Sends our answer to `which`'s new offer if it is still held.
    fn send_held_answer(&mut self, which: Which) {
        match which {
            Which::A => self.a.leg_mut().send_held_answer(),
            Which::B => {
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.leg.send_held_answer();
                }
            }
        }
    }

    /// `which`'s phone hung up (BYE): the other party gets BYE (a dial
    /// still ringing is cancelled) and the call ends.
    fn on_hung_up(&mut self, which: Which) {
        match which {
            Which::B => {
                self.a.leg_mut().bye();
                self.finish(Disposition::Answered, 200, "callee");
            }
            Which::A => {
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.leg.bye();
                }
                let answered = self.record.was_answered();
                let disposition = if answered {
                    Disposition::Answered
                } else {
                    Disposition::Cancelled
                };
                self.abandon_dial();
                self.finish(disposition, if answered { 200 } else { 487 }, "caller");
            }
        }
    }

    /// Sends `digit` to `to`'s phone in an INFO (`application/dtmf-relay`),
    /// for a phone that negotiated no RFC 4733 events.
    pub(super) fn send_info_digit(&mut self, to: Which, digit: rtp::Digit, duration: Duration) {
        let leg = match to {
            Which::A => Some(self.a.leg_mut()),
            Which::B => self.phase.bridge_mut().map(|b| &mut b.leg.leg),
        };
        let Some(leg) = leg.filter(|leg| leg.state == LegState::Up) else {
            return;
        };
        let mut info = leg.dialog.request(Method::Info, None, None);
        let body = format!(
            "Signal={}\r\nDuration={}\r\n",
            digit.as_char(),
            duration.as_millis()
        );
        set_body(
            &mut info.headers,
            &mut info.body,
            Some(("application/dtmf-relay".to_owned(), body.into())),
        );
        // A phone pressing keys faster than the other answers INFO (or one
        // that never answers: 32 s each) must not grow the call's tasks
        // without bound: beyond a few unanswered, keypresses are dropped.
        let in_flight = self.info_in_flight.get_or_insert_with(Default::default);
        if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_INFO_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(digit = %digit, "keypress dropped: {MAX_INFO_IN_FLIGHT} INFOs unanswered");
            return;
        }
        let in_flight = in_flight.clone();
        let sent = leg.send(info);
        tokio::spawn(async move {
            let _ = sent.await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// What a phone's new offer changed, for the call's media. Hold with
    /// music (the way Asterisk and FreeSWITCH do it): a phone that holds
    /// (`sendonly`/`inactive`) while the other is up, and nobody holds
    /// yet, makes the other side hear the call's music on hold instead of
    /// silence, with no re-INVITE of its own; its resume joins them again.
    /// With no music class, the bridge goes on relaying what the holder
    /// sends (its own music, if it plays any). A new codec restarts what
    /// runs on the legs (the bridge transcodes if the sides now differ).
    async fn on_offer_changed(&mut self, which: Which, changed: Changed) {
        let mut restarted = false;
        if let Some(held) = changed.hold {
            self.publish();
            let other_up = match which {
                Which::A => self
                    .phase
                    .bridge()
                    .is_some_and(|b| b.leg.leg.state == LegState::Up),
                Which::B => self.a.leg().state == LegState::Up,
            };
            match (held, self.media.held_by()) {
                (true, None) if other_up => {
                    if let Some(music) = self.media.music(self.moh_class()) {
                        self.note(|| {
                            format!(
                                "{which:?} holds: music on hold \"{}\" to the other side",
                                self.moh_class()
                            )
                        });
                        // The other side's leg plays the music.
                        self.lend_callee();
                        self.lend_parties();
                        self.media.hold(which, music).await;
                        restarted = true;
                    }
                }
                (false, Some(holder)) if holder == which => {
                    self.note(|| format!("{which:?} resumes: bridged again"));
                    self.lend_callee();
                    self.lend_parties();
                    self.media.unhold().await;
                    restarted = true;
                }
                _ => {}
            }
        }
        if changed.restart && !restarted {
            match which {
                Which::A => self.restart_caller().await,
                Which::B => self.restart_callee().await,
            }
        }
    }
}

/// Keypresses sent in INFO to one call's parties and not yet answered,
/// beyond which more are dropped.
const MAX_INFO_IN_FLIGHT: u8 = 8;
