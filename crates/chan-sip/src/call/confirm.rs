//! A dial's confirmation (`DialRequest::confirm`, follow-me's "press 1 to
//! accept"): the party that answers is not put through at once. It
//! becomes a [`SipChannel`] of its own, on its own media (each target of a
//! dial has its own ports), served by a task of its own: it hears the
//! prompt and its keys are read, while its dialog is its own (a BYE ends
//! the question at once, a re-INVITE or UPDATE is answered by its own
//! media) and the call keeps handling its events (the caller hears
//! ringback, or its phone's own, meanwhile, and the other targets ring on:
//! each that answers is asked too). The task reports back with
//! [`CallEvent::Confirmed`]: the first key pressed puts the caller
//! through, the channel handed back to the call, and the others asked get
//! BYE; anything else hangs up on that party, which counts as not
//! answering (408).

use std::time::Duration;

use media::Player;
use pbx::{Channel, ChannelEvent, DialConfirm};
use tokio::task::JoinHandle;

use super::{Call, CallEvent};
use crate::channel::SipChannel;
use crate::leg::SipLeg;

/// How much longer than the prompt and the wait a confirmation may take
/// before the dial gives up on it.
const MARGIN: Duration = Duration::from_secs(5);

/// The answered party being asked to confirm, served by its task.
/// Dropped without being put through (the dial timed out, the caller
/// left), the task stops and the channel it holds hangs up (BYE).
pub(crate) struct Confirming {
    id: u32,
    label: String,
    answered_at: String,
    task: JoinHandle<()>,
}

/// A confirming party on its way back to the call (opaque in the event's
/// `Debug`): `None` when it hung up.
pub(crate) struct ConfirmMedia(pub(crate) Option<SipChannel>);

impl std::fmt::Debug for ConfirmMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmMedia")
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Call {
    /// Branch `id` answered a dial that wants confirmation (its 2xx
    /// carrying `answer`): its media, its own, goes to a task that plays
    /// the prompt and waits for the key. The other targets ring on; each
    /// that answers meanwhile is asked too, and the first to press the
    /// key is put through.
    pub(super) async fn start_confirm(
        &mut self,
        id: u32,
        mut leg: SipLeg,
        answer: &[u8],
        label: String,
        answered_at: String,
    ) {
        let Some(confirm) = self.phase.dialing().and_then(|d| d.driver.confirm.clone()) else {
            leg.bye();
            return;
        };
        let Some(mut party) = self.take_branch_media(id).await else {
            leg.bye();
            self.branch_failed(id, 500);
            return;
        };
        // An answer we cannot use is no answer (RFC 3264 §6).
        party.set_signalling(leg.dialog.peer.ip());
        let settled = party
            .read_answer(answer)
            .and_then(|stream| party.settle(&stream));
        if let Err(failure) = settled {
            tracing::info!(callee = %label, "dial: unusable SDP answer: {}", failure.text());
            leg.bye();
            self.branch_failed(id, 488);
            return;
        }
        party.withdraw_offer();
        party.answered();
        if self.a.leg().state == pbx::LegState::Up && !self.media.is_ringback() {
            // Answered already (a voice menu): ringback while it confirms
            // (its early media, if it was heard, is over).
            self.lend_parties();
            self.media.ringback().await;
        }
        self.note(|| {
            format!(
                "answered by {label} at {answered_at}: asking it to press {}",
                confirm.key
            )
        });
        // Its dialog is the channel's from now on (BYE, re-INVITE, INFO).
        let channel = SipChannel::new(self.inner.clone(), leg, Some(party));
        let task = tokio::spawn(ask(id, channel, confirm.clone(), self.events_tx.clone()));
        if let Some(dialing) = self.phase.dialing_mut() {
            // The confirmation gets its own time, whatever was left to ring.
            let until =
                std::time::Instant::now() + confirm.prompt.duration() + confirm.timeout + MARGIN;
            dialing.set_deadline(dialing.deadline().max(until));
            dialing.driver.confirming.push(Confirming {
                id,
                label,
                answered_at,
                task,
            });
        }
    }

    /// The confirmation of branch `id` ended: put through (the others
    /// being asked get BYE), or hung up on (and the dial goes on without
    /// it).
    pub(super) async fn on_confirmed(
        &mut self,
        id: u32,
        accepted: bool,
        channel: Option<SipChannel>,
    ) {
        let Some(mut confirming) = self.phase.dialing_mut().and_then(|d| {
            let i = d.driver.confirming.iter().position(|c| c.id == id)?;
            Some(d.driver.confirming.swap_remove(i))
        }) else {
            return; // the dial is over: the party had its BYE
        };
        // Its channel (its dialog, its media) becomes the bridged party.
        let channel = channel.filter(|c| accepted && c.media.is_some());
        let Some(channel) = channel else {
            self.note(|| format!("{} did not confirm: hung up", confirming.label));
            drop(confirming);
            self.branch_failed(id, 408);
            return;
        };
        let label = std::mem::take(&mut confirming.label);
        let answered_at = std::mem::take(&mut confirming.answered_at);
        drop(confirming);
        self.note(|| format!("{label} confirmed"));
        // An early-media party still ringing is heard no more: it is
        // cancelled with the rest.
        if self
            .phase
            .dialing_mut()
            .and_then(|d| d.driver.heard.take())
            .is_some()
        {
            self.lend_parties();
            drop(self.media.return_callee().await);
        }
        self.put_through(id, channel, label, answered_at).await;
    }
}

/// Plays the prompt to the answered party and waits for the key: during
/// the prompt, or `timeout` after it; serves the party's dialog
/// meanwhile. Reports the result to the call, with the channel when the
/// key was pressed (dropped otherwise: BYE).
async fn ask(
    id: u32,
    mut channel: SipChannel,
    confirm: DialConfirm,
    events: crate::queue::EventTx,
) {
    let cap = confirm.prompt.duration() + confirm.timeout + MARGIN;
    let mut deadline = tokio::time::Instant::now() + cap;
    let mut player = None;
    let mut digits = None;
    let mut prompt_over = false;
    if let Some(leg) = channel.take_media() {
        digits = Some(leg.handle().digits());
        player = Some(Player::start(leg, confirm.prompt.clone()));
    }
    let accepted = loop {
        tokio::select! {
            () = async {
                match player.as_mut() {
                    Some(p) => p.finished().await,
                    None => std::future::pending().await,
                }
            }, if !prompt_over => {
                prompt_over = true;
                deadline = deadline.min(tokio::time::Instant::now() + confirm.timeout);
            }
            key = async {
                match digits.as_mut() {
                    Some(d) => d.next().await,
                    None => std::future::pending().await,
                }
            } => match key {
                Some(key) if key.as_char() == confirm.key => break true,
                Some(_) => {}
                None => break false, // its leg is gone
            },
            event = channel.next_event() => match event {
                ChannelEvent::HungUp(_) => break false,
                // A key sent in SIP INFO counts as one sent in RTP.
                ChannelEvent::Digit(key) if key == confirm.key => break true,
                ChannelEvent::MediaChanged => {
                    // A new codec: the prompt goes on in it.
                    if let Some(p) = player.take()
                        && let Ok(leg) = p.stop().await
                    {
                        channel.give_media(leg);
                    }
                    if let Some(leg) = channel.take_media() {
                        player = Some(Player::start(leg, confirm.prompt.clone()));
                    }
                }
                _ => {}
            },
            () = tokio::time::sleep_until(deadline) => break false,
        }
    };
    if let Some(p) = player
        && let Ok(leg) = p.stop().await
    {
        channel.give_media(leg);
    }
    let channel = accepted.then_some(channel);
    let _ = events
        .send(CallEvent::Confirmed {
            id,
            accepted,
            media: Box::new(ConfirmMedia(channel)),
        })
        .await;
}
