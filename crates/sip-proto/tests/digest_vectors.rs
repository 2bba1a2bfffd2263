//! Digest authentication against the published vectors (RFC 2617 §3.5,
//! RFC 7616 §3.9, with RFC 8760 for SIP and RFC 3261 §22): every block of
//! `tests/corpora/digest_vectors.txt` has its H(A1), H(A2), response and
//! userhash recomputed, and its account is then verified end to end with a
//! nonce issued here (the vectors' own nonces are not ours).

use std::borrow::Cow;
use std::collections::HashMap;

use sip_proto::digest::{
    self, Algorithm, DigestResponse, Failure, HashedUser, NonceCounts, NonceKey, Secret,
    SecretStore, Verdict, VerifyContext,
};
use sip_proto::header::Credentials;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/corpora/digest_vectors.txt"
);

type Block = HashMap<String, String>;

fn blocks() -> Vec<Block> {
    let text = std::fs::read_to_string(VECTORS).expect("read digest_vectors.txt");
    let mut out = Vec::new();
    let mut cur = Block::new();
    for line in text.lines().chain([""]) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let (k, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("line without ': ': {line}"));
        assert!(
            cur.insert(k.to_owned(), v.to_owned()).is_none(),
            "duplicate {k}"
        );
    }
    out
}

fn get<'a>(b: &'a Block, k: &str) -> &'a str {
    b.get(k)
        .unwrap_or_else(|| panic!("{}: no '{k}'", b.get("id").map_or("?", |s| s)))
}

/// A store that also finds users by userhash (as a registrar's index would).
struct Store {
    users: HashMap<String, Secret>,
    by_hash: HashMap<(Algorithm, String), String>,
}

impl SecretStore for Store {
    fn secret(&self, username: &str) -> Option<Cow<'_, Secret>> {
        self.users.get(username).map(Cow::Borrowed)
    }
    fn user_by_hash(&self, hash: &str, alg: Algorithm, _realm: &str) -> Option<HashedUser<'_>> {
        let name = self.by_hash.get(&(alg, hash.to_owned()))?;
        Some(HashedUser {
            username: Cow::Borrowed(name),
            secret: Cow::Borrowed(self.users.get(name)?),
        })
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The Authorization value of a block, with `nonce` and `response` given.
fn credentials(b: &Block, nonce: &str, response: &str) -> Credentials {
    let userhash = b.get("userhash").is_some_and(|u| u == "true");
    let username = if userhash {
        get(b, "username_hash")
    } else {
        get(b, "username")
    };
    let value = format!(
        "Digest username={}, realm={}, uri={}, algorithm={}, nonce={}, nc={}, cnonce={}, qop={}, response={}, opaque={}, userhash={}",
        quoted(username),
        quoted(get(b, "realm")),
        quoted(get(b, "uri")),
        get(b, "algorithm"),
        quoted(nonce),
        get(b, "nc"),
        quoted(get(b, "cnonce")),
        get(b, "qop"),
        quoted(response),
        quoted(get(b, "opaque")),
        userhash,
    );
    Credentials::parse(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

#[test]
fn every_vector_hashes_right() {
    let blocks = blocks();
    assert!(blocks.len() >= 4, "only {} vectors", blocks.len());
    let mut userhashes = 0;
    for b in &blocks {
        let id = get(b, "id");
        let alg: Algorithm = get(b, "algorithm").parse().unwrap();
        let (user, realm) = (get(b, "username"), get(b, "realm"));
        let ha1 = digest::ha1(alg, user, realm, get(b, "password"));
        assert_eq!(ha1, get(b, "ha1"), "{id}: ha1");
        let ha2 = digest::ha2(alg, get(b, "method"), get(b, "uri"));
        assert_eq!(ha2, get(b, "ha2"), "{id}: ha2");
        let resp = digest::response(
            alg,
            &ha1,
            get(b, "nonce"),
            get(b, "nc"),
            get(b, "cnonce"),
            get(b, "qop"),
            &ha2,
        );
        assert_eq!(resp, get(b, "response"), "{id}: response");
        if b.get("userhash").is_some_and(|u| u == "true") {
            userhashes += 1;
            assert_eq!(
                digest::userhash(alg, user, realm),
                get(b, "username_hash"),
                "{id}: username_hash"
            );
        }
        // The same from a stored H(A1) instead of the password.
        let stored = Secret::from_ha1(alg, get(b, "ha1")).unwrap();
        assert_eq!(
            stored.ha1_for(alg, user, realm).as_deref(),
            Some(ha1.as_str())
        );

        // The vector as a client sends it parses to exactly its parameters;
        // its nonce is not ours, so verify() refuses it as such.
        let creds = credentials(b, get(b, "nonce"), get(b, "response"));
        let r = DigestResponse::from_credentials(&creds).unwrap();
        assert_eq!(r.response, get(b, "response"), "{id}");
        assert_eq!(r.uri, get(b, "uri"), "{id}");
        assert_eq!(r.algorithm.hash, alg, "{id}");
        assert_eq!(r.opaque.as_deref(), Some(get(b, "opaque")), "{id}");
        let key = NonceKey::new([5; 32]);
        let ctx = VerifyContext::new(realm, &key, 300);
        let users = HashMap::from([(user.to_owned(), Secret::password(get(b, "password")))]);
        let mut counts = NonceCounts::new(16, 300);
        let v = digest::verify(
            &creds,
            get(b, "method"),
            &ctx,
            &users,
            &mut counts,
            1_700_000_000,
        );
        assert_eq!(v, Verdict::Failed(Failure::InvalidNonce), "{id}");
    }
    assert!(userhashes >= 1);
}

#[test]
fn every_vector_account_verifies_with_our_nonces() {
    const NOW: u64 = 1_700_000_000;
    for b in blocks() {
        let id = get(&b, "id");
        let alg: Algorithm = get(&b, "algorithm").parse().unwrap();
        let (user, realm, method, uri) = (
            get(&b, "username"),
            get(&b, "realm"),
            get(&b, "method"),
            get(&b, "uri"),
        );
        let key = NonceKey::new([9; 32]);
        let nonce = key.issue(NOW, [1; 12]);
        let ha1 = digest::ha1(alg, user, realm, get(&b, "password"));
        let ha2 = digest::ha2(alg, method, uri);
        let resp = digest::response(
            alg,
            &ha1,
            &nonce,
            get(&b, "nc"),
            get(&b, "cnonce"),
            "auth",
            &ha2,
        );
        let creds = credentials(&b, &nonce, &resp);

        // Password and precomputed H(A1) accounts both work.
        for secret in [
            Secret::password(get(&b, "password")),
            Secret::from_ha1(alg, get(&b, "ha1")).unwrap(),
        ] {
            let store = Store {
                users: HashMap::from([(user.to_owned(), secret)]),
                by_hash: HashMap::from([(
                    (alg, digest::userhash(alg, user, realm)),
                    user.to_owned(),
                )]),
            };
            let ctx = VerifyContext::new(realm, &key, 300);
            let mut counts = NonceCounts::new(16, 300);
            let v = digest::verify(&creds, method, &ctx, &store, &mut counts, NOW + 10);
            assert_eq!(
                v,
                Verdict::Ok {
                    username: user.to_owned(),
                    algorithm: alg.into(),
                    uri: uri.to_owned(),
                },
                "{id}"
            );
            // The same request again is a replay.
            let v = digest::verify(&creds, method, &ctx, &store, &mut counts, NOW + 11);
            assert!(
                matches!(v, Verdict::Failed(Failure::Replayed { .. })),
                "{id}: {v:?}"
            );
            // Too late: stale (the response is right).
            let mut fresh = NonceCounts::new(16, 300);
            let v = digest::verify(&creds, method, &ctx, &store, &mut fresh, NOW + 301);
            assert_eq!(v.challenge_stale(), Some(true), "{id}: {v:?}");
        }

        // A wrong password and an unknown user are refused alike.
        let store = Store {
            users: HashMap::from([(user.to_owned(), Secret::password("not it"))]),
            by_hash: HashMap::from([((alg, digest::userhash(alg, user, realm)), user.to_owned())]),
        };
        let empty = Store {
            users: HashMap::new(),
            by_hash: HashMap::new(),
        };
        let ctx = VerifyContext::new(realm, &key, 300);
        let mut counts = NonceCounts::new(16, 300);
        let wrong = digest::verify(&creds, method, &ctx, &store, &mut counts, NOW);
        let unknown = digest::verify(&creds, method, &ctx, &empty, &mut counts, NOW);
        assert!(
            matches!(wrong, Verdict::Failed(Failure::WrongResponse(_))),
            "{id}: {wrong:?}"
        );
        assert!(
            matches!(unknown, Verdict::Failed(Failure::UnknownUser(_))),
            "{id}: {unknown:?}"
        );
        assert_eq!(wrong.challenge_stale(), unknown.challenge_stale());
    }
}
