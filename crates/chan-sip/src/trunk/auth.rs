//! Answering a carrier's 401/407 (RFC 3261 §22.2, RFC 7616 §3.4, RFC 8760):
//! the first Digest challenge with an algorithm we know (the carrier lists
//! its preferred first), MD5 or SHA-256, `qop=auth` when offered, the
//! RFC 2069 form when not.

use sip_proto::digest::{self, Algorithm, DigestAnswer};
use sip_proto::{HeaderName, Response};

/// The header (Authorization for 401, Proxy-Authorization for 407) and
/// value answering `response`'s challenge for `method` `uri`, or `None`
/// when it has no Digest challenge we can answer.
pub(crate) fn authorization(
    response: &Response,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Option<(HeaderName, String)> {
    let (challenges, header) = match response.status {
        401 => (
            response.headers.www_authenticate().ok()?,
            HeaderName::Authorization,
        ),
        407 => (
            response.headers.proxy_authenticate().ok()?,
            HeaderName::ProxyAuthorization,
        ),
        _ => return None,
    };
    for c in challenges
        .iter()
        .filter(|c| c.scheme.eq_ignore_ascii_case("Digest"))
    {
        let algorithm = match c.params.unquoted("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match a.parse::<Algorithm>() {
                Ok(alg) => alg,
                Err(_) => continue,
            },
        };
        let realm = c.params.unquoted("realm").unwrap_or_default();
        let nonce = c.params.unquoted("nonce").unwrap_or_default();
        let opaque = c.params.unquoted("opaque");
        let qop_auth = c
            .params
            .unquoted("qop")
            .is_some_and(|q| q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")));
        if qop_auth {
            let cnonce = format!("{:016x}", rand::random::<u64>());
            let answer = DigestAnswer {
                algorithm,
                username: user,
                password,
                realm: &realm,
                nonce: &nonce,
                method,
                uri,
                nc: 1,
                cnonce: &cnonce,
                opaque: opaque.as_deref(),
            };
            return Some((header, answer.to_header_value()));
        }
        let ha1 = digest::ha1(algorithm, user, &realm, password);
        let ha2 = digest::ha2(algorithm, method, uri);
        let response = digest::response_no_qop(algorithm, &ha1, &nonce, &ha2);
        let mut value = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
            quote(user),
            quote(&realm),
            quote(&nonce),
            quote(uri),
            algorithm.name(),
        );
        if let Some(o) = opaque {
            value.push_str(", opaque=");
            value.push_str(&quote(&o));
        }
        return Some((header, value));
    }
    None
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_proto::Headers;

    fn challenge(status: u16, name: HeaderName, value: &str) -> Response {
        let mut headers = Headers::new();
        headers.push(name, value);
        Response {
            status,
            reason: String::new(),
            headers,
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn answers_the_first_known_algorithm_in_the_right_header() {
        let mut r = challenge(
            407,
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"c\", nonce=\"n\", algorithm=SHA-512-256-sess, qop=\"auth\"",
        );
        r.headers.push(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"c\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"",
        );
        let (h, v) = authorization(&r, "INVITE", "sip:1@c", "u", "p").unwrap();
        assert_eq!(h, HeaderName::ProxyAuthorization);
        assert!(v.contains("algorithm=SHA-256"), "{v}");
        assert!(v.contains("qop=auth"), "{v}");
    }

    #[test]
    fn answers_rfc2069_without_qop() {
        let r = challenge(
            401,
            HeaderName::WwwAuthenticate,
            "Digest realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        );
        let (h, v) = authorization(&r, "REGISTER", "sip:biloxi.com", "bob", "zanzibar").unwrap();
        assert_eq!(h, HeaderName::Authorization);
        let ha1 = digest::ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
        let ha2 = digest::ha2(Algorithm::Md5, "REGISTER", "sip:biloxi.com");
        let want = digest::response_no_qop(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            &ha2,
        );
        assert!(v.contains(&format!("response=\"{want}\"")), "{v}");
        assert!(!v.contains("qop"), "{v}");
        assert!(
            authorization(
                &challenge(403, HeaderName::WwwAuthenticate, "x"),
                "A",
                "b",
                "c",
                "d"
            )
            .is_none()
        );
    }
}
