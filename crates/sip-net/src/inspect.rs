//! What the endpoint answers by itself: Max-Forwards (§16.3: 483, checked
//! first because a PBX forwards calls), then RFC 3261 §8.2 in order: method
//! inspection (§8.2.1: 405 + Allow, 501),
//! Request-URI scheme (§8.2.2.1: 416), Require (§8.2.2.3: 420 + Unsupported),
//! and OPTIONS (§11.2: 200 with Allow, Accept, Supported).

use sip_proto::{HeaderName, Method, Request, Uri};

/// The endpoint's verdict on a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with this status and these extra headers.
    Answer {
        /// Status code.
        status: u16,
        /// Extra headers (name, value) to add to the response.
        headers: Vec<(HeaderName, String)>,
    },
    /// Hand to the transaction user (a served method that passed the checks).
    Serve,
}

/// What the endpoint serves and supports, for the checks and for OPTIONS.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Methods answered for real (always includes OPTIONS).
    pub allow: Vec<Method>,
    /// Option tags this endpoint supports (RFC 3261 §19.2).
    pub supported: Vec<String>,
    /// Body types accepted.
    pub accept: Vec<String>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            allow: vec![Method::Options],
            supported: Vec::new(),
            accept: vec!["application/sdp".to_owned()],
        }
    }
}

impl Capabilities {
    /// The `Allow` header value: served methods, plus ACK and CANCEL which
    /// every UAS processes (RFC 3261 §9.2, §17.2.3).
    pub fn allow_value(&self) -> String {
        let mut methods: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
        for m in ["ACK", "CANCEL"] {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        methods.join(", ")
    }

    fn serves(&self, method: &Method) -> bool {
        self.allow.contains(method)
    }
}

/// Whether RFC 3261 (and its common extensions) defines `method`: such a
/// request that we do not serve gets 405, an unknown one 501 (§8.2.1).
fn is_known(method: &Method) -> bool {
    !matches!(method, Method::Extension(_))
}

/// Runs the §8.2 checks on a new request (not ACK or CANCEL; those go to
/// transaction matching first).
pub fn inspect(req: &Request, caps: &Capabilities) -> Verdict {
    // §16.3 step 2 and §11: Max-Forwards 0 means "do not forward"; an
    // OPTIONS with 0 is answered by us as its final recipient (§16.3 allows
    // it and keep-alive tools send exactly that), anything else gets 483.
    if req.max_forwards() == Some(0) && req.method != Method::Options {
        return answer(483);
    }
    // §8.2.1: method inspection.
    if !caps.serves(&req.method) {
        let status = if is_known(&req.method) { 405 } else { 501 };
        let headers = vec![(HeaderName::Allow, caps.allow_value())];
        return Verdict::Answer { status, headers };
    }
    // §8.2.2.1: Request-URI scheme.
    if !matches!(req.uri, Uri::Sip(_) | Uri::Tel(_)) {
        return answer(416);
    }
    // §8.2.2.3: Require. ACK and CANCEL never reach here.
    let unsupported: Vec<String> = req
        .headers
        .tokens(&HeaderName::Require)
        .into_iter()
        .filter(|tag| !caps.supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
        .collect();
    if !unsupported.is_empty() {
        return Verdict::Answer {
            status: 420,
            headers: vec![(HeaderName::Unsupported, unsupported.join(", "))],
        };
    }
    if req.method == Method::Options {
        let mut headers = vec![
            (HeaderName::Allow, caps.allow_value()),
            (HeaderName::Accept, caps.accept.join(", ")),
        ];
        // Supported is sent even when empty: it tells the asker "no extensions".
        headers.push((HeaderName::Supported, caps.supported.join(", ")));
        return Verdict::Answer {
            status: 200,
            headers,
        };
    }
    Verdict::Serve
}

fn answer(status: u16) -> Verdict {
    Verdict::Answer {
        status,
        headers: Vec::new(),
    }
}
