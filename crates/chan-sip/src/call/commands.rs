//! The route's commands to its call ([`pbx::Command`], sent by the Lua
//! `call` object through [`pbx::CallHandle`]): ring, answer, reject,
//! redirect and hang up the caller (RFC 3261 §13.3.1: the UAS's
//! provisional and final responses, §15 BYE), media actions on the
//! caller alone, dial, park and pickup; and what the route's end means
//! for the call.

use pbx::{ActionError, Command, Disposition, LegState, RouteEnd};
use sip_proto::Uri;

use super::{Call, Phase};

impl Call {
    pub(super) async fn on_command(&mut self, command: Command) {
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
                Ok(()) => {
                    self.lend_parties();
                    self.media.play(prompt, done).await;
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Command::Record { limits, done } => {
                let (max, silence) = *limits;
                let r = match self.own_media().await {
                    Ok(()) => {
                        self.lend_parties();
                        self.media.record(max, silence).await
                    }
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
                        self.lend_parties();
                        self.media.unhold().await;
                        self.lend_parties();
                        self.media.listen().await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = done.send(r);
            }
            Command::StopPlaying(done) => {
                self.lend_parties();
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

    pub(super) fn live(&self) -> Result<(), ActionError> {
        if self.phase.is_ended() {
            Err(ActionError::Ended)
        } else {
            Ok(())
        }
    }

    fn ring(&mut self) -> Result<(), ActionError> {
        self.live()?;
        // Answered already: nothing to ring.
        let _ = pbx::Channel::ring(&mut self.a.party);
        Ok(())
    }

    pub(super) async fn answer(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg().state == LegState::Up {
            return Ok(());
        }
        // The caller's channel answers (our SDP on its own media), or
        // refuses what it cannot answer.
        if let Err(e) = pbx::Channel::answer(&mut self.a.party).await {
            let (status, why) = match e {
                pbx::ChannelError::Media(status, why) => (status, why),
                other => (500, other.to_string()),
            };
            self.finish(Disposition::Failed, status, "media");
            return Err(ActionError::Failed(format!("cannot answer: {why}")));
        }
        self.record.answered();
        self.lend_parties();
        self.media.listen().await;
        if matches!(self.phase, Phase::Routing) {
            self.phase = Phase::Answered;
        }
        self.publish();
        Ok(())
    }

    /// The caller's media, answering first if need be (as Asterisk's
    /// Playback and Echo do); not while it is bridged to a callee.
    pub(super) async fn own_media(&mut self) -> Result<(), ActionError> {
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
        self.lend_parties();
        self.media.hold(crate::anchor::Which::B, music).await;
        Ok(())
    }

    async fn echo(&mut self) -> Result<(), ActionError> {
        self.own_media().await?;
        self.lend_parties();
        self.media.echo().await;
        Ok(())
    }

    async fn digits(&mut self) -> Result<media::Digits, ActionError> {
        self.own_media().await?;
        self.caller_digits()
            .ok_or_else(|| ActionError::Failed("the caller has no media".into()))
    }

    fn reject(&mut self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg().state == LegState::Up {
            return Err(ActionError::Failed(
                "the call is answered: use hangup() to end it".into(),
            ));
        }
        if !(300..=699).contains(&code) {
            return Err(ActionError::Failed(format!(
                "reject needs a final status 300-699, got {code}"
            )));
        }
        pbx::Channel::reject(&mut self.a.party, code, reason.as_deref(), None);
        let disposition = match code {
            486 | 600 | 603 => Disposition::Busy,
            _ => Disposition::Rejected,
        };
        self.finish(disposition, code, "dialplan");
        Ok(())
    }

    fn redirect(&mut self, uri: &str) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg().state == LegState::Up {
            return Err(ActionError::Failed(
                "the call is answered: it cannot be redirected".into(),
            ));
        }
        let uri = Uri::parse(uri.trim())
            .map_err(|e| ActionError::Failed(format!("redirect: bad URI {uri:?}: {e}")))?;
        let contact = format!("<{uri}>");
        pbx::Channel::reject(&mut self.a.party, 302, None, Some(&contact));
        self.finish(Disposition::Rejected, 302, "redirected");
        Ok(())
    }

    fn hangup(&mut self) -> Result<(), ActionError> {
        self.live()?;
        if self.a.leg().state == LegState::Up {
            self.a.leg_mut().bye();
            self.finish(Disposition::Answered, 200, "dialplan");
        } else {
            // What Asterisk and FreeSWITCH send for an unanswered hangup.
            pbx::Channel::reject(&mut self.a.party, 603, None, None);
            self.finish(Disposition::Rejected, 603, "dialplan");
        }
        Ok(())
    }

    pub(super) fn on_route_end(&mut self, end: RouteEnd) {
        if self.phase.is_ended() {
            return;
        }
        match end.verdict(self.a.leg().state == LegState::Up) {
            pbx::Verdict::HangUp { cause } => {
                self.a.leg_mut().bye();
                if let Some(b) = self.phase.bridge_mut() {
                    b.leg.leg.bye();
                }
                self.finish(Disposition::Answered, 200, &cause);
            }
            pbx::Verdict::Refuse {
                code,
                text,
                disposition,
                cause,
            } => {
                if let Some(dialing) = self.leave_dialing() {
                    self.cancel_branches();
                    drop(dialing);
                }
                let r = self.a.party.invite.response_with_warning(
                    code,
                    &self.inner.config.domain,
                    &text,
                );
                self.a.party.invite.respond(r);
                self.finish(disposition, code, cause);
            }
        }
    }
}
