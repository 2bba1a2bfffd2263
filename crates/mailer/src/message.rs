//! The mail for one voicemail message (RFC 5322 with RFC 2046 multipart):
//! a plain-text part with the caller, the time (in the office's zone and
//! as RFC 3339) and the duration, and the recording attached as it is
//! stored (`audio/wav`, 16-bit PCM).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use lettre::Address;
use lettre::Message;
use lettre::message::header::{ContentType, ContentTypeErr};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use pbx::NewMessage;

/// Why a mail could not be put together.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// lettre refused the headers or the parts.
    #[error("{0}")]
    Mail(#[from] lettre::error::Error),
    /// The attachment's content type did not parse.
    #[error("content type: {0}")]
    ContentType(#[from] ContentTypeErr),
}

/// The mail telling `to` about `message`; `wav` is the recording's bytes,
/// or why it could not be read (then the text says so and nothing is attached).
pub(crate) fn build(
    from: &Mailbox,
    to: &Address,
    message: &NewMessage,
    wav: Result<Vec<u8>, String>,
    zone: &TimeZone,
) -> Result<Message, BuildError> {
    let caller = clean(&message.caller);
    let caller = if caller.is_empty() {
        "an unknown caller".to_owned()
    } else {
        caller
    };
    let (rfc3339, human) = times(message.received_ms, zone);
    let (seconds, clock) = duration(message.duration_s);
    let subject = format!("Voicemail for {} from {caller} ({clock})", message.ext);
    let attached = match &wav {
        Ok(_) => format!(
            "The recording is attached ({}, 16-bit PCM WAV).",
            file_name(message)
        ),
        Err(e) => format!("The recording could not be attached ({e}); listen to it by phone."),
    };
    let text = format!(
        "You have a new voicemail message in mailbox {ext}.\r\n\
         \r\n\
         From:     {caller}\r\n\
         Received: {human} ({rfc3339})\r\n\
         Duration: {seconds} s ({clock})\r\n\
         Message:  {id}\r\n\
         \r\n\
         {attached}\r\n",
        ext = message.ext,
        id = clean(&message.id),
    );
    let builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.clone()))
        .subject(subject);
    let text = SinglePart::plain(text);
    let email = match wav {
        Ok(bytes) => {
            let audio =
                Attachment::new(file_name(message)).body(bytes, ContentType::parse("audio/wav")?);
            builder.multipart(MultiPart::mixed().singlepart(text).singlepart(audio))?
        }
        Err(_) => builder.singlepart(text)?,
    };
    Ok(email)
}

/// `voicemail-1001-7.wav`, with only safe characters.
fn file_name(message: &NewMessage) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("voicemail-{}-{}.wav", safe(&message.ext), safe(&message.id))
}

/// `s` without control characters (a caller name cannot break a header or the text's lines).
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The received time as RFC 3339 in UTC (`2026-12-06T22:10:05Z`) and as
/// people read it in `zone` (`Sunday 6 December 2026, 23:10:05 CET`).
fn times(received_ms: u64, zone: &TimeZone) -> (String, String) {
    let seconds = i64::try_from(received_ms / 1000).unwrap_or(i64::MAX);
    let Ok(ts) = Timestamp::from_second(seconds) else {
        let raw = format!("{received_ms} ms after 1970");
        return (raw.clone(), raw);
    };
    let human = ts
        .to_zoned(zone.clone())
        .strftime("%A %-d %B %Y, %H:%M:%S %Z")
        .to_string();
    (ts.to_string(), human)
}

/// The duration as whole seconds and as `m:ss`.
fn duration(duration_s: f64) -> (u64, String) {
    let seconds = if duration_s.is_finite() && duration_s > 0.0 {
        // Rounded and capped: a day is far beyond any recording limit.
        duration_s.round().min(86_400.0) as u64
    } else {
        0
    };
    (seconds, format!("{}:{:02}", seconds / 60, seconds % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewMessage {
        NewMessage {
            ext: "1001".into(),
            id: "7".into(),
            caller: "\"Bob\" <sip:1002@pbx>\r\nBcc: x@example.com".into(),
            received_ms: 1_796_594_405_123,
            duration_s: 42.4,
            wav: "/nonexistent.wav".into(),
        }
    }

    #[test]
    fn times_are_rfc3339_and_human() {
        let (rfc, human) = times(1_796_594_405_123, &TimeZone::UTC);
        assert_eq!(rfc, "2026-12-06T22:00:05Z");
        assert_eq!(human, "Sunday 6 December 2026, 22:00:05 UTC");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let (_, human) = times(1_796_594_405_123, &berlin);
        assert!(human.contains("23:00:05"), "{human}");
    }

    #[test]
    fn durations_round_to_seconds() {
        assert_eq!(duration(42.4), (42, "0:42".to_owned()));
        assert_eq!(duration(61.6), (62, "1:02".to_owned()));
        assert_eq!(duration(f64::NAN), (0, "0:00".to_owned()));
    }

    #[test]
    fn a_caller_cannot_add_headers() {
        let from: Mailbox = "PBX <pbx@example.com>".parse().unwrap();
        let to: Address = "alice@example.com".parse().unwrap();
        let mail = build(&from, &to, &sample(), Err("gone".into()), &TimeZone::UTC).unwrap();
        let text = String::from_utf8(mail.formatted()).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("could not be attached (gone)"), "{text}");
    }

    #[test]
    fn file_names_are_safe() {
        let mut m = sample();
        m.id = "../x y".into();
        assert_eq!(file_name(&m), "voicemail-1001-.._x_y.wav");
    }
}
