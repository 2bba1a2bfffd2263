//! Transaction matching (RFC 3261 §17.1.3, §17.2.3) and branch parameters
//! (§8.1.1.7).
//!
//! A [`TransactionKey`] is built from the strings of a message, so the
//! endpoint can keep its transactions in a `HashMap<TransactionKey, _>`:
//! two messages belong to the same transaction exactly when their keys are
//! equal. Client and server keys never compare equal, so one map can hold
//! both.

use std::fmt;

/// The magic cookie that starts every RFC 3261 branch parameter
/// (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Whether `branch` was made by an RFC 3261 element: it starts with the
/// [`MAGIC_COOKIE`] (case-sensitive, as the RFC spells it) and has
/// something after it. A bare cookie is unique to nothing, so it gets the
/// RFC 2543 matching rules like a missing branch.
pub fn is_rfc3261_branch(branch: &str) -> bool {
    branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE)
}

/// A new branch parameter for a request this element sends: the
/// [`MAGIC_COOKIE`] followed by `random` in 16 hex digits. The caller
/// supplies 64 random bits (this crate has no randomness), which makes the
/// branch unique over space and time as §8.1.1.7 requires.
pub fn new_branch(random: u64) -> String {
    format!("{MAGIC_COOKIE}{random:016x}")
}

/// The parts of a request that identify its server transaction when its
/// branch is missing or not an RFC 3261 one (§17.2.3, RFC 2543 rules).
///
/// Retransmissions are byte-for-byte copies of the original, so the string
/// parts only need to be given the same way each time; pass a canonical
/// form (the `Display` of the parsed value) where one exists. Tags are
/// compared case-insensitively (§7.3.1), the other parts exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rfc2543Parts<'a> {
    /// The request method, case-sensitive (`ACK` is matched to the INVITE
    /// transaction).
    pub method: &'a str,
    /// The Request-URI.
    pub request_uri: &'a str,
    /// The Call-ID value.
    pub call_id: &'a str,
    /// The CSeq sequence number (the method is `method`).
    pub cseq: u32,
    /// The `tag` parameter of From, if any.
    pub from_tag: Option<&'a str>,
    /// The `tag` parameter of To, if any.
    pub to_tag: Option<&'a str>,
    /// The whole top Via header field value.
    pub top_via: &'a str,
}

/// Identifies one transaction: equal keys, same transaction.
///
/// - [`client`](Self::client): a response matches the client transaction
///   whose branch and method equal the response's top Via branch and CSeq
///   method (§17.1.3).
/// - [`server`](Self::server): a request with an RFC 3261 branch matches
///   the server transaction with the same branch, top Via sent-by and
///   method, where ACK counts as INVITE; CANCEL is a transaction of its own
///   (§17.2.3).
/// - [`server_rfc2543`](Self::server_rfc2543): the fallback for requests
///   without such a branch.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey(Inner);

/// 32 bytes and one allocation for the common keys: a table keeps a key
/// per live transaction and more in its deadline heap, and three strings
/// made a key 80 bytes and three allocations.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Inner {
    /// Branch, method.
    Client(Joined),
    /// Branch, sent-by host, method; the sent-by port.
    Server(Joined, Option<u16>),
    Rfc2543(Box<Rfc2543Key>),
}

/// Up to three strings kept as one: `text` is them end to end, `ends`
/// where the first and the second end. Equal exactly when the strings are.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Joined {
    text: Box<str>,
    ends: [u32; 2],
}

impl Joined {
    /// `parts` end to end, those marked `true` lower-cased.
    fn new(parts: &[(&str, bool)]) -> Joined {
        let mut text = String::with_capacity(parts.iter().map(|(p, _)| p.len()).sum());
        let mut ends = [0u32; 2];
        for (i, (part, lower)) in parts.iter().enumerate() {
            let start = text.len();
            text.push_str(part);
            if *lower {
                text[start..].make_ascii_lowercase();
            }
            if let Some(end) = ends.get_mut(i) {
                // A message, hence each of its strings, is far below 4 GiB.
                *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
        }
        Joined {
            text: text.into_boxed_str(),
            ends,
        }
    }

    /// The `i`th string (0 to 2; a key of two strings has an empty third).
    fn part(&self, i: usize) -> &str {
        let len = self.text.len();
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).map_or(len, |&e| e as usize),
        };
        let end = self.ends.get(i).map_or(len, |&e| e as usize);
        self.text.get(start..end).unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rfc2543Key {
    method: String,
    request_uri: String,
    call_id: String,
    cseq: u32,
    from_tag: Option<String>,
    to_tag: Option<String>,
    top_via: String,
}

/// The method a server transaction is known by: an ACK belongs to the
/// INVITE transaction (§17.2.3).
fn server_method(method: &str) -> &str {
    if method == "ACK" { "INVITE" } else { method }
}

impl TransactionKey {
    /// The key of a client transaction, and of a response to match against
    /// one (§17.1.3): the `branch` of the top Via and the method of the
    /// request, or of the response's CSeq. The branch compares
    /// case-insensitively.
    pub fn client(branch: &str, method: &str) -> Self {
        // The third part stays empty: `ends[1]` is the text's end.
        Self(Inner::Client(Joined::new(&[
            (branch, true),
            (method, false),
            ("", false),
        ])))
    }

    /// The key of a server transaction for a request whose top Via branch
    /// passes [`is_rfc3261_branch`] (§17.2.3): the branch, the top Via
    /// sent-by (`host`, and `port` as written, absent or not), and the
    /// method, with `ACK` mapped to `INVITE` so that the ACK for a non-2xx
    /// final response finds its INVITE transaction. `CANCEL` stays distinct;
    /// see [`invite_for_cancel`](Self::invite_for_cancel). Branch and host
    /// compare case-insensitively.
    pub fn server(
        branch: &str,
        sent_by_host: &str,
        sent_by_port: Option<u16>,
        method: &str,
    ) -> Self {
        Self(Inner::Server(
            Joined::new(&[
                (branch, true),
                (sent_by_host, true),
                (server_method(method), false),
            ]),
            sent_by_port,
        ))
    }

    /// The key of a server transaction for a request without an RFC 3261
    /// branch (§17.2.3, RFC 2543 rules): Request-URI, Call-ID, CSeq, From
    /// tag, To tag, top Via and method, with `ACK` mapped to `INVITE`.
    ///
    /// An INVITE retransmission gives the same key as the INVITE. The ACK
    /// for a response carries the To tag of that response, which an initial
    /// INVITE did not have: after sending a final response with To tag `t`,
    /// register [`ack_alias`](Self::ack_alias)`(t)` for the transaction too.
    pub fn server_rfc2543(parts: &Rfc2543Parts<'_>) -> Self {
        Self(Inner::Rfc2543(Box::new(Rfc2543Key {
            method: server_method(parts.method).to_owned(),
            request_uri: parts.request_uri.trim().to_owned(),
            call_id: parts.call_id.trim().to_owned(),
            cseq: parts.cseq,
            from_tag: parts.from_tag.map(str::to_ascii_lowercase),
            to_tag: parts.to_tag.map(str::to_ascii_lowercase),
            top_via: parts.top_via.trim().to_owned(),
        })))
    }

    /// For the key of a CANCEL server transaction, the key of the INVITE
    /// server transaction it cancels (§9.2: the same matching with the
    /// method replaced). `None` for any other key.
    pub fn invite_for_cancel(&self) -> Option<Self> {
        match &self.0 {
            Inner::Server(parts, port) if parts.part(2) == "CANCEL" => Some(Self(Inner::Server(
                Joined::new(&[
                    (parts.part(0), false),
                    (parts.part(1), false),
                    ("INVITE", false),
                ]),
                *port,
            ))),
            Inner::Rfc2543(key) if key.method == "CANCEL" => {
                let mut invite = key.clone();
                invite.method = "INVITE".to_owned();
                Some(Self(Inner::Rfc2543(invite)))
            }
            _ => None,
        }
    }

    /// For an RFC 2543 INVITE server key, the key the ACK for a response
    /// with To tag `response_to_tag` will have (§17.2.3: the ACK matches if
    /// its To tag is that of the response the transaction sent). `None` for
    /// other keys: with an RFC 3261 branch the ACK already has the INVITE's
    /// key.
    pub fn ack_alias(&self, response_to_tag: &str) -> Option<Self> {
        match &self.0 {
            Inner::Rfc2543(key) if key.method == "INVITE" => {
                let mut ack = key.clone();
                ack.to_tag = Some(response_to_tag.to_ascii_lowercase());
                Some(Self(Inner::Rfc2543(ack)))
            }
            _ => None,
        }
    }

    /// `true` for a key made by [`server`](Self::server) or
    /// [`server_rfc2543`](Self::server_rfc2543).
    pub fn is_server(&self) -> bool {
        !matches!(self.0, Inner::Client(_))
    }

    /// The method the transaction is known by (`INVITE` for a server key
    /// built from an ACK).
    pub fn method(&self) -> &str {
        match &self.0 {
            Inner::Client(parts) => parts.part(1),
            Inner::Server(parts, _) => parts.part(2),
            Inner::Rfc2543(key) => &key.method,
        }
    }

    /// The branch (lower-cased), or `None` for an RFC 2543 key.
    pub fn branch(&self) -> Option<&str> {
        match &self.0 {
            Inner::Client(parts) | Inner::Server(parts, _) => Some(parts.part(0)),
            Inner::Rfc2543(_) => None,
        }
    }
}

/// A short form for logs, e.g. `server INVITE z9hg4bk74bf9 via pc33.example.com:5060`.
impl fmt::Display for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Client(parts) => write!(f, "client {} {}", parts.part(1), parts.part(0)),
            Inner::Server(parts, port) => {
                let (branch, host, method) = (parts.part(0), parts.part(1), parts.part(2));
                write!(f, "server {method} {branch} via {host}")?;
                match port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
            Inner::Rfc2543(key) => write!(
                f,
                "server {} (RFC 2543) call-id {} cseq {}",
                key.method, key.call_id, key.cseq
            ),
        }
    }
}

/// The key's parts by name, as a derived `Debug` of separate strings
/// would show them.
impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Client(parts) => f
                .debug_struct("Client")
                .field("branch", &parts.part(0))
                .field("method", &parts.part(1))
                .finish(),
            Inner::Server(parts, port) => f
                .debug_struct("Server")
                .field("branch", &parts.part(0))
                .field("host", &parts.part(1))
                .field("port", port)
                .field("method", &parts.part(2))
                .finish(),
            Inner::Rfc2543(key) => key.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const BRANCH: &str = "z9hG4bK74bf9";

    #[test]
    fn a_key_is_small_and_keeps_its_parts() {
        assert!(std::mem::size_of::<TransactionKey>() <= 32);
        let key = TransactionKey::server("z9hG4bKAb", "Host.Example", Some(5070), "ACK");
        assert_eq!(key.branch(), Some("z9hg4bkab"));
        assert_eq!(key.method(), "INVITE");
        assert_eq!(
            key.to_string(),
            "server INVITE z9hg4bkab via host.example:5070"
        );
        assert_eq!(
            format!("{key:?}"),
            "Server { branch: \"z9hg4bkab\", host: \"host.example\", port: Some(5070), method: \"INVITE\" }"
        );
        let client = TransactionKey::client("z9hG4bKx", "BYE");
        assert_eq!(
            (client.branch(), client.method()),
            (Some("z9hg4bkx"), "BYE")
        );
        // The same strings split differently are another key.
        assert_ne!(
            TransactionKey::server("z9hG4bKab", "c", None, "INVITE"),
            TransactionKey::server("z9hG4bKa", "bc", None, "INVITE")
        );
    }

    #[test]
    fn same_branch_different_method_is_a_different_server_transaction() {
        let invite = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "INVITE");
        let cancel = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "CANCEL");
        let options = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "OPTIONS");
        assert_ne!(invite, cancel);
        assert_ne!(invite, options);
        assert_ne!(cancel, options);
    }

    #[test]
    fn ack_for_non_2xx_matches_the_invite_server_transaction() {
        let invite = TransactionKey::server(BRANCH, "pc33.example.com", None, "INVITE");
        let ack = TransactionKey::server(BRANCH, "pc33.example.com", None, "ACK");
        assert_eq!(invite, ack);
        assert_eq!(ack.method(), "INVITE");
        let mut table = HashMap::new();
        table.insert(invite, "tx1");
        assert_eq!(table.get(&ack), Some(&"tx1"));
    }

    #[test]
    fn cancel_does_not_match_invite_but_finds_it() {
        let invite = TransactionKey::server(BRANCH, "pc33.example.com", None, "INVITE");
        let cancel = TransactionKey::server(BRANCH, "pc33.example.com", None, "CANCEL");
        assert_ne!(cancel, invite);
        assert_eq!(cancel.invite_for_cancel(), Some(invite.clone()));
        assert_eq!(invite.invite_for_cancel(), None);
        let bye = TransactionKey::server(BRANCH, "pc33.example.com", None, "BYE");
        assert_eq!(bye.invite_for_cancel(), None);
    }

    #[test]
    fn sent_by_host_and_branch_compare_case_insensitively() {
        let a = TransactionKey::server(BRANCH, "PC33.Example.COM", Some(5060), "INVITE");
        let b = TransactionKey::server("z9hg4bk74BF9", "pc33.example.com", Some(5060), "INVITE");
        assert_eq!(a, b);
    }

    #[test]
    fn sent_by_port_and_branch_and_method_case_matter() {
        let base = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "INVITE");
        let other_port = TransactionKey::server(BRANCH, "pc33.example.com", Some(5062), "INVITE");
        let no_port = TransactionKey::server(BRANCH, "pc33.example.com", None, "INVITE");
        let other_host = TransactionKey::server(BRANCH, "pc34.example.com", Some(5060), "INVITE");
        let other_branch =
            TransactionKey::server("z9hG4bK74bfa", "pc33.example.com", Some(5060), "INVITE");
        let lower_method = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "invite");
        for other in [other_port, no_port, other_host, other_branch, lower_method] {
            assert_ne!(base, other, "{other}");
        }
    }

    #[test]
    fn client_key_is_branch_plus_cseq_method() {
        let invite = TransactionKey::client(BRANCH, "INVITE");
        let response_to_invite = TransactionKey::client("Z9HG4BK74BF9", "INVITE");
        let response_to_cancel = TransactionKey::client(BRANCH, "CANCEL");
        assert_eq!(invite, response_to_invite);
        assert_ne!(invite, response_to_cancel);
        assert!(!invite.is_server());
        assert_eq!(invite.branch(), Some("z9hg4bk74bf9"));
    }

    #[test]
    fn client_and_server_keys_never_match() {
        let client = TransactionKey::client(BRANCH, "INVITE");
        let server = TransactionKey::server(BRANCH, "", None, "INVITE");
        assert_ne!(client, server);
        assert!(server.is_server());
    }

    fn invite_2543() -> Rfc2543Parts<'static> {
        Rfc2543Parts {
            method: "INVITE",
            request_uri: "sip:bob@biloxi.example.com",
            call_id: "a84b4c76e66710",
            cseq: 314159,
            from_tag: Some("1928301774"),
            to_tag: None,
            top_via: "SIP/2.0/UDP pc33.atlanta.example.com",
        }
    }

    #[test]
    fn rfc2543_retransmission_without_branch_matches() {
        let original = TransactionKey::server_rfc2543(&invite_2543());
        let retransmission = TransactionKey::server_rfc2543(&invite_2543());
        assert_eq!(original, retransmission);
        assert_eq!(original.branch(), None);
        assert!(original.is_server());
        let later = TransactionKey::server_rfc2543(&Rfc2543Parts {
            cseq: 314160,
            ..invite_2543()
        });
        assert_ne!(original, later);
        let other_call = TransactionKey::server_rfc2543(&Rfc2543Parts {
            call_id: "other",
            ..invite_2543()
        });
        assert_ne!(original, other_call);
        let other_via = TransactionKey::server_rfc2543(&Rfc2543Parts {
            top_via: "SIP/2.0/UDP pc34.atlanta.example.com",
            ..invite_2543()
        });
        assert_ne!(original, other_via);
    }

    #[test]
    fn rfc2543_ack_matches_through_the_response_to_tag() {
        let invite = TransactionKey::server_rfc2543(&invite_2543());
        let ack = TransactionKey::server_rfc2543(&Rfc2543Parts {
            method: "ACK",
            to_tag: Some("8321234356"),
            ..invite_2543()
        });
        assert_ne!(invite, ack, "the initial INVITE had no To tag");
        assert_eq!(invite.ack_alias("8321234356"), Some(ack.clone()));
        let stray = TransactionKey::server_rfc2543(&Rfc2543Parts {
            method: "ACK",
            to_tag: Some("99"),
            ..invite_2543()
        });
        assert_ne!(invite.ack_alias("8321234356"), Some(stray));
        // A re-INVITE already carries the To tag: its ACK has its key.
        let reinvite = TransactionKey::server_rfc2543(&Rfc2543Parts {
            to_tag: Some("8321234356"),
            ..invite_2543()
        });
        assert_eq!(reinvite, ack);
        // Only INVITE keys have an ACK alias.
        let server = TransactionKey::server(BRANCH, "h", None, "INVITE");
        assert_eq!(server.ack_alias("x"), None);
    }

    #[test]
    fn rfc2543_non_invite_includes_method_and_to_tag() {
        let bye = Rfc2543Parts {
            method: "BYE",
            to_tag: Some("8321234356"),
            ..invite_2543()
        };
        let key = TransactionKey::server_rfc2543(&bye);
        assert_ne!(
            key,
            TransactionKey::server_rfc2543(&Rfc2543Parts {
                to_tag: Some("1"),
                ..bye
            })
        );
        assert_ne!(
            key,
            TransactionKey::server_rfc2543(&Rfc2543Parts {
                method: "INFO",
                ..bye
            })
        );
        assert_eq!(key.ack_alias("1"), None);
    }

    #[test]
    fn rfc2543_cancel_finds_its_invite() {
        let invite = TransactionKey::server_rfc2543(&invite_2543());
        let cancel = TransactionKey::server_rfc2543(&Rfc2543Parts {
            method: "CANCEL",
            ..invite_2543()
        });
        assert_ne!(invite, cancel);
        assert_eq!(cancel.invite_for_cancel(), Some(invite));
    }

    #[test]
    fn branch_helpers() {
        assert!(is_rfc3261_branch("z9hG4bK776asdhds"));
        assert!(!is_rfc3261_branch("z9hG4bK"));
        assert!(!is_rfc3261_branch("Z9HG4BK776asdhds"));
        assert!(!is_rfc3261_branch("776asdhds"));
        assert!(!is_rfc3261_branch(""));
        let branch = new_branch(0xdead_beef);
        assert_eq!(branch, "z9hG4bK00000000deadbeef");
        assert!(is_rfc3261_branch(&branch));
        assert_ne!(new_branch(1), new_branch(2));
    }

    #[test]
    fn display_names_the_transaction() {
        let key = TransactionKey::server(BRANCH, "pc33.example.com", Some(5060), "ACK");
        assert_eq!(
            key.to_string(),
            "server INVITE z9hg4bk74bf9 via pc33.example.com:5060"
        );
        assert_eq!(
            TransactionKey::client(BRANCH, "BYE").to_string(),
            "client BYE z9hg4bk74bf9"
        );
        let old = TransactionKey::server_rfc2543(&invite_2543());
        assert_eq!(
            old.to_string(),
            "server INVITE (RFC 2543) call-id a84b4c76e66710 cseq 314159"
        );
    }
}
