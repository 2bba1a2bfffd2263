//! STIR/SHAKEN on trunk calls through the real binary (RFC 8224, 8225,
//! 8588): an office Switchboard signs its calls out through a trunk, a
//! second Switchboard plays the carrier and verifies them (its
//! `[security] stir_trust_anchors`), fetching the signer's certificate
//! chain from an HTTPS server run by the test on 127.0.0.1. Certificates
//! (STI root, intermediate, signer; a web CA for the HTTPS server) are
//! made here with rcgen.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use identity::{Attestation, PassportRequest, Signer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sip_proto::{HeaderName, Limits, Message};
use testkit::{Phone, Server};

const WAIT: Duration = Duration::from_secs(10);

fn binary() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_switchboard").as_ref()
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// The certificates of one test: an STI root the carrier trusts, the
/// office's signing key under an intermediate, and the HTTPS server
/// publishing the chain (its own web CA), with every file written to `dir`.
struct Pki {
    /// `https://127.0.0.1:PORT/sti/office.pem`.
    x5u: String,
    /// The signing key, PKCS#8 PEM.
    key: String,
    dir: std::path::PathBuf,
}

impl Pki {
    fn new(dir: &std::path::Path) -> Pki {
        let root = ca("Test STI-PA Root");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "Test STI-CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let inter = CertifiedIssuer::signed_by(params, KeyPair::generate().expect("key"), &root)
            .expect("intermediate");
        let leaf_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "SHAKEN office");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf = params.signed_by(&leaf_key, &inter).expect("leaf");
        let chain = format!("{}{}", leaf.pem(), inter.pem());
        let web = ca("Test Web CA");
        let port = serve_https(&web, chain);
        std::fs::write(dir.join("stir.pem"), leaf_key.serialize_pem()).expect("write key");
        std::fs::write(dir.join("sti-root.pem"), root.pem()).expect("write root");
        std::fs::write(dir.join("web-ca.pem"), web.pem()).expect("write web CA");
        Pki {
            x5u: format!("https://127.0.0.1:{port}/sti/office.pem"),
            key: leaf_key.serialize_pem(),
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The carrier's `[security]`: the STI root, the web CA for the fetch.
    fn verifying(&self) -> String {
        format!(
            "[security]\nstir_trust_anchors = [{:?}]\nstir_https_ca = [{:?}]\n",
            self.path("sti-root.pem"),
            self.path("web-ca.pem")
        )
    }

    /// An Identity header value as the office would sign it, with `iat`.
    fn identity(&self, orig: &str, dest: &str, iat: u64) -> String {
        let signer = Signer::from_pem(&self.key, &self.x5u).expect("signer");
        signer
            .sign(&PassportRequest {
                orig: orig.to_owned(),
                dest: vec![dest.to_owned()],
                attest: Attestation::A,
                origid: None,
                iat,
            })
            .expect("sign")
            .identity
    }
}

/// Serves `chain` at any path over HTTPS on 127.0.0.1 (a certificate for
/// that address from `web`), for a bounded number of connections, on its
/// own thread; returns the port.
fn serve_https(web: &CertifiedIssuer<'static, KeyPair>, chain: String) -> u16 {
    let server_key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&server_key, web)
        .expect("server certificate");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        )
        .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind HTTPS");
    let port = listener.local_addr().expect("HTTPS address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            for _ in 0..32 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut tls) = acceptor.clone().accept(tcp).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nCache-Control: max-age=600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    chain.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(chain.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
    });
    port
}

/// The carrier's context for calls from the office's trunk: logs what
/// verification found, then rings its phone 2001 with the caller's number.
const FROM_OFFICE: &str = r#"
function route(call)
  local i = call.identity
  log.info("identity: verified=" .. tostring(i and i.verified) .. " attest=" .. tostring(i and i.attest)
    .. " from=" .. call.from.user .. " reason=" .. tostring(i and i.reason))
  local r = call:dial("2001", { caller_id = call.from.user, timeout = 5 })
  call:reject(r.code)
end
"#;

/// The carrier: a Switchboard whose trunk "office" is every INVITE from
/// 127.0.0.1, verified against the test's STI root; its phone 2001.
fn carrier(pki: &Pki, dir: &std::path::Path) -> Server {
    let dialplans = dir.join("carrier-dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("from-office.lua"), FROM_OFFICE).expect("write lua");
    std::fs::write(
        dialplans.join("default.lua"),
        "function route(call) call:reject(403) end\n",
    )
    .expect("write lua");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"carrier.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n{}\n[dialplan]\ndir = {:?}\n\n\
         [[extension]]\nid = \"2001\"\npassword = \"Kp2-wQ7z-Hs4m\"\n\n\
         [[trunk]]\nname = \"office\"\nhost = \"127.0.0.1\"\nport = 9\nmatch = [\"127.0.0.1\"]\ncontext = \"from-office\"\n",
        pki.verifying(),
        dialplans.display()
    );
    Server::start_with(binary(), &config).expect("carrier starts")
}

/// The office's dialplan: 91 goes out through the carrier (1002 with a
/// number that is not its own), 92 too with the attestation set by the
/// dialplan, 93 with the number withheld; a call from the PSTN trunk is
/// forwarded out again.
const OFFICE: &str = r#"
function route(call)
  if call.trunk then
    local r = call:dial("trunk:carrier/+15557654321", { caller_id = call.from.user, timeout = 5 })
    call:reject(r.code)
    return
  end
  local opts = { timeout = 5 }
  if call.caller == "1002" then opts.caller_id = "+15550009999" end
  if call.to.user == "92" then opts.attest = "B" end
  if call.to.user == "93" then opts.caller_id = "anonymous" end
  local r = call:dial("trunk:carrier/+15557654321", opts)
  call:reject(r.code)
end
"#;

fn office(pki: &Pki, dir: &std::path::Path, carrier: SocketAddr, pstn: SocketAddr) -> Server {
    let dialplans = dir.join("office-dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("default.lua"), OFFICE).expect("write lua");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"office.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n[dialplan]\ndir = {:?}\n\n\
         [[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\ndid = \"+15550001001\"\n\n\
         [[extension]]\nid = \"1002\"\npassword = \"Rt4-hX8n-Pc3y\"\n\n\
         [[trunk]]\nname = \"carrier\"\nhost = \"{}\"\nport = {}\n\
         stir_shaken = {{ key = {:?}, x5u = {:?} }}\n\n\
         [[trunk]]\nname = \"pstn\"\nhost = \"{}\"\nport = {}\nmatch = [\"{}\"]\ncontext = \"default\"\n",
        dialplans.display(),
        carrier.ip(),
        carrier.port(),
        pki.path("stir.pem"),
        pki.x5u,
        pstn.ip(),
        pstn.port(),
        pstn.ip(),
    );
    Server::start_with(binary(), &config).expect("office starts")
}

fn log_has(server: &Server, needle: &str) -> bool {
    server.wait_log(needle, WAIT)
}

/// The carrier's phone gets the call: its From carries `verstat`; it
/// answers busy, which reaches the caller.
fn rings_with_verstat(phone: &mut Phone, verstat: &str) {
    let call = phone.incoming(WAIT).expect("the carrier's phone rings");
    let from = call
        .invite
        .headers
        .get(&HeaderName::From)
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains(&format!(";verstat={verstat}@")), "{from}");
    let pai = call
        .invite
        .headers
        .get(&HeaderName::parse("P-Asserted-Identity"))
        .unwrap_or_default()
        .to_owned();
    assert!(pai.contains(&format!(";verstat={verstat}@")), "{pai}");
    phone
        .reply(&call.invite, &call.tag, 486)
        .expect("busy answer");
}

#[test]
fn signed_calls_verify_end_to_end_with_attestation_a_b_and_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let carrier = carrier(&pki, dir.path());
    let carrier_sip = carrier.udp.expect("carrier UDP");
    let pstn = UdpSocket::bind("127.0.0.5:0").expect("bind PSTN");
    let office = office(
        &pki,
        dir.path(),
        carrier_sip,
        pstn.local_addr().expect("PSTN address"),
    );
    let office_sip = office.udp.expect("office UDP");
    let mut far = Phone::udp(carrier_sip, "2001", "Kp2-wQ7z-Hs4m", "carrier.test");
    assert_eq!(far.register(), 200);
    let mut p1001 = Phone::udp(office_sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(p1001.register(), 200);
    let mut p1002 = Phone::udp(office_sip, "1002", "Rt4-hX8n-Pc3y", "office.test");
    assert_eq!(p1002.register(), 200);

    // A: 1001 calls with its own DID.
    p1001.call("91").expect("call");
    rings_with_verstat(&mut far, "tn-validation-passed");
    let (busy, _) = p1001.final_response(WAIT).expect("final answer");
    assert_eq!(busy.status, 486, "{}", office.log());
    assert!(
        log_has(
            &carrier,
            "identity: verified=true attest=A from=+15550001001 reason=nil"
        ),
        "{}",
        carrier.log()
    );

    // B: 1002 has no DID and calls with another number.
    p1002.call("91").expect("call");
    rings_with_verstat(&mut far, "tn-validation-passed");
    assert_eq!(p1002.final_response(WAIT).expect("final").0.status, 486);
    assert!(
        log_has(
            &carrier,
            "identity: verified=true attest=B from=+15550009999 reason=nil"
        ),
        "{}",
        carrier.log()
    );

    // The dialplan's attest = "B" for a call that would earn A.
    p1001.call("92").expect("call");
    rings_with_verstat(&mut far, "tn-validation-passed");
    assert_eq!(p1001.final_response(WAIT).expect("final").0.status, 486);
    assert!(
        log_has(
            &carrier,
            "identity: verified=true attest=B from=+15550001001 reason=nil"
        ),
        "{}",
        carrier.log()
    );

    // A withheld number: From is anonymous, the PASSporT's orig is the
    // P-Asserted-Identity the carrier checks it against.
    p1001.call("93").expect("call");
    rings_with_verstat(&mut far, "tn-validation-passed");
    assert_eq!(p1001.final_response(WAIT).expect("final").0.status, 486);
    assert!(
        log_has(
            &carrier,
            "identity: verified=true attest=A from=anonymous reason=nil"
        ),
        "{}",
        carrier.log()
    );

    // C: a call in from the PSTN trunk forwarded out again.
    let invite = pstn_invite(pstn.local_addr().expect("addr"), "+15551112222", None);
    pstn.send_to(invite.as_bytes(), office_sip).expect("send");
    rings_with_verstat(&mut far, "tn-validation-passed");
    assert!(
        log_has(
            &carrier,
            "identity: verified=true attest=C from=+15551112222 reason=nil"
        ),
        "{}",
        carrier.log()
    );
    assert_eq!(final_status(&pstn), Some(486));
}

/// An INVITE from `via` (a trunk's address) from `from` to +15557654321,
/// with `identity` when given.
fn pstn_invite(via: SocketAddr, from: &str, identity: Option<&str>) -> String {
    let ip = via.ip();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let identity = identity.map_or_else(String::new, |i| format!("Identity: {i}\r\n"));
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "INVITE sip:+15557654321@carrier.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-stir{n}\r\n\
         From: <sip:{from}@pstn.test>;tag=p{n}\r\n\
         To: <sip:+15557654321@carrier.test>\r\n\
         Call-ID: stir-{n}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:pstn@{via}>\r\n\
         Max-Forwards: 70\r\n\
         {identity}\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The final status of the next final response `socket` reads.
fn final_status(socket: &UdpSocket) -> Option<u16> {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).ok()?;
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        if let Ok(Message::Response(r)) = Message::parse(&buf[..n], &Limits::default())
            && r.status >= 200
        {
            return Some(r.status);
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn a_tampered_from_a_stale_iat_and_no_identity_are_not_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let carrier = carrier(&pki, dir.path());
    let carrier_sip = carrier.udp.expect("carrier UDP");
    let mut far = Phone::udp(carrier_sip, "2001", "Kp2-wQ7z-Hs4m", "carrier.test");
    assert_eq!(far.register(), 200);
    // The "office" is this socket on 127.0.0.1, the carrier's trunk.
    let office = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let via = office.local_addr().expect("addr");

    // Signed for +15550001001, sent with another From number.
    let signed = pki.identity("+15550001001", "+15557654321", now_secs());
    let invite = pstn_invite(via, "+15550001002", Some(&signed));
    office
        .send_to(invite.as_bytes(), carrier_sip)
        .expect("send");
    rings_with_verstat(&mut far, "tn-validation-failed");
    assert!(
        log_has(
            &carrier,
            "identity: verified=false attest=A from=+15550001002 reason=438 Invalid Identity Header: orig"
        ),
        "{}",
        carrier.log()
    );
    assert_eq!(final_status(&office), Some(486));

    // Signed five minutes ago: older than the 60 s allowed.
    let stale = pki.identity("+15550001001", "+15557654321", now_secs() - 300);
    let invite = pstn_invite(via, "+15550001001", Some(&stale));
    office
        .send_to(invite.as_bytes(), carrier_sip)
        .expect("send");
    rings_with_verstat(&mut far, "tn-validation-failed");
    assert!(
        log_has(&carrier, "more than the 60 s allowed"),
        "{}",
        carrier.log()
    );
    assert_eq!(final_status(&office), Some(486));

    // The same, freshly signed, verifies (the failures were the From and the iat).
    let fresh = pki.identity("+15550001001", "+15557654321", now_secs());
    let invite = pstn_invite(via, "+15550001001", Some(&fresh));
    office
        .send_to(invite.as_bytes(), carrier_sip)
        .expect("send");
    rings_with_verstat(&mut far, "tn-validation-passed");
    assert_eq!(final_status(&office), Some(486));

    // No Identity at all.
    let invite = pstn_invite(via, "+15550001001", None);
    office
        .send_to(invite.as_bytes(), carrier_sip)
        .expect("send");
    rings_with_verstat(&mut far, "no-tn-validation");
    assert!(
        log_has(
            &carrier,
            "identity: verified=false attest=nil from=+15550001001 reason=428 Use Identity Header: no Identity header"
        ),
        "{}",
        carrier.log()
    );
    assert_eq!(final_status(&office), Some(486));
}
