//! A dial's confirmation (`DialRequest::confirm`, follow-me's "press 1 to
//! accept"): the party that answers is not put through at once. On its
//! own media (each target of a dial has its own ports) it hears the prompt
//! and its keys are read, on a task of its own so the call keeps handling
//! its events (the caller hears ringback, or its phone's own, meanwhile,
//! and the other targets ring on: each that answers is asked too). The
//! task reports back with [`CallEvent::Confirmed`]: the first key pressed
//! puts the caller through and the others asked get BYE; anything else
//! hangs up on that party, which counts as not answering (408).

use std::time::Duration;

use pbx::DialConfirm;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Call, CallEvent};
use crate::anchor::{CallMedia, MediaEndpoint};
use crate::leg::SipLeg;

/// How much longer than the prompt and the wait a confirmation may take
/// before the dial gives up on it.
const MARGIN: Duration = Duration::from_secs(5);

/// The answered party being asked to confirm. Dropped without being put
/// through (the dial timed out, the caller left), it gets BYE.
pub(crate) struct Confirming {
    id: u32,
    leg: Option<SipLeg>,
    label: String,
    answered_at: String,
    task: JoinHandle<()>,
}

/// A confirming party's media on its way back to the call (opaque in the
/// event's `Debug`).
pub(crate) struct ConfirmMedia(pub(crate) Option<Box<MediaEndpoint>>);

impl std::fmt::Debug for ConfirmMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmMedia")
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(leg) = &mut self.leg {
            leg.bye();
        }
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
        if self.a.leg.state == pbx::LegState::Up && !self.media.is_ringback() {
            // Answered already (a voice menu): ringback while it confirms
            // (its early media, if it was heard, is over).
            self.media.ringback().await;
        }
        self.note(|| {
            format!(
                "answered by {label} at {answered_at}: asking it to press {}",
                confirm.key
            )
        });
        let media = CallMedia::alone(self.inner.media.clone(), party);
        let task = tokio::spawn(ask(id, media, confirm.clone(), self.events_tx.clone()));
        if let Some(dialing) = self.phase.dialing_mut() {
            // The confirmation gets its own time, whatever was left to ring.
            let until =
                std::time::Instant::now() + confirm.prompt.duration() + confirm.timeout + MARGIN;
            dialing.set_deadline(dialing.deadline().max(until));
            dialing.driver.confirming.push(Confirming {
                id,
                leg: Some(leg),
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
        party: Option<Box<MediaEndpoint>>,
    ) {
        let Some(mut confirming) = self.phase.dialing_mut().and_then(|d| {
            let i = d.driver.confirming.iter().position(|c| c.id == id)?;
            Some(d.driver.confirming.swap_remove(i))
        }) else {
            return; // the dial is over: the party had its BYE
        };
        if !accepted {
            self.note(|| format!("{} did not confirm: hung up", confirming.label));
            drop(confirming); // BYE
            drop(party); // its ports
            self.branch_failed(id, 408);
            return;
        }
        let (Some(leg), Some(party)) = (confirming.leg.take(), party) else {
            drop(confirming);
            self.branch_failed(id, 500);
            return;
        };
        let label = std::mem::take(&mut confirming.label);
        let answered_at = std::mem::take(&mut confirming.answered_at);
        drop(confirming);
        self.note(|| format!("{label} confirmed"));
        let heard = self.phase.dialing_mut().and_then(|d| d.driver.heard.take());
        let previous = self.media.attach_callee(party).await;
        if let (Some(before), Some(previous)) = (heard, previous)
            && let Some(b) = self.branches.get_mut(&before)
        {
            // An early-media party still ringing: cancelled with the rest.
            b.media = Some(previous);
        }
        self.put_through(id, leg, label, answered_at, None).await;
    }
}

/// Plays the prompt to the answered party (its media's caller side) and
/// waits for the key: during the prompt, or `timeout` after it. Reports
/// the result with the media back to the call.
async fn ask(id: u32, mut media: CallMedia, confirm: DialConfirm, events: crate::queue::EventTx) {
    let mut digits = media.caller_digits();
    let (done, mut played) = oneshot::channel();
    media.play(confirm.prompt.clone(), done).await;
    let cap = confirm.prompt.duration() + confirm.timeout + MARGIN;
    let mut deadline = tokio::time::Instant::now() + cap;
    let mut prompt_over = false;
    let accepted = loop {
        tokio::select! {
            _ = &mut played, if !prompt_over => {
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
            () = tokio::time::sleep_until(deadline) => break false,
        }
    };
    media.stop_playing().await;
    let _ = events
        .send(CallEvent::Confirmed {
            id,
            accepted,
            media: Box::new(ConfirmMedia(media.into_party().await)),
        })
        .await;
}
