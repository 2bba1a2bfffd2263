//! The event bodies: `application/dialog-info+xml` (RFC 4235 §4),
//! `application/simple-message-summary` (RFC 3842 §5) and
//! `application/pidf+xml` (RFC 3863, with the RPID `on-the-phone` activity
//! of RFC 4480). Pure text building, no IO.

use std::fmt::Write as _;

use pbx::MailboxCounts;

/// Where a watched extension's dialog stands (RFC 4235 §3.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Ringing (or, for the caller, being set up).
    Early,
    /// Answered.
    Confirmed,
    /// Over.
    Terminated,
}

impl DialogState {
    /// The `<state>` text.
    pub fn as_str(self) -> &'static str {
        match self {
            DialogState::Early => "early",
            DialogState::Confirmed => "confirmed",
            DialogState::Terminated => "terminated",
        }
    }
}

/// Whether the watched extension placed the call or is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// It placed the call.
    Initiator,
    /// It is called.
    Recipient,
}

impl Direction {
    /// The `direction` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Initiator => "initiator",
            Direction::Recipient => "recipient",
        }
    }
}

/// One of a watched extension's calls, as its BLF shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogView {
    /// The call it belongs to (the call core's id, the caller leg's
    /// Call-ID): what keeps one dialog the same across changes.
    pub call: String,
    /// The Call-ID of the watched phone's own dialog in that call.
    pub call_id: String,
    /// The watched phone's tag in that dialog, once known.
    pub local_tag: Option<String>,
    /// The other end's (Switchboard's) tag in that dialog.
    pub remote_tag: Option<String>,
    /// Where it stands.
    pub state: DialogState,
    /// Who placed it.
    pub direction: Direction,
    /// The other party's URI.
    pub remote: String,
    /// The other party's display name, if known.
    pub remote_name: Option<String>,
}

/// Escapes text for XML content and attribute values.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A short stable id for a dialog element (hex of a hash of the Call-ID and
/// the extension), so the same call keeps its id across NOTIFYs.
fn dialog_id(call_id: &str, ext: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes().chain([0]).chain(ext.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A full-state dialog-info document for `ext` at `domain` (RFC 4235 §4.1),
/// in the shape Yealink, Polycom, Snom, Grandstream and Cisco phones read:
/// `entity` the watched AOR, each `<dialog>` with `id`, the `call-id`,
/// `local-tag` and `remote-tag` of the watched phone's dialog (as far as
/// known) and `direction`, a `<state>`, and `<local>`/`<remote>` identities so a phone
/// can show who is calling.
pub fn dialog_info(
    ext: &str,
    name: Option<&str>,
    domain: &str,
    version: u32,
    dialogs: &[DialogView],
) -> String {
    let entity = format!("sip:{ext}@{domain}");
    let mut out = String::with_capacity(256 + dialogs.len() * 400);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{}\">\n",
        xml(&entity)
    );
    for d in dialogs {
        let tag = |name: &str, t: &Option<String>| {
            t.as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!(" {name}=\"{}\"", xml(t)))
                .unwrap_or_default()
        };
        let _ = write!(
            out,
            "<dialog id=\"{}\" call-id=\"{}\"{}{} direction=\"{}\">\n<state>{}</state>\n",
            dialog_id(&d.call, ext),
            xml(&d.call_id),
            tag("local-tag", &d.local_tag),
            tag("remote-tag", &d.remote_tag),
            d.direction.as_str(),
            d.state.as_str()
        );
        let local_name = name.map(|n| format!(" display=\"{}\"", xml(n)));
        let _ = writeln!(
            out,
            "<local><identity{}>{}</identity><target uri=\"{}\"/></local>",
            local_name.unwrap_or_default(),
            xml(&entity),
            xml(&entity)
        );
        let remote_name = d
            .remote_name
            .as_deref()
            .map(|n| format!(" display=\"{}\"", xml(n)));
        let _ = writeln!(
            out,
            "<remote><identity{}>{}</identity><target uri=\"{}\"/></remote>\n</dialog>",
            remote_name.unwrap_or_default(),
            xml(&d.remote),
            xml(&d.remote)
        );
    }
    out.push_str("</dialog-info>\n");
    out
}

/// A message-summary body (RFC 3842 §5.2) for `ext`'s mailbox.
pub fn message_summary(ext: &str, domain: &str, counts: MailboxCounts) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: sip:{ext}@{domain}\r\nVoice-Message: {}/{} (0/0)\r\n",
        if counts.waiting() { "yes" } else { "no" },
        counts.new,
        counts.old
    )
}

/// A PIDF document (RFC 3863) for `ext`: `open` while it has a live
/// registration, `closed` otherwise; the RPID activity `on-the-phone`
/// (RFC 4480 §3.2) while it has a call.
pub fn pidf(ext: &str, domain: &str, open: bool, on_the_phone: bool) -> String {
    let entity = xml(&format!("sip:{ext}@{domain}"));
    let basic = if open { "open" } else { "closed" };
    let (activity, note) = if on_the_phone {
        ("<rpid:on-the-phone/>", "On the phone")
    } else if open {
        ("", "Available")
    } else {
        ("", "Offline")
    };
    let person = if activity.is_empty() {
        String::new()
    } else {
        format!(
            "<dm:person id=\"p{}\"><rpid:activities>{activity}</rpid:activities></dm:person>\n",
            xml(ext)
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{entity}\">\n<tuple id=\"t{}\"><status><basic>{basic}</basic></status><contact>{entity}</contact><note>{note}</note></tuple>\n{person}</presence>\n",
        xml(ext)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_info_carries_state_direction_and_the_remote_party() {
        let body = dialog_info(
            "1002",
            Some("Bob"),
            "pbx.test",
            7,
            &[DialogView {
                call: "abc@x".into(),
                call_id: "b-leg@pbx".into(),
                local_tag: Some("phone1".into()),
                remote_tag: Some("pbx1".into()),
                state: DialogState::Early,
                direction: Direction::Recipient,
                remote: "sip:1001@pbx.test".into(),
                remote_name: Some("Alice <& Co>".into()),
            }],
        );
        assert!(body.contains("version=\"7\" state=\"full\" entity=\"sip:1002@pbx.test\""));
        assert!(body.contains(
            "call-id=\"b-leg@pbx\" local-tag=\"phone1\" remote-tag=\"pbx1\" direction=\"recipient\""
        ));
        assert!(body.contains("<state>early</state>"));
        assert!(body.contains(
            "<remote><identity display=\"Alice &lt;&amp; Co&gt;\">sip:1001@pbx.test</identity>"
        ));
        assert!(body.contains("<local><identity display=\"Bob\">sip:1002@pbx.test</identity>"));
        // The same call keeps its dialog id.
        let again = dialog_info("1002", None, "pbx.test", 8, &[]);
        assert!(again.contains("version=\"8\"") && !again.contains("<dialog "));
        assert_eq!(dialog_id("abc@x", "1002"), dialog_id("abc@x", "1002"));
        assert_ne!(dialog_id("abc@x", "1002"), dialog_id("abc@x", "1001"));
    }

    #[test]
    fn message_summary_says_yes_only_with_new_messages() {
        let yes = message_summary("1001", "d", MailboxCounts { new: 2, old: 1 });
        assert_eq!(
            yes,
            "Messages-Waiting: yes\r\nMessage-Account: sip:1001@d\r\nVoice-Message: 2/1 (0/0)\r\n"
        );
        let no = message_summary("1001", "d", MailboxCounts { new: 0, old: 3 });
        assert!(no.starts_with("Messages-Waiting: no\r\n") && no.contains("0/3 (0/0)"));
    }

    #[test]
    fn pidf_is_open_closed_and_on_the_phone() {
        let busy = pidf("1002", "d", true, true);
        assert!(busy.contains("<basic>open</basic>") && busy.contains("<rpid:on-the-phone/>"));
        let idle = pidf("1002", "d", true, false);
        assert!(idle.contains("<basic>open</basic>") && !idle.contains("on-the-phone"));
        let off = pidf("1002", "d", false, false);
        assert!(off.contains("<basic>closed</basic>"));
    }
}
