//! End-to-end tests of signing and verification with certificates made in
//! the test: a root CA, an intermediate, a leaf (the signer), a second,
//! unrelated CA, and a local HTTPS server for the real fetcher.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::{
    Attestation, CertFetcher, FetchError, FetchFuture, HttpsFetcher, IdentityHeader, Passport,
    PassportRequest, Reason, SignError, Signer, TrustAnchors, Verification, Verifier,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

const X5U: &str = "https://cert.example.test/sti/leaf.pem";

fn now() -> SystemTime {
    SystemTime::now()
}

fn now_secs() -> u64 {
    now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A root, an intermediate under it, and a leaf under that.
struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    /// The leaf's certificate chain as served at x5u: leaf, intermediate.
    chain: String,
    /// The leaf's key, PKCS#8 PEM.
    leaf_key: String,
    /// The intermediate CA, PEM.
    inter_pem: String,
    /// The leaf alone, DER.
    leaf_der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        Self::with_leaf(|_| {})
    }

    fn with_leaf(tweak: impl FnOnce(&mut CertificateParams)) -> Self {
        let root = ca("Test STI-PA Root");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "Test STI-CA Intermediate");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let inter =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &root).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "SHAKEN 1234");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        tweak(&mut params);
        let leaf = params.signed_by(&leaf_key, &inter).unwrap();
        Pki {
            chain: format!("{}{}", leaf.pem(), inter.pem()),
            leaf_key: leaf_key.serialize_pem(),
            inter_pem: inter.pem(),
            leaf_der: leaf.der().to_vec(),
            root,
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_pem(self.root.pem().as_bytes()).unwrap()
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.anchors())
    }

    fn signer(&self) -> Signer {
        Signer::from_pem(&self.leaf_key, X5U).unwrap()
    }

    fn fetcher(&self) -> MapFetcher {
        MapFetcher::new([(X5U, self.chain.clone())])
    }
}

/// Serves fixed bodies by URL and counts the fetches.
struct MapFetcher {
    bodies: HashMap<String, Vec<u8>>,
    fetches: AtomicUsize,
}

impl MapFetcher {
    fn new<const N: usize>(bodies: [(&str, String); N]) -> Self {
        MapFetcher {
            bodies: bodies
                .into_iter()
                .map(|(u, b)| (u.to_owned(), b.into_bytes()))
                .collect(),
            fetches: AtomicUsize::new(0),
        }
    }
}

impl CertFetcher for MapFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let body = self.bodies.get(url).cloned();
        Box::pin(async move { body.map(Arc::from).ok_or(FetchError::Status(404)) })
    }
}

fn request(attest: Attestation) -> PassportRequest {
    PassportRequest {
        orig: "+1 (555) 123-4567".into(),
        dest: vec!["+1-555-765-4321".into()],
        attest,
        origid: None,
        iat: now_secs(),
    }
}

async fn verify(
    v: &Verifier,
    identity: &str,
    from: &str,
    to: &str,
    f: &dyn CertFetcher,
) -> Verification {
    v.verify(Some(identity), from, to, now(), f).await
}

fn assert_failed(v: &Verification, code: u16) {
    assert!(!v.verified, "expected a failure, got {v}");
    assert_eq!(v.status_code(), Some(code), "{v}");
    assert_eq!(v.verstat(), "tn-validation-failed");
}

#[tokio::test]
async fn signed_calls_verify_with_each_attestation() {
    let pki = Pki::new();
    let (signer, verifier, fetcher) = (pki.signer(), pki.verifier(), pki.fetcher());
    for attest in [Attestation::A, Attestation::B, Attestation::C] {
        let signed = signer.sign(&request(attest)).unwrap();
        let v = verify(
            &verifier,
            &signed.identity,
            "+15551234567",
            "15557654321",
            &fetcher,
        )
        .await;
        assert!(v.verified, "{attest}: {v}");
        assert_eq!(v.attest, Some(attest));
        assert_eq!(v.origid.as_deref(), Some(signed.origid.as_str()));
        assert!(v.reason.is_none());
        assert_eq!(v.status_code(), None);
        assert_eq!(v.verstat(), "tn-validation-passed");
    }
}

#[test]
fn the_identity_header_carries_a_shaken_passport() {
    let pki = Pki::new();
    let signed = pki
        .signer()
        .sign(&PassportRequest {
            origid: Some("123e4567-e89b-12d3-a456-426655440000".into()),
            iat: 1_443_208_345,
            ..request(Attestation::B)
        })
        .unwrap();
    let (jws, params) = signed.identity.split_once(';').unwrap();
    assert_eq!(params, format!("info=<{X5U}>;alg=ES256;ppt=shaken"));
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3);
    let json = |s: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    assert_eq!(
        json(parts[0]),
        format!(r#"{{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"{X5U}"}}"#)
    );
    assert_eq!(
        json(parts[1]),
        r#"{"attest":"B","dest":{"tn":["15557654321"]},"iat":1443208345,"orig":{"tn":"15551234567"},"origid":"123e4567-e89b-12d3-a456-426655440000"}"#
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    assert_eq!(signed.origid, "123e4567-e89b-12d3-a456-426655440000");
    // A generated origid is a UUID, different each call.
    let a = pki.signer().sign(&request(Attestation::A)).unwrap().origid;
    let b = pki.signer().sign(&request(Attestation::A)).unwrap().origid;
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(a.matches('-').count(), 4);
}

#[tokio::test]
async fn a_sec1_key_signs_as_well_as_pkcs8() {
    let pki = Pki::new();
    let secret =
        <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pki.leaf_key).unwrap();
    let sec1 = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    assert!(pki.leaf_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let signer = Signer::from_pem(&sec1, X5U).unwrap();
    let signed = signer.sign(&request(Attestation::A)).unwrap();
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "15551234567",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert!(v.verified, "{v}");
}

#[test]
fn keys_that_cannot_sign_es256_are_refused_clearly() {
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    let err = Signer::from_pem(&p384, X5U).unwrap_err();
    assert!(matches!(err, SignError::Pkcs8(_)), "{err:?}");
    assert!(err.to_string().contains("P-256"), "{err}");
    let pki = Pki::new();
    let err = Signer::from_pem(&pki.chain, X5U).unwrap_err();
    assert!(
        matches!(err, SignError::WrongPemLabel(ref l) if l == "CERTIFICATE"),
        "{err:?}"
    );
    let err = Signer::from_pem(&pki.leaf_key, "http://cert.example.test/c.pem").unwrap_err();
    assert!(matches!(err, SignError::X5u(_)), "{err:?}");
    let err = pki
        .signer()
        .sign(&PassportRequest {
            orig: "anonymous".into(),
            ..request(Attestation::A)
        })
        .unwrap_err();
    assert!(matches!(err, SignError::Orig(_)), "{err:?}");
    let err = pki
        .signer()
        .sign(&PassportRequest {
            dest: vec![],
            ..request(Attestation::A)
        })
        .unwrap_err();
    assert!(matches!(err, SignError::NoDest), "{err:?}");
}

#[tokio::test]
async fn a_chain_from_another_ca_is_unsupported_credential() {
    let pki = Pki::new();
    let other = ca("Some Other CA");
    let verifier = Verifier::new(TrustAnchors::from_pem(other.pem().as_bytes()).unwrap());
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let v = verify(
        &verifier,
        &signed.identity,
        "15551234567",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert_failed(&v, 437);
    assert!(matches!(v.reason, Some(Reason::Untrusted(_))), "{v}");
    // The claims were read even though the chain is not trusted.
    assert_eq!(v.attest, Some(Attestation::A));
    // No anchors at all: the same.
    let v = verify(
        &Verifier::new(TrustAnchors::new()),
        &signed.identity,
        "15551234567",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert_failed(&v, 437);
}

#[tokio::test]
async fn an_expired_certificate_is_unsupported_credential() {
    let pki = Pki::with_leaf(|p| {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "15551234567",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert_failed(&v, 437);
    assert!(
        v.to_string().contains("expired") || v.to_string().contains("Expired"),
        "{v}"
    );
}

#[tokio::test]
async fn a_stale_or_future_iat_is_invalid() {
    let pki = Pki::new();
    let fetcher = pki.fetcher();
    for iat in [now_secs() - 120, now_secs() + 120] {
        let signed = pki
            .signer()
            .sign(&PassportRequest {
                iat,
                ..request(Attestation::A)
            })
            .unwrap();
        let v = verify(
            &pki.verifier(),
            &signed.identity,
            "15551234567",
            "15557654321",
            &fetcher,
        )
        .await;
        assert_failed(&v, 438);
        assert!(
            matches!(v.reason, Some(Reason::StaleIat { limit_secs: 60, .. })),
            "{v}"
        );
        // A verifier configured for five minutes accepts it.
        let lenient = pki.verifier().with_freshness(Duration::from_secs(300));
        let v = verify(
            &lenient,
            &signed.identity,
            "15551234567",
            "15557654321",
            &fetcher,
        )
        .await;
        assert!(v.verified, "{v}");
    }
    // Stale tokens are refused before any fetch.
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature() {
    let pki = Pki::new();
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let header = IdentityHeader::parse(&signed.identity).unwrap();
    let passport = Passport::decode(&header.passport).unwrap();
    // An attacker rewrites orig to the number it wants to show.
    let mut claims = passport.claims.clone();
    claims.orig.tn = Some("15550000000".into());
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let parts: Vec<&str> = header.passport.split('.').collect();
    let forged = IdentityHeader {
        passport: format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        ..header
    }
    .to_value();
    let v = verify(
        &pki.verifier(),
        &forged,
        "15550000000",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert_failed(&v, 438);
    assert!(matches!(v.reason, Some(Reason::BadSignature)), "{v}");
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_fails_the_signature() {
    let pki = Pki::new();
    let stranger = Signer::from_pem(&KeyPair::generate().unwrap().serialize_pem(), X5U).unwrap();
    let signed = stranger.sign(&request(Attestation::A)).unwrap();
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "15551234567",
        "15557654321",
        &pki.fetcher(),
    )
    .await;
    assert_failed(&v, 438);
    assert!(matches!(v.reason, Some(Reason::BadSignature)), "{v}");
}

#[tokio::test]
async fn orig_and_dest_must_match_from_and_to() {
    let pki = Pki::new();
    let fetcher = pki.fetcher();
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "+15559999999",
        "15557654321",
        &fetcher,
    )
    .await;
    assert_failed(&v, 438);
    assert!(matches!(v.reason, Some(Reason::OrigMismatch { .. })), "{v}");
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "anonymous",
        "15557654321",
        &fetcher,
    )
    .await;
    assert!(matches!(v.reason, Some(Reason::OrigMismatch { .. })), "{v}");
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "15551234567",
        "+15558888888",
        &fetcher,
    )
    .await;
    assert_failed(&v, 438);
    assert!(matches!(v.reason, Some(Reason::DestMismatch { .. })), "{v}");
    // Separators and '+' do not matter (RFC 8224 §8.3).
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "+1 555 123 4567",
        "1.555.765.4321",
        &fetcher,
    )
    .await;
    assert!(v.verified, "{v}");
    // Mismatches are found before fetching the certificate.
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn header_problems_map_to_their_codes() {
    let pki = Pki::new();
    let verifier = pki.verifier();
    let fetcher = pki.fetcher();
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let check = |identity: String| {
        let verifier = verifier.clone();
        let fetcher = &fetcher;
        async move { verify(&verifier, &identity, "15551234567", "15557654321", fetcher).await }
    };
    // No Identity at all: 428, and the phone sees no-tn-validation.
    let v = verifier
        .verify(None, "15551234567", "15557654321", now(), &fetcher)
        .await;
    assert_eq!(v.status_code(), Some(428));
    assert_eq!(v.verstat(), "no-tn-validation");
    // Garbage: 438.
    assert_failed(&check("not a passport".into()).await, 438);
    assert_failed(
        &check("a.b.c;info=<https://x.test/c.pem>".into()).await,
        438,
    );
    // info differs from x5u: 438.
    let other_info = signed.identity.replace(X5U, "https://elsewhere.test/c.pem");
    let header = IdentityHeader::parse(&signed.identity).unwrap();
    let moved = IdentityHeader {
        info: "https://elsewhere.test/c.pem".into(),
        ..header.clone()
    };
    let v = check(moved.to_value()).await;
    assert_failed(&v, 438);
    assert!(matches!(v.reason, Some(Reason::InfoMismatch { .. })), "{v}");
    assert_ne!(other_info, signed.identity);
    // alg / ppt parameters other than ES256 / shaken: 438.
    let v = check(
        IdentityHeader {
            alg: Some("RS256".into()),
            ..header.clone()
        }
        .to_value(),
    )
    .await;
    assert!(matches!(v.reason, Some(Reason::Alg(_))), "{v}");
    let v = check(
        IdentityHeader {
            ppt: Some("div".into()),
            ..header.clone()
        }
        .to_value(),
    )
    .await;
    assert!(matches!(v.reason, Some(Reason::Ppt(_))), "{v}");
    // The certificate cannot be fetched: 436.
    let nowhere = Pki::new();
    let v = verify(
        &nowhere.verifier(),
        &nowhere
            .signer()
            .sign(&request(Attestation::A))
            .unwrap()
            .identity,
        "15551234567",
        "15557654321",
        &MapFetcher::new([]),
    )
    .await;
    assert_failed(&v, 436);
    assert!(
        matches!(v.reason, Some(Reason::Fetch(FetchError::Status(404)))),
        "{v}"
    );
    // A chain that is not a certificate: 437.
    let v = verify(
        &pki.verifier(),
        &signed.identity,
        "15551234567",
        "15557654321",
        &MapFetcher::new([(X5U, "hello".into())]),
    )
    .await;
    assert_failed(&v, 437);
}

#[tokio::test]
async fn prepare_and_finish_are_the_sans_io_steps() {
    let pki = Pki::new();
    let signed = pki.signer().sign(&request(Attestation::B)).unwrap();
    let verifier = pki.verifier();
    let pending = verifier
        .prepare(&signed.identity, "15551234567", "15557654321", now())
        .unwrap();
    assert_eq!(pending.x5u(), X5U);
    assert_eq!(pending.attest(), Attestation::B);
    let v = verifier.finish(pending, pki.chain.as_bytes(), now());
    assert!(v.verified, "{v}");
    // The clock is the caller's: at a time before the certificates were
    // valid, the same chain fails.
    let pending = verifier
        .prepare(&signed.identity, "15551234567", "15557654321", now())
        .unwrap();
    let v = verifier.finish(
        pending,
        pki.chain.as_bytes(),
        UNIX_EPOCH + Duration::from_secs(86_400),
    );
    assert_failed(&v, 437);
}

#[tokio::test]
async fn a_single_der_certificate_at_x5u_is_read_too() {
    // application/pkix-cert: the leaf alone, DER; the intermediate is the
    // configured anchor here.
    let pki = Pki::new();
    let signed = pki.signer().sign(&request(Attestation::A)).unwrap();
    let verifier = Verifier::new(TrustAnchors::from_pem(pki.inter_pem.as_bytes()).unwrap());
    let pending = verifier
        .prepare(&signed.identity, "15551234567", "15557654321", now())
        .unwrap();
    let v = verifier.finish(pending, &pki.leaf_der, now());
    assert!(v.verified, "{v}");
    // The same DER leaf without its intermediate does not reach the root.
    let pending = pki
        .verifier()
        .prepare(&signed.identity, "15551234567", "15557654321", now())
        .unwrap();
    let v = pki.verifier().finish(pending, &pki.leaf_der, now());
    assert_failed(&v, 437);
}

#[test]
fn trust_anchor_files_must_hold_ca_certificates() {
    use identity::AnchorError;
    assert!(matches!(
        TrustAnchors::from_pem(b"nothing here"),
        Err(AnchorError::NoCertificate)
    ));
    let pki = Pki::new();
    let mut anchors = TrustAnchors::from_pem(pki.root.pem().as_bytes()).unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors.add_pem(pki.inter_pem.as_bytes()).unwrap(), 1);
    assert_eq!(anchors.len(), 2);
    assert!(matches!(
        HttpsFetcher::with_roots_pem(b"no roots"),
        Err(FetchError::Setup(_))
    ));
}

// --- The real HTTPS fetcher against a local HTTPS server -------------------

struct Repo {
    url: String,
    requests: Arc<AtomicUsize>,
    tls_roots: String,
}

/// Serves `body` with `status` and `cache_control` at https://127.0.0.1:PORT/sti/leaf.pem
/// (or never answers, when `hang`).
async fn repo(status: u16, cache_control: &'static str, body: String, hang: bool) -> Repo {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tls_ca = ca("Test Web CA");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &tls_ca)
        .unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls_pki_types_key(&server_key),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        // Bounded: a test makes at most a few requests.
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                if hang {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/x-pem-file\r\nCache-Control: {cache_control}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Repo {
        url: format!("https://127.0.0.1:{port}/sti/leaf.pem"),
        requests,
        tls_roots: tls_ca.pem(),
    }
}

fn rustls_pki_types_key(key: &KeyPair) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

#[tokio::test]
async fn https_fetcher_fetches_and_caches_the_chain() {
    let pki = Pki::new();
    let repo = repo(200, "max-age=600", pki.chain.clone(), false).await;
    let fetcher = HttpsFetcher::with_roots_pem(repo.tls_roots.as_bytes()).unwrap();
    let signer = Signer::from_pem(&pki.leaf_key, &repo.url).unwrap();
    for _ in 0..3 {
        let signed = signer.sign(&request(Attestation::A)).unwrap();
        let v = verify(
            &pki.verifier(),
            &signed.identity,
            "15551234567",
            "15557654321",
            &fetcher,
        )
        .await;
        assert!(v.verified, "{v}");
    }
    assert_eq!(
        repo.requests.load(Ordering::SeqCst),
        1,
        "the chain is fetched once, then cached"
    );
    assert_eq!(fetcher.cached(), 1);
}

#[tokio::test]
async fn https_fetcher_does_not_keep_what_it_may_not() {
    let pki = Pki::new();
    // The server forbids caching.
    let repo1 = repo(200, "no-store", pki.chain.clone(), false).await;
    let fetcher = HttpsFetcher::with_roots_pem(repo1.tls_roots.as_bytes()).unwrap();
    for _ in 0..2 {
        fetcher.fetch(&repo1.url).await.unwrap();
    }
    assert_eq!(repo1.requests.load(Ordering::SeqCst), 2);
    // Our max age of zero disables the cache whatever the server says.
    let repo2 = repo(200, "max-age=600", pki.chain.clone(), false).await;
    let fetcher = HttpsFetcher::with_roots_pem(repo2.tls_roots.as_bytes())
        .unwrap()
        .max_age(Duration::ZERO);
    for _ in 0..2 {
        let body = fetcher.fetch(&repo2.url).await.unwrap();
        assert_eq!(&body[..], pki.chain.as_bytes());
    }
    assert_eq!(repo2.requests.load(Ordering::SeqCst), 2);
    assert_eq!(fetcher.cached(), 0);
}

#[tokio::test]
async fn https_fetcher_failures_are_bad_identity_info() {
    let pki = Pki::new();
    // 404.
    let missing = repo(404, "no-store", String::new(), false).await;
    let fetcher = HttpsFetcher::with_roots_pem(missing.tls_roots.as_bytes()).unwrap();
    let signer = Signer::from_pem(&pki.leaf_key, &missing.url).unwrap();
    let v = verify(
        &pki.verifier(),
        &signer.sign(&request(Attestation::A)).unwrap().identity,
        "15551234567",
        "15557654321",
        &fetcher,
    )
    .await;
    assert_failed(&v, 436);
    assert!(
        matches!(v.reason, Some(Reason::Fetch(FetchError::Status(404)))),
        "{v}"
    );
    // A server that never answers: the short timeout.
    let silent = repo(200, "no-store", String::new(), true).await;
    let fetcher = HttpsFetcher::with_roots_pem(silent.tls_roots.as_bytes())
        .unwrap()
        .timeout(Duration::from_millis(300));
    let signer = Signer::from_pem(&pki.leaf_key, &silent.url).unwrap();
    let v = verify(
        &pki.verifier(),
        &signer.sign(&request(Attestation::A)).unwrap().identity,
        "15551234567",
        "15557654321",
        &fetcher,
    )
    .await;
    assert_failed(&v, 436);
    assert!(
        matches!(v.reason, Some(Reason::Fetch(FetchError::Timeout(_)))),
        "{v}"
    );
    // A server whose TLS certificate we do not trust.
    let untrusted = repo(200, "no-store", pki.chain.clone(), false).await;
    let fetcher = HttpsFetcher::with_roots_pem(pki.root.pem().as_bytes()).unwrap();
    let err = fetcher.fetch(&untrusted.url).await.unwrap_err();
    assert!(matches!(err, FetchError::Tls(_)), "{err:?}");
    // Not https: refused without a connection.
    let err = fetcher
        .fetch("http://127.0.0.1:9/leaf.pem")
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NotHttps(_)), "{err:?}");
}
