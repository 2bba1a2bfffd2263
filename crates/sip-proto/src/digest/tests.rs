//! End-to-end tests of digest verification (RFC 7616, RFC 8760, RFC 3261
//! §22.4) with nonces issued here.

use std::borrow::Cow;
use std::collections::HashMap;

use super::*;
use crate::header::{Challenge, Credentials, Params};

const REALM: &str = "pbx.example.com";
const URI: &str = "sip:pbx.example.com";
const T: u64 = 1_700_000_000;
const MAX_AGE: u64 = 300;

struct Fixture {
    key: NonceKey,
    counts: NonceCounts,
    users: HashMap<String, Secret>,
}

impl Fixture {
    fn new() -> Fixture {
        let mut users = HashMap::new();
        users.insert("1001".to_owned(), Secret::password("s3cret"));
        let md5_only = ha1(Algorithm::Md5, "1002", REALM, "hunter2");
        users.insert(
            "1002".to_owned(),
            Secret::from_ha1(Algorithm::Md5, &md5_only).unwrap(),
        );
        Fixture {
            key: NonceKey::new([42; 32]),
            counts: NonceCounts::new(1000, MAX_AGE),
            users,
        }
    }

    fn nonce(&self, at: u64) -> String {
        self.key.issue(at, [at as u8; 12])
    }

    fn verify_at(&mut self, value: &str, now: u64) -> Verdict {
        let creds = Credentials::parse(value).unwrap();
        let ctx = VerifyContext::new(REALM, &self.key, MAX_AGE);
        verify(&creds, "REGISTER", &ctx, &self.users, &mut self.counts, now)
    }
}

fn answer<'a>(
    alg: Algorithm,
    user: &'a str,
    pw: &'a str,
    nonce: &'a str,
    nc: u32,
) -> DigestAnswer<'a> {
    DigestAnswer {
        algorithm: alg,
        username: user,
        password: pw,
        realm: REALM,
        nonce,
        method: "REGISTER",
        uri: URI,
        nc,
        cnonce: "0a4f113b",
        opaque: None,
    }
}

#[test]
fn md5_sha256_sha512_256_end_to_end() {
    for alg in Algorithm::ALL {
        let mut f = Fixture::new();
        let n = f.nonce(T);
        let v = f.verify_at(
            &answer(alg, "1001", "s3cret", &n, 1).to_header_value(),
            T + 1,
        );
        assert_eq!(
            v,
            Verdict::Ok {
                username: "1001".into(),
                algorithm: alg.into(),
                uri: URI.into()
            }
        );
        assert_eq!(v.challenge_stale(), None);
    }
}

#[test]
fn precomputed_ha1_and_unavailable_algorithm() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let v = f.verify_at(
        &answer(Algorithm::Md5, "1002", "hunter2", &n, 1).to_header_value(),
        T,
    );
    assert!(matches!(v, Verdict::Ok { .. }), "{v:?}");
    let v = f.verify_at(
        &answer(Algorithm::Sha256, "1002", "hunter2", &n, 2).to_header_value(),
        T,
    );
    assert_eq!(
        v,
        Verdict::Failed(Failure::AlgorithmUnavailable {
            username: "1002".into(),
            algorithm: Algorithm::Sha256
        })
    );
    assert_eq!(v.challenge_stale(), Some(false));
}

#[test]
fn nonce_count_replay() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let first = answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value();
    assert!(matches!(f.verify_at(&first, T), Verdict::Ok { .. }));
    // The very same request again: replay.
    assert_eq!(
        f.verify_at(&first, T + 1),
        Verdict::Failed(Failure::Replayed {
            username: "1001".into(),
            nc: 1
        })
    );
    for nc in [2, 3, 10] {
        let v = f.verify_at(
            &answer(Algorithm::Md5, "1001", "s3cret", &n, nc).to_header_value(),
            T + 2,
        );
        assert!(matches!(v, Verdict::Ok { .. }), "nc {nc}: {v:?}");
    }
    let v = f.verify_at(
        &answer(Algorithm::Md5, "1001", "s3cret", &n, 9).to_header_value(),
        T + 3,
    );
    assert!(
        matches!(v, Verdict::Failed(Failure::Replayed { nc: 9, .. })),
        "{v:?}"
    );
}

#[test]
fn evicted_nonce_is_stale_never_accepted() {
    let mut f = Fixture::new();
    f.counts = NonceCounts::new(2, MAX_AGE);
    let old = f.nonce(T);
    let a = answer(Algorithm::Md5, "1001", "s3cret", &old, 1).to_header_value();
    assert!(matches!(f.verify_at(&a, T), Verdict::Ok { .. }));
    for t in [T + 1, T + 2] {
        let n = f.nonce(t);
        let v = f.verify_at(
            &answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value(),
            t,
        );
        assert!(matches!(v, Verdict::Ok { .. }));
    }
    // `old` was pushed out: its replay gets a stale challenge, not a 200.
    let v = f.verify_at(&a, T + 3);
    assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    assert_eq!(v.challenge_stale(), Some(true));
}

#[test]
fn stale_only_when_the_response_is_right() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let late = T + MAX_AGE + 1;
    let v = f.verify_at(
        &answer(Algorithm::Sha256, "1001", "s3cret", &n, 1).to_header_value(),
        late,
    );
    assert_eq!(
        v,
        Verdict::Stale {
            username: "1001".into(),
            algorithm: Algorithm::Sha256.into()
        }
    );
    assert_eq!(v.challenge_stale(), Some(true));
    let v = f.verify_at(
        &answer(Algorithm::Sha256, "1001", "wrong", &n, 1).to_header_value(),
        late,
    );
    assert_eq!(v, Verdict::Failed(Failure::WrongResponse("1001".into())));
    let v = f.verify_at(
        &answer(Algorithm::Sha256, "9999", "x", &n, 1).to_header_value(),
        late,
    );
    assert_eq!(v.challenge_stale(), Some(false));
}

#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let wrong = f.verify_at(
        &answer(Algorithm::Md5, "1001", "guess", &n, 1).to_header_value(),
        T,
    );
    let unknown = f.verify_at(
        &answer(Algorithm::Md5, "1005", "guess", &n, 2).to_header_value(),
        T,
    );
    // Both refused, both answered with a plain (non-stale) challenge; only
    // the log reason differs.
    assert_eq!(wrong.challenge_stale(), Some(false));
    assert_eq!(unknown.challenge_stale(), Some(false));
    assert_eq!(
        wrong,
        Verdict::Failed(Failure::WrongResponse("1001".into()))
    );
    assert_eq!(
        unknown,
        Verdict::Failed(Failure::UnknownUser("1005".into()))
    );
    // Neither touched the replay tracker.
    assert!(f.counts.is_empty());
    // An unknown user's guess of the dummy password is not let in.
    let v = f.verify_at(
        &answer(
            Algorithm::Md5,
            "1005",
            "\u{0}switchboard-unknown-user\u{0}",
            &n,
            3,
        )
        .to_header_value(),
        T,
    );
    assert_eq!(v, Verdict::Failed(Failure::UnknownUser("1005".into())));
}

#[test]
fn sess_variant() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let alg = Algorithm::Sha256;
    let h1 = ha1_sess(alg, &ha1(alg, "1001", REALM, "s3cret"), &n, "cn");
    let h2 = ha2(alg, "REGISTER", URI);
    let resp = response(alg, &h1, &n, "00000001", "cn", "auth", &h2);
    let value = format!(
        "Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{n}\", uri=\"{URI}\", response=\"{resp}\", algorithm=sha-256-SESS, cnonce=\"cn\", qop=auth, nc=00000001"
    );
    let v = f.verify_at(&value, T);
    assert!(
        matches!(
            v,
            Verdict::Ok {
                algorithm: DigestAlgorithm { session: true, .. },
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn rfc2069_answers_only_when_allowed_and_once() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let alg = Algorithm::Md5;
    let resp = response_no_qop(
        alg,
        &ha1(alg, "1001", REALM, "s3cret"),
        &n,
        &ha2(alg, "REGISTER", URI),
    );
    let value = format!(
        "Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{n}\", uri=\"{URI}\", response=\"{resp}\""
    );
    assert_eq!(
        f.verify_at(&value, T),
        Verdict::Failed(Failure::Missing("qop"))
    );
    let creds = Credentials::parse(&value).unwrap();
    let mut ctx = VerifyContext::new(REALM, &f.key, MAX_AGE);
    ctx.allow_no_qop = true;
    let v = verify(&creds, "REGISTER", &ctx, &f.users, &mut f.counts, T);
    assert!(matches!(v, Verdict::Ok { .. }), "{v:?}");
    let v = verify(&creds, "REGISTER", &ctx, &f.users, &mut f.counts, T);
    assert!(
        matches!(v, Verdict::Failed(Failure::Replayed { .. })),
        "{v:?}"
    );
}

#[test]
fn method_and_uri_are_covered() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let a = answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value();
    let creds = Credentials::parse(&a).unwrap();
    let ctx = VerifyContext::new(REALM, &f.key, MAX_AGE);
    let v = verify(&creds, "INVITE", &ctx, &f.users, &mut f.counts, T);
    assert_eq!(v, Verdict::Failed(Failure::WrongResponse("1001".into())));
    let tampered = a.replace(URI, "sip:evil.example.com");
    assert!(matches!(
        f.verify_at(&tampered, T),
        Verdict::Failed(Failure::WrongResponse(_))
    ));
}

#[test]
fn refusals_before_hashing() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let good = answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value();
    let cases: Vec<(String, Failure)> = vec![
        (good.replacen("Digest", "Basic", 1), Failure::NotDigest),
        (
            good.replace(REALM, "other.example.com"),
            Failure::RealmMismatch("other.example.com".into()),
        ),
        (good.replace(&n, &f.nonce(T + 3600)), Failure::InvalidNonce),
        (
            good.replace(&n, &NonceKey::new([1; 32]).issue(T, [0; 12])),
            Failure::InvalidNonce,
        ),
        (
            good.replace(&n, "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
            Failure::InvalidNonce,
        ),
        (
            good.replace("qop=auth", "qop=auth-int"),
            Failure::UnsupportedQop("auth-int".into()),
        ),
        (
            good.replace("algorithm=MD5", "algorithm=SHA-1"),
            Failure::UnsupportedAlgorithm("SHA-1".into()),
        ),
        (
            good.replace("nc=00000001", "nc=1"),
            Failure::Malformed(Malformed::NonceCount),
        ),
        (
            good.replace("nc=00000001", "nc=00000000"),
            Failure::Malformed(Malformed::NonceCount),
        ),
        (
            good.replace("nc=00000001", "nc=0000000g"),
            Failure::Malformed(Malformed::NonceCount),
        ),
        (good.replace(", nc=00000001", ""), Failure::Missing("nc")),
        (
            good.replace("cnonce=", "xcnonce="),
            Failure::Missing("cnonce"),
        ),
        (
            good.replace("response=", "xresponse="),
            Failure::Missing("response"),
        ),
        (
            good.replace("username=", "xusername="),
            Failure::Missing("username"),
        ),
        (
            format!("{good}, NONCE=\"{n}\""),
            Failure::Malformed(Malformed::Duplicate("nonce")),
        ),
        (
            format!("{good}, userhash=maybe"),
            Failure::Malformed(Malformed::Userhash),
        ),
        (
            format!("{good}, opaque=\"{}\"", "o".repeat(5000)),
            Failure::Malformed(Malformed::TooLong("opaque")),
        ),
    ];
    for (value, want) in cases {
        assert_eq!(f.verify_at(&value, T), Verdict::Failed(want), "{value}");
    }
    let bad_resp = {
        let mut c = Credentials::parse(&good).unwrap();
        c.params.set("response", Some("\"not hex\""));
        c
    };
    let ctx = VerifyContext::new(REALM, &f.key, MAX_AGE);
    assert_eq!(
        verify(&bad_resp, "REGISTER", &ctx, &f.users, &mut f.counts, T),
        Verdict::Failed(Failure::Malformed(Malformed::Response))
    );
    // Messages say what happened.
    assert_eq!(
        Failure::Missing("nc").to_string(),
        "digest credentials lack the 'nc' parameter"
    );
}

#[test]
fn lenient_forms_are_accepted() {
    let mut f = Fixture::new();
    let n = f.nonce(T);
    let good = answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value();
    // Quoted qop and algorithm, uppercase response, parameter name case.
    let r = answer(Algorithm::Md5, "1001", "s3cret", &n, 1).response();
    let v = good
        .replace("qop=auth", "QOP=\"auth\"")
        .replace("algorithm=MD5", "algorithm=\"md5\"")
        .replace(&r, &r.to_uppercase());
    assert!(matches!(f.verify_at(&v, T), Verdict::Ok { .. }), "{v}");
    // No algorithm means MD5.
    let n2 = f.nonce(T + 1);
    let v = answer(Algorithm::Md5, "1001", "s3cret", &n2, 1)
        .to_header_value()
        .replace(", algorithm=MD5", "");
    assert!(matches!(f.verify_at(&v, T + 1), Verdict::Ok { .. }), "{v}");
}

#[test]
fn escaped_username_and_realm() {
    let realm = "pbx \"main\" \\ office";
    let key = NonceKey::new([3; 32]);
    let mut counts = NonceCounts::new(10, MAX_AGE);
    let mut users = HashMap::new();
    users.insert("a\"b\\c".to_owned(), Secret::password("pw"));
    let n = key.issue(T, [0; 12]);
    let value = DigestAnswer {
        algorithm: Algorithm::Sha256,
        username: "a\"b\\c",
        password: "pw",
        realm,
        nonce: &n,
        method: "INVITE",
        uri: "sip:1002@pbx.example.com",
        nc: 1,
        cnonce: "x\"y",
        opaque: Some("op"),
    }
    .to_header_value();
    let creds = Credentials::parse(&value).unwrap();
    let ctx = VerifyContext::new(realm, &key, MAX_AGE);
    let v = verify(&creds, "INVITE", &ctx, &users, &mut counts, T);
    assert!(
        matches!(v, Verdict::Ok { ref username, .. } if username == "a\"b\\c"),
        "{v:?}"
    );
}

#[test]
fn userhash_with_an_index() {
    struct Indexed(HashMap<String, Secret>);
    impl SecretStore for Indexed {
        fn secret(&self, username: &str) -> Option<Cow<'_, Secret>> {
            self.0.get(username).map(Cow::Borrowed)
        }
        fn user_by_hash(&self, h: &str, alg: Algorithm, realm: &str) -> Option<HashedUser<'_>> {
            // A test store may search; a real one keeps an index.
            self.0
                .iter()
                .find(|(name, _)| userhash(alg, name, realm) == h)
                .map(|(name, s)| HashedUser {
                    username: Cow::Borrowed(name.as_str()),
                    secret: Cow::Borrowed(s),
                })
        }
    }
    let f = Fixture::new();
    let store = Indexed(f.users.clone());
    let mut counts = NonceCounts::new(10, MAX_AGE);
    let alg = Algorithm::Sha512_256;
    let n = f.nonce(T);
    let uh = userhash(alg, "1001", REALM);
    let r = answer(alg, "1001", "s3cret", &n, 1).response();
    let value = format!(
        "Digest username=\"{uh}\", realm=\"{REALM}\", uri=\"{URI}\", algorithm=SHA-512-256, nonce=\"{n}\", nc=00000001, cnonce=\"0a4f113b\", qop=auth, response=\"{r}\", userhash=true"
    );
    let creds = Credentials::parse(&value).unwrap();
    let ctx = VerifyContext::new(REALM, &f.key, MAX_AGE);
    let v = verify(&creds, "REGISTER", &ctx, &store, &mut counts, T);
    assert!(
        matches!(v, Verdict::Ok { ref username, .. } if username == "1001"),
        "{v:?}"
    );
    // A plain map finds no one by hash: the same refusal as any unknown user.
    let v = verify(&creds, "REGISTER", &ctx, &f.users, &mut counts, T);
    assert!(
        matches!(v, Verdict::Failed(Failure::UnknownUser(_))),
        "{v:?}"
    );
    // Closures work as stores too.
    let by_fn = SecretFn(|u: &str| (u == "1001").then(|| Secret::password("s3cret")));
    let n2 = f.nonce(T + 1);
    let c2 = Credentials::parse(&answer(alg, "1001", "s3cret", &n2, 1).to_header_value()).unwrap();
    assert!(matches!(
        verify(&c2, "REGISTER", &ctx, &by_fn, &mut counts, T + 1),
        Verdict::Ok { .. }
    ));
}

#[test]
fn challenge_values() {
    let v = challenge_value("pbx.example.com", "abc", Algorithm::Md5, None, false);
    assert_eq!(
        v,
        "Digest realm=\"pbx.example.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\""
    );
    let v = challenge_value("a \"b\" \\c", "n", Algorithm::Sha256, Some("op"), true);
    assert_eq!(
        v,
        "Digest realm=\"a \\\"b\\\" \\\\c\", nonce=\"n\", opaque=\"op\", algorithm=SHA-256, qop=\"auth\", stale=true"
    );
    let c = Challenge::parse(&v).unwrap();
    assert_eq!(c.params.unquoted("realm").as_deref(), Some("a \"b\" \\c"));
    assert_eq!(c.params.value("stale"), Some("true"));
    assert_eq!(c.params.value("algorithm"), Some("SHA-256"));
}

/// xorshift64*: a fixed-seed generator for the garbage loop.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "\"",
            "\\",
            "a",
            "0",
            "f",
            "auth",
            "MD5",
            "-sess",
            "SHA-256",
            "00000001",
            ",",
            "=",
            " ",
            "é",
            "\u{0}",
            "true",
            "ffffffff",
            "pbx.example.com",
            "1001",
        ];
        let len = match self.below(20) {
            0 => 3000,
            n => n,
        };
        (0..len).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
}

#[test]
fn random_garbage_never_panics() {
    const NAMES: &[&str] = &[
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "nc",
        "qop",
        "opaque",
        "userhash",
        "x",
    ];
    let mut f = Fixture::new();
    let good_nonce = f.nonce(T);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut params = Params::new();
        for _ in 0..rng.below(14) {
            let name = NAMES[rng.below(NAMES.len())];
            let value = match rng.below(6) {
                0 => None,
                1 if name == "nonce" => Some(good_nonce.clone()),
                2 => Some(format!("\"{}\"", rng.text())),
                _ => Some(rng.text()),
            };
            params.push(name, value);
        }
        let scheme = if rng.below(10) == 0 {
            "Basic"
        } else {
            "Digest"
        };
        let creds = Credentials {
            scheme: scheme.into(),
            params,
        };
        let ctx = VerifyContext {
            allow_no_qop: i % 2 == 0,
            ..VerifyContext::new(REALM, &f.key, MAX_AGE)
        };
        let v = verify(
            &creds,
            "REGISTER",
            &ctx,
            &f.users,
            &mut f.counts,
            T + rng.next() % 1000,
        );
        if matches!(v, Verdict::Ok { .. }) {
            accepted += 1;
        }
        // Whatever parses as a header value is also fine.
        if let Ok(c) = Credentials::parse(&format!("Digest {}", rng.text())) {
            let _ = verify(&c, "REGISTER", &ctx, &f.users, &mut f.counts, T);
        }
        let _ = f.key.verify(&rng.text(), T, MAX_AGE);
    }
    assert_eq!(accepted, 0);
}

#[test]
fn a_nonce_issued_to_one_client_fails_from_another_and_is_no_guess() {
    let mut f = Fixture::new();
    let n = f.key.issue_for(T, [5; 12], &[127, 0, 0, 1]);
    let creds =
        Credentials::parse(&answer(Algorithm::Md5, "1001", "wrong", &n, 1).to_header_value())
            .unwrap();
    let verify_from = |f: &mut Fixture, client: &[u8]| {
        let ctx = VerifyContext::new(REALM, &f.key, MAX_AGE).for_client(client);
        verify(&creds, "REGISTER", &ctx, &f.users, &mut f.counts, T)
    };
    // From the client it was issued to: a wrong password, a guess.
    match verify_from(&mut f, &[127, 0, 0, 1]) {
        Verdict::Failed(failure) => {
            assert_eq!(failure, Failure::WrongResponse("1001".into()));
            assert!(failure.is_guess());
        }
        other => panic!("{other:?}"),
    }
    // From anyone else: not our nonce, and not a guess.
    match verify_from(&mut f, &[127, 0, 0, 2]) {
        Verdict::Failed(failure) => {
            assert_eq!(failure, Failure::InvalidNonce);
            assert!(!failure.is_guess());
        }
        other => panic!("{other:?}"),
    }
    // The right password from the right client is accepted.
    let good =
        Credentials::parse(&answer(Algorithm::Md5, "1001", "s3cret", &n, 1).to_header_value())
            .unwrap();
    let ctx = VerifyContext::new(REALM, &f.key, MAX_AGE).for_client(&[127, 0, 0, 1]);
    assert!(matches!(
        verify(&good, "REGISTER", &ctx, &f.users, &mut f.counts, T),
        Verdict::Ok { .. }
    ));
    assert!(
        !Failure::Replayed {
            username: "1001".into(),
            nc: 1
        }
        .is_guess()
    );
    assert!(Failure::UnknownUser("x".into()).is_guess());
}

#[test]
fn digest_uri_must_name_the_request_uri() {
    let req = crate::Uri::parse("sip:1002@pbx.example.com;transport=tcp").unwrap();
    for same in [
        "sip:1002@pbx.example.com;transport=tcp",
        "sip:1002@PBX.example.com",
        " sip:1002@pbx.example.com;user=phone",
        // SIPp: the host and port, no user.
        "sip:pbx.example.com",
    ] {
        assert!(uri_matches(same, &req), "{same}");
    }
    for other in [
        "sip:1003@pbx.example.com",
        "sip:1002@evil.example.com",
        "sip:1002@pbx.example.com:5070",
        "sips:1002@pbx.example.com",
        "sip:pbx.example.com:5060",
        "sip:other.example.com",
        "tel:1002",
        "not a uri",
        "",
    ] {
        assert!(!uri_matches(other, &req), "{other}");
    }
    let tel = crate::Uri::parse("tel:+15550001").unwrap();
    assert!(uri_matches("tel:+15550001", &tel));
    assert!(!uri_matches("tel:+15550002", &tel));
}
