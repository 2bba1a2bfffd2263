//! RFC 3261 §10.3 steps 5–8 as a pure function: from the stored bindings of
//! an AOR and one REGISTER, the new binding set or the reason to refuse.
//! Time comes in as unix milliseconds; nothing here does IO.

use std::net::SocketAddr;

use sip_proto::header::{Contact, NameAddr};
use storage::Binding;

/// Registrar limits on expiry and contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Shortest registration accepted (seconds); shorter ones get 423.
    pub min_expires: u32,
    /// Longest registration granted (seconds); longer requests are cut.
    pub max_expires: u32,
    /// Expiry when the REGISTER gives none (seconds).
    pub default_expires: u32,
    /// Most contacts one AOR may have at once.
    pub max_contacts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// What one REGISTER asks for, as read from its headers.
#[derive(Debug, Clone)]
pub struct RegisterRequest<'a> {
    /// The address of record (canonical `sip:user@domain`).
    pub aor: &'a str,
    /// The Contact header field values, or `*`; `None` when absent (a query).
    pub contact: Option<&'a Contact>,
    /// The Expires header, if any.
    pub expires: Option<u32>,
    /// Call-ID of the REGISTER.
    pub call_id: &'a str,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// Where the REGISTER came from (used to reach the phone behind NAT).
    pub source: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: &'a str,
    /// User-Agent header, if any.
    pub user_agent: Option<&'a str>,
    /// Now, in unix milliseconds.
    pub now_ms: u64,
}

/// Why a REGISTER is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: `Contact: *` with other contacts or a non-zero Expires (§10.3
    /// step 6), or an unreadable contact.
    BadRequest(String),
    /// 423 with `Min-Expires` (§10.3 step 7).
    IntervalTooBrief {
        /// The smallest expiry accepted, for the Min-Expires header.
        min_expires: u32,
    },
    /// 400: a CSeq not above the stored one for the same Call-ID (§10.3
    /// step 7: "the update MUST be aborted and the request fails").
    OutOfOrder,
    /// 403: the AOR would have more contacts than allowed.
    TooManyContacts {
        /// The configured maximum.
        max: usize,
    },
}

impl Refusal {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) | Refusal::OutOfOrder => 400,
            Refusal::IntervalTooBrief { .. } => 423,
            Refusal::TooManyContacts { .. } => 403,
        }
    }

    /// Text for the Warning header.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadRequest(r) => r.clone(),
            Refusal::IntervalTooBrief { min_expires } => {
                format!("registration interval below the minimum of {min_expires} s")
            }
            Refusal::OutOfOrder => {
                "CSeq is not higher than that of the existing binding for this Call-ID".into()
            }
            Refusal::TooManyContacts { max } => {
                format!("at most {max} contacts may be registered for one address")
            }
        }
    }
}

/// The expiry one contact asks for: its `expires` parameter, else the
/// Expires header, else the default (§10.3 step 6 / §10.2.1.1).
fn requested_expiry(na: &NameAddr, header: Option<u32>, policy: &Policy) -> Result<u32, Refusal> {
    match na.params.get("expires") {
        Some(Some(v)) => v
            .trim()
            .parse::<u64>()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(|_| Refusal::BadRequest(format!("Contact expires={v:?} is not a number"))),
        Some(None) => Err(Refusal::BadRequest("Contact expires has no value".into())),
        None => Ok(header.unwrap_or(policy.default_expires)),
    }
}

/// `q` as thousandths (RFC 3261 §20.10: 0 to 1 with up to 3 decimals).
fn q_value(na: &NameAddr) -> Result<Option<u16>, Refusal> {
    let Some(v) = na.params.get("q") else {
        return Ok(None);
    };
    let v = v.unwrap_or_default().trim();
    let bad = || Refusal::BadRequest(format!("Contact q={v:?} is not a qvalue"));
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return Err(bad()),
    };
    let frac_val: u16 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    let q = int * 1000 + frac_val;
    if q > 1000 {
        return Err(bad());
    }
    Ok(Some(q))
}

/// The contact URI as stored and compared (RFC 3261 §10.3 step 7 compares
/// with §19.1.4 URI equality; the canonical text form stands in for it).
pub fn contact_key(na: &NameAddr) -> String {
    na.uri.to_string()
}

/// Applies one REGISTER to the stored bindings of its AOR. Returns the
/// complete new set (what the 200 OK lists), or why it is refused. Expired
/// bindings in `existing` are dropped from the result.
pub fn apply(
    existing: &[Binding],
    req: &RegisterRequest<'_>,
    policy: &Policy,
) -> Result<Vec<Binding>, Refusal> {
    let mut set: Vec<Binding> = existing
        .iter()
        .filter(|b| !b.is_expired(req.now_ms))
        .cloned()
        .collect();
    let Some(contact) = req.contact else {
        return Ok(set);
    };
    let addrs = match contact {
        Contact::Star => {
            // Step 6: `*` only with Expires: 0 and no other contact.
            if req.expires != Some(0) {
                return Err(Refusal::BadRequest("Contact: * requires Expires: 0".into()));
            }
            for b in &set {
                if b.call_id == req.call_id && req.cseq <= b.cseq {
                    return Err(Refusal::OutOfOrder);
                }
            }
            return Ok(Vec::new());
        }
        Contact::Addrs(addrs) => addrs,
    };
    for na in addrs {
        let expires = requested_expiry(na, req.expires, policy)?;
        // Step 7: 0 < expires < min → 423; longer than max → cut to max.
        if expires != 0 && expires < policy.min_expires {
            return Err(Refusal::IntervalTooBrief {
                min_expires: policy.min_expires,
            });
        }
        let expires = expires.min(policy.max_expires);
        let key = contact_key(na);
        let q = q_value(na)?;
        let found = set.iter().position(|b| b.contact == key);
        if let Some(i) = found {
            let same_call = set.get(i).is_some_and(|b| b.call_id == req.call_id);
            if same_call && set.get(i).is_some_and(|b| req.cseq <= b.cseq) {
                return Err(Refusal::OutOfOrder);
            }
            if expires == 0 {
                set.remove(i);
                continue;
            }
        } else if expires == 0 {
            continue;
        }
        let binding = Binding {
            aor: req.aor.to_owned(),
            contact: key,
            expires_at_ms: req.now_ms.saturating_add(u64::from(expires) * 1000),
            q,
            call_id: req.call_id.to_owned(),
            cseq: req.cseq,
            path: req.path.clone(),
            source: req.source,
            transport: req.transport.to_owned(),
            user_agent: req.user_agent.map(str::to_owned),
            instance: na
                .params
                .get("+sip.instance")
                .flatten()
                .map(|s| s.trim_matches('"').to_owned()),
            reg_id: na
                .params
                .get("reg-id")
                .flatten()
                .and_then(|s| s.parse().ok()),
            registered_at_ms: req.now_ms,
        };
        match found {
            Some(i) => {
                if let Some(slot) = set.get_mut(i) {
                    *slot = binding;
                }
            }
            None => set.push(binding),
        }
    }
    if set.len() > policy.max_contacts {
        return Err(Refusal::TooManyContacts {
            max: policy.max_contacts,
        });
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_proto::HeaderName;
    use sip_proto::Headers;

    fn contact(value: &str) -> Contact {
        let mut h = Headers::new();
        h.push(HeaderName::Contact, value);
        h.contact().expect("contact parses")
    }

    fn req<'a>(
        contact: Option<&'a Contact>,
        expires: Option<u32>,
        cseq: u32,
        now_ms: u64,
    ) -> RegisterRequest<'a> {
        RegisterRequest {
            aor: "sip:1001@pbx.test",
            contact,
            expires,
            call_id: "call-1",
            cseq,
            path: Vec::new(),
            source: "192.0.2.7:5062".parse().expect("addr"),
            transport: "udp",
            user_agent: Some("phone"),
            now_ms,
        }
    }

    #[test]
    fn adds_several_contacts_with_own_expiry() {
        let c = contact("<sip:a@10.0.0.1>;expires=120, <sip:b@10.0.0.2>");
        let set = apply(&[], &req(Some(&c), Some(600), 1, 1_000), &Policy::default()).expect("ok");
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].expires_at_ms, 1_000 + 120_000);
        assert_eq!(set[1].expires_at_ms, 1_000 + 600_000);
        assert_eq!(set[0].source.to_string(), "192.0.2.7:5062");
    }

    #[test]
    fn default_expiry_and_max_cut() {
        let c = contact("<sip:a@10.0.0.1>");
        let p = Policy::default();
        let set = apply(&[], &req(Some(&c), None, 1, 0), &p).expect("ok");
        assert_eq!(set[0].expires_at_ms, u64::from(p.default_expires) * 1000);
        let set = apply(&[], &req(Some(&c), Some(999_999), 1, 0), &p).expect("ok");
        assert_eq!(set[0].expires_at_ms, u64::from(p.max_expires) * 1000);
    }

    #[test]
    fn too_brief_is_423() {
        let c = contact("<sip:a@10.0.0.1>;expires=5");
        let r = apply(&[], &req(Some(&c), None, 1, 0), &Policy::default());
        assert_eq!(r, Err(Refusal::IntervalTooBrief { min_expires: 60 }));
        assert_eq!(r.unwrap_err().status(), 423);
    }

    #[test]
    fn refresh_updates_and_zero_removes() {
        let c = contact("<sip:a@10.0.0.1>");
        let p = Policy::default();
        let set = apply(&[], &req(Some(&c), Some(300), 1, 0), &p).expect("ok");
        let set = apply(&set, &req(Some(&c), Some(600), 2, 10_000), &p).expect("ok");
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].expires_at_ms, 610_000);
        let set = apply(&set, &req(Some(&c), Some(0), 3, 20_000), &p).expect("ok");
        assert!(set.is_empty());
    }

    #[test]
    fn out_of_order_cseq_same_call_id_is_refused() {
        let c = contact("<sip:a@10.0.0.1>");
        let p = Policy::default();
        let set = apply(&[], &req(Some(&c), Some(300), 5, 0), &p).expect("ok");
        assert_eq!(
            apply(&set, &req(Some(&c), Some(300), 5, 1), &p),
            Err(Refusal::OutOfOrder)
        );
        assert_eq!(
            apply(&set, &req(Some(&c), Some(300), 4, 1), &p),
            Err(Refusal::OutOfOrder)
        );
        // Another Call-ID (a rebooted phone) may use any CSeq.
        let mut other = req(Some(&c), Some(300), 1, 1);
        other.call_id = "call-2";
        assert!(apply(&set, &other, &p).is_ok());
    }

    #[test]
    fn star_needs_expires_zero_and_removes_all() {
        let c = contact("<sip:a@10.0.0.1>, <sip:b@10.0.0.2>");
        let p = Policy::default();
        let set = apply(&[], &req(Some(&c), Some(300), 1, 0), &p).expect("ok");
        let star = Contact::Star;
        assert!(matches!(
            apply(&set, &req(Some(&star), Some(300), 2, 0), &p),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            apply(&set, &req(Some(&star), None, 2, 0), &p),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(
            apply(&set, &req(Some(&star), Some(0), 2, 0), &p),
            Ok(Vec::new())
        );
    }

    #[test]
    fn query_returns_current_set_without_expired() {
        let c = contact("<sip:a@10.0.0.1>;expires=60, <sip:b@10.0.0.2>;expires=600");
        let p = Policy::default();
        let set = apply(&[], &req(Some(&c), None, 1, 0), &p).expect("ok");
        let now = apply(&set, &req(None, None, 2, 61_000), &p).expect("ok");
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].contact, "sip:b@10.0.0.2");
    }

    #[test]
    fn max_contacts_is_enforced() {
        let p = Policy {
            max_contacts: 2,
            ..Policy::default()
        };
        let c = contact("<sip:a@10.0.0.1>, <sip:b@10.0.0.2>, <sip:c@10.0.0.3>");
        assert_eq!(
            apply(&[], &req(Some(&c), None, 1, 0), &p),
            Err(Refusal::TooManyContacts { max: 2 })
        );
    }

    #[test]
    fn q_values_parse_and_garbage_is_400() {
        let p = Policy::default();
        let c = contact("<sip:a@10.0.0.1>;q=0.7, <sip:b@10.0.0.2>;q=1");
        let set = apply(&[], &req(Some(&c), None, 1, 0), &p).expect("ok");
        assert_eq!((set[0].q, set[1].q), (Some(700), Some(1000)));
        for bad in ["q=2", "q=0.1234", "q=abc", "q=1.5"] {
            let c = contact(&format!("<sip:a@10.0.0.1>;{bad}"));
            assert!(
                matches!(
                    apply(&[], &req(Some(&c), None, 1, 0), &p),
                    Err(Refusal::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
