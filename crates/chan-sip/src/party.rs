//! One party's own dialog (RFC 3261 §12.2.2): the requests its phone
//! sends inside it, answered for that party alone, whoever owns it (a
//! call's caller or bridged party, a [`SipChannel`](crate::channel::SipChannel)
//! parked or moving). Media is anchored, so no other phone is asked: a
//! new offer (re-INVITE §14, UPDATE RFC 3311) is answered against the
//! party's own [`MediaEndpoint`] (RFC 3264 §6, §8), with glare (491)
//! against our own re-INVITE; BYE ends it; an INFO keypress
//! (`application/dtmf-relay`, `application/dtmf`) is read; our 2xx is
//! kept until its ACK. What the owner must act on comes back as
//! [`Served`]: the same things a `pbx::ChannelEvent` says.

use std::time::Duration;

use sip_net::{Incoming, InviteTx};
use sip_proto::{HeaderName, Method, Request, Response, Uri};
use tokio::sync::oneshot;

use crate::Reply;
use crate::anchor::{Failure, MediaEndpoint, Settled};
use crate::leg::{HeldAnswer, SipLeg, offers_hold};

/// What a party's request came to, for its owner.
#[derive(Debug)]
pub(crate) enum Served {
    /// Answered; nothing for the owner to do.
    Nothing,
    /// BYE: the party hung up (answered 200; its leg is ended).
    HungUp,
    /// A new offer answered, or the answer to ours settled: what changed
    /// (a hold or resume, a codec that what runs on the leg must restart
    /// for).
    Offer(Changed),
    /// A keypress in INFO (answered 200), and how long it lasts.
    Digit(rtp::Digit, Duration),
    /// A REFER (RFC 3515), read (or why it could not be): a transfer is
    /// the owner's business, and so is the answer.
    Refer(Result<Box<Refer>, &'static str>, oneshot::Sender<Reply>),
}

/// A request (not INVITE or ACK) in the dialog of `leg`, whose media is
/// `media`: answered here except a REFER, which goes to the owner.
pub(crate) fn request(
    leg: &mut SipLeg,
    media: Option<&mut MediaEndpoint>,
    request: Request,
    reply: oneshot::Sender<Reply>,
) -> Served {
    if request.cseq().is_none() {
        let _ = reply.send(Reply::status(400));
        return Served::Nothing;
    }
    if let Err(status) = leg.admit(&request) {
        let _ = reply.send(Reply::status(status));
        return Served::Nothing;
    }
    match request.method {
        Method::Bye => {
            let _ = reply.send(Reply::status(200));
            leg.state = pbx::LegState::Ended;
            Served::HungUp
        }
        Method::Update if !request.body.is_empty() => {
            // A new offer in an UPDATE: answered as a re-INVITE's is (new
            // address, codec, hold).
            let (answer, changed) = answer_offer(leg, media, &request.body);
            let r = match answer {
                Ok(sdp) => Reply {
                    status: 200,
                    body: Some(("application/sdp".to_owned(), sdp)),
                    header: None,
                },
                Err(failure) => Reply::status(failure.status()),
            };
            if changed.restart {
                leg.hold_answer(HeldAnswer::Update { reply, answer: r });
            } else {
                let _ = reply.send(r);
            }
            Served::Offer(changed)
        }
        Method::Refer => Served::Refer(read_refer(&request).map(Box::new), reply),
        Method::Info => match read_info(&request) {
            Ok(Some((digit, duration))) => {
                let _ = reply.send(Reply::status(200));
                Served::Digit(digit, duration)
            }
            Ok(None) => {
                let _ = reply.send(Reply::status(200));
                Served::Nothing
            }
            Err(refused) => {
                let _ = reply.send(refused);
                Served::Nothing
            }
        },
        // A bare UPDATE (a session refresh, RFC 3311 §5.2) and the rest
        // are the dialog's alone: accepted.
        _ => {
            let _ = reply.send(Reply::status(200));
            Served::Nothing
        }
    }
}

/// A re-INVITE in the dialog of `leg`: answered for this party alone
/// (an offerless one gets our description as the offer, its answer
/// coming in the ACK, RFC 3264 §8.4), its 2xx kept until the ACK; 491
/// while a re-INVITE of ours is in progress (§14.2). `agent` signs a
/// Warning.
pub(crate) fn reinvite(
    leg: &mut SipLeg,
    media: Option<&mut MediaEndpoint>,
    incoming: Incoming,
    mut tx: InviteTx,
    agent: &str,
) -> Served {
    if let Err(status) = leg.admit(&incoming.request) {
        let r = tx.response(status);
        tx.respond(r);
        return Served::Nothing;
    }
    if leg.inviting() {
        tx.respond(glare(&tx));
        return Served::Nothing;
    }
    let (answer, changed) = answer_offer(leg, media, &incoming.request.body);
    let r = match answer {
        Ok(sdp) => {
            let mut r = tx.response(200);
            r.headers.push(HeaderName::Contact, leg.contact.as_str());
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = sdp;
            r
        }
        Err(failure) => failure.response(&tx, agent),
    };
    if changed.restart {
        let tx = Box::new(tx);
        leg.hold_answer(HeldAnswer::ReInvite { tx, ok: r });
    } else {
        tx.respond(r.clone());
        leg.keep_ok(tx.ok_resender(), &r, false);
    }
    Served::Offer(changed)
}

/// An ACK in the dialog of `leg`: the end of our 2xx's retransmissions,
/// and the answer to an offer the 2xx carried (a late offer, an
/// offerless re-INVITE). One for another dialog is ignored.
pub(crate) fn ack(
    leg: &mut SipLeg,
    media: Option<&mut MediaEndpoint>,
    request: &Request,
) -> Served {
    if !leg.dialog.matches(request) {
        return Served::Nothing;
    }
    leg.acked(request.cseq().map_or(0, |c| c.seq));
    answered(media, &request.body, "ACK")
}

/// The answer to our pending offer (`what` carried it; empty: none came,
/// and the offer is withdrawn). Ignored when we made none.
pub(crate) fn answered(media: Option<&mut MediaEndpoint>, body: &[u8], what: &str) -> Served {
    let Some(media) = media else {
        return Served::Nothing;
    };
    match media.ack_answer(body) {
        Ok(Settled::Done) => Served::Nothing,
        Ok(Settled::Restart) => Served::Offer(Changed {
            hold: None,
            restart: true,
        }),
        Err(failure) => {
            tracing::info!("{what}: {}", failure.text());
            Served::Nothing
        }
    }
}

/// A REFER read (RFC 3515): what it asks for, and how its outcome is
/// told.
#[derive(Debug)]
pub(crate) struct Refer {
    pub to: ReferTo,
    /// The implicit subscription's NOTIFYs are wanted (not RFC 4488's
    /// `Refer-Sub: false`).
    pub subscribed: bool,
    /// The REFER's CSeq: the NOTIFYs' `Event: refer;id=`.
    pub id: u32,
}

/// What a REFER asks for.
#[derive(Debug)]
pub(crate) enum ReferTo {
    /// Blind: route this number.
    Target(String),
    /// Attended (RFC 3891 `Replaces` in the Refer-To URI): join the other
    /// party with the one at the other end of this dialog of ours.
    Replaces(Replaced),
}

/// The dialog an RFC 3891 Replaces names: its Call-ID and tags.
#[derive(Debug, Clone)]
pub(crate) struct Replaced {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

/// Reads a REFER: what it asks for (an unreadable one: why, for a 400).
pub(crate) fn read_refer(request: &Request) -> Result<Refer, &'static str> {
    let to = refer_target(request)?;
    let subscribed = !request
        .headers
        .get(&HeaderName::parse("Refer-Sub"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    Ok(Refer {
        to,
        subscribed,
        id: request.cseq().map_or(0, |c| c.seq),
    })
}

/// A `%HH`-escaped URI header value, unescaped (RFC 3261 §19.1.2).
fn unescape(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The dialog a Refer-To's `?Replaces=` names.
fn refer_replaces(value: &str) -> Option<Replaced> {
    let mut headers = sip_proto::Headers::default();
    headers.push(HeaderName::Replaces, unescape(value)?);
    let replaces = headers.replaces().ok().flatten()?;
    Some(Replaced {
        to_tag: replaces.to_tag().unwrap_or_default().to_owned(),
        from_tag: replaces.from_tag().unwrap_or_default().to_owned(),
        call_id: replaces.call_id,
    })
}

/// What a Refer-To names: the extension or number (its user part), or
/// the dialog to replace.
fn refer_target(request: &Request) -> Result<ReferTo, &'static str> {
    let refer_to = request
        .headers
        .refer_to()
        .map_err(|_| "unreadable Refer-To")?
        .ok_or("no Refer-To")?;
    let user = match &refer_to.uri {
        Uri::Sip(s) => {
            if let Some((_, value)) = s
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("replaces"))
            {
                return refer_replaces(value)
                    .map(ReferTo::Replaces)
                    .ok_or("unreadable Replaces in Refer-To");
            }
            s.user.clone().unwrap_or_default()
        }
        Uri::Tel(t) => t.number.clone(),
        Uri::Other { .. } => return Err("Refer-To is neither sip: nor tel:"),
    };
    let user = user.split(';').next().unwrap_or_default().to_owned();
    if user.is_empty()
        || !user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#-_.".contains(&b))
    {
        return Err("Refer-To names no number");
    }
    Ok(ReferTo::Target(user))
}

/// What a party's new offer changed, for whoever runs media on its leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// The party put the call on hold (`true`) or took it off (`false`).
    pub hold: Option<bool>,
    /// Its codec changed: what runs on its leg must be restarted
    /// ([`Settled::Restart`]), the leg given back to its channel on the
    /// way; our answer waits for that ([`SipLeg::hold_answer`]).
    pub restart: bool,
}

/// A new offer from the party of `leg` (re-INVITE, UPDATE; empty: an
/// offerless re-INVITE, answered with our description again, RFC 3264
/// §8.4), answered against its own `media` alone (RFC 3264 §6, §8: media
/// is anchored, so no other party is asked): our answer, and what it
/// changed. For a channel and for a call's caller and bridged party alike.
pub(crate) fn answer_offer(
    leg: &mut SipLeg,
    media: Option<&mut MediaEndpoint>,
    body: &[u8],
) -> (Result<bytes::Bytes, Failure>, Changed) {
    let Some(media) = media else {
        let none = Failure::NotAcceptable("no media session to offer".into());
        return (Err(none), Changed::default());
    };
    let answer = if body.is_empty() {
        media
            .offer_again()
            .map(|sdp| (sdp, Settled::Done))
            .ok_or(Failure::NotAcceptable("no media session to offer".into()))
    } else {
        media.answer_alone(body)
    };
    let mut changed = Changed::default();
    if let Ok((_, settled)) = &answer {
        if let Some(held) = offers_hold(body)
            && held != leg.held
        {
            leg.held = held;
            changed.hold = Some(held);
        }
        changed.restart = *settled == Settled::Restart;
    }
    (answer.map(|(sdp, _)| sdp), changed)
}

/// Our answer to a re-INVITE that meets one of ours in the same dialog
/// (RFC 3261 §14.2): 491, to be tried again after a random wait.
pub(crate) fn glare(tx: &InviteTx) -> Response {
    let mut r = tx.response(491);
    r.headers.push(HeaderName::RetryAfter, "1");
    r
}

/// The INFO bodies we take: keypresses.
const DTMF_TYPES: &str = "application/dtmf-relay, application/dtmf";

/// How long a keypress lasts when its INFO does not say (`Duration=`, in
/// milliseconds, as most phones send).
pub(crate) const INFO_DIGIT_DEFAULT: Duration = Duration::from_millis(160);

/// What an INFO carries: a keypress and how long it lasts, nothing (a
/// keep-alive, accepted), or a body that is no keypress, refused with 415
/// and the types we take (RFC 3261 §21.4.13).
pub(crate) fn read_info(request: &Request) -> Result<Option<(rtp::Digit, Duration)>, Reply> {
    if request.body.is_empty() {
        return Ok(None);
    }
    match info_digit(request) {
        Some(digit) => Ok(Some((digit, info_duration(request)))),
        None => Err(Reply::status(415).with_header(HeaderName::Accept, DTMF_TYPES)),
    }
}

/// How long the keypress of an INFO lasts: its `Duration` field, else
/// 160 ms.
fn info_duration(request: &Request) -> Duration {
    std::str::from_utf8(&request.body)
        .ok()
        .and_then(|body| {
            body.lines().find_map(|line| {
                let (key, value) = line.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("duration")
                    .then(|| value.trim().parse::<u64>().ok())?
            })
        })
        .map_or(INFO_DIGIT_DEFAULT, Duration::from_millis)
}

/// The keypress an INFO carries: `application/dtmf-relay` (`Signal=5`,
/// the Cisco format most phones send) or `application/dtmf` (`5`). Some
/// phones send `10` and `11` for `*` and `#`.
fn info_digit(request: &Request) -> Option<rtp::Digit> {
    let content_type = request.headers.content_type()?.trim().to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let value = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match value {
        "10" => rtp::Digit::from_char('*').ok(),
        "11" => rtp::Digit::from_char('#').ok(),
        v if v.chars().count() == 1 => rtp::Digit::from_char(v.chars().next()?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        parse(&text)
    }

    fn parse(text: &str) -> Request {
        match sip_proto::Message::parse(text.as_bytes(), &sip_proto::Limits::default()).unwrap() {
            sip_proto::Message::Request(r) => r,
            sip_proto::Message::Response(_) => unreachable!(),
        }
    }

    fn refer(headers: &str) -> Result<Refer, &'static str> {
        read_refer(&parse(&format!(
            "REFER sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 7 REFER\r\n{headers}Content-Length: 0\r\n\r\n"
        )))
    }

    #[test]
    fn a_refer_names_a_number_or_a_dialog_to_replace() {
        let r = refer("Refer-To: <sip:1003@pbx.example;user=phone>\r\n").unwrap();
        assert!(matches!(&r.to, ReferTo::Target(t) if t == "1003"), "{r:?}");
        assert!(r.subscribed);
        assert_eq!(r.id, 7);
        let r = refer("Refer-To: <tel:+4930123>\r\nRefer-Sub: false\r\n").unwrap();
        assert!(
            matches!(&r.to, ReferTo::Target(t) if t == "+4930123"),
            "{r:?}"
        );
        assert!(!r.subscribed, "RFC 4488");
        let r = refer("Refer-To: <sip:1003@b?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>\r\n")
            .unwrap();
        let ReferTo::Replaces(d) = &r.to else {
            panic!("{r:?}");
        };
        assert_eq!(
            (d.call_id.as_str(), d.to_tag.as_str(), d.from_tag.as_str()),
            ("abc@h", "t1", "f1")
        );
        assert_eq!(refer("").unwrap_err(), "no Refer-To");
        assert_eq!(
            refer("Refer-To: <sip:b?Replaces=%3Bto-tag%3Dt1>\r\n").unwrap_err(),
            "unreadable Replaces in Refer-To"
        );
        assert_eq!(
            refer("Refer-To: <sip:10%2003@b>\r\n").unwrap_err(),
            "Refer-To names no number"
        );
        assert_eq!(
            refer("Refer-To: <mailto:a@b>\r\n").unwrap_err(),
            "Refer-To is neither sip: nor tel:"
        );
    }

    #[test]
    fn info_digits_in_both_formats() {
        let d = |ct: &str, body: &str| info_digit(&info(ct, body)).map(|d| d.as_char());
        assert_eq!(
            d("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(d("application/dtmf-relay", "signal= #\r\n"), Some('#'));
        assert_eq!(d("application/dtmf-relay", "Signal=11\r\n"), Some('#'));
        assert_eq!(d("application/dtmf-relay", "Signal=10\r\n"), Some('*'));
        assert_eq!(d("application/dtmf", "7"), Some('7'));
        assert_eq!(d("application/dtmf-relay", "Signal=X\r\n"), None);
        assert_eq!(d("application/dtmf-relay", "Duration=160\r\n"), None);
        assert_eq!(d("text/plain", "5"), None);
    }

    #[test]
    fn info_durations_default_to_160_ms() {
        let ms = |body: &str| info_duration(&info("application/dtmf-relay", body)).as_millis();
        assert_eq!(ms("Signal=5\r\nDuration=250\r\n"), 250);
        assert_eq!(ms("Signal=5\r\nduration = 90\r\n"), 90);
        assert_eq!(ms("Signal=5\r\n"), 160);
        assert_eq!(ms("Signal=5\r\nDuration=long\r\n"), 160);
    }
}
