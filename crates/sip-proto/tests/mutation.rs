//! Deterministic mutation test of the parser, framer and salvager over the
//! RFC 4475 / RFC 5118 corpora (plus a few everyday messages).
//!
//! A fixed-seed xorshift generator applies bit flips, byte inserts and
//! deletes, truncation, splicing of two messages, duplicated / deleted /
//! swapped lines, inserted folds, huge Content-Lengths and plain random
//! bytes. For every input: nothing panics; `frame_len` returns a length
//! within the input; and when `parse` accepts, serializing and re-parsing
//! gives an equal message and every typed header of it parses (and its
//! `Display` re-parses to the same value). A failure prints the input.

use std::path::PathBuf;

use sip_proto::header::{CSeq, NameAddr, Via};
use sip_proto::{Limits, Message, Uri, salvage_request};

/// Mutated inputs per run.
const ITERATIONS: usize = 120_000;

/// xorshift64* — tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// Bytes that matter to the SIP grammar.
const INTERESTING: &[u8] = b"\r\n \t:;,\"<>@[]%\\=?&/.*0\x00\xff\x80\xc3(";

fn seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpora"));
    let mut out = Vec::new();
    for set in ["rfc4475", "rfc5118"] {
        let manifest = std::fs::read_to_string(root.join(set).join("MANIFEST.tsv")).unwrap();
        for line in manifest.lines().skip(1).filter(|l| !l.is_empty()) {
            let file = line.split('\t').next().unwrap();
            out.push(std::fs::read(root.join(set).join(file)).unwrap());
        }
    }
    for extra in [
        &b"REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:1001@pbx.example.com>\r\nFrom: \"Alice\" <sip:1001@pbx.example.com>;tag=19\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\nCSeq: 2 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:1>\"\r\n\
Authorization: Digest username=\"1001\", realm=\"pbx\", nonce=\"abc\", uri=\"sip:pbx\", response=\"0f\", qop=auth, nc=00000001, cnonce=\"x\"\r\n\
Expires: 3600\r\nAllow: INVITE, ACK, BYE\r\nSupported: path, outbound\r\nContent-Length: 0\r\n\r\n"[..],
        &b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776;rport=5060;received=192.0.2.99\r\n\
To: <sip:1001@pbx>;tag=as8\r\nFrom: <sip:1001@pbx>;tag=19\r\nCall-ID: a84b\r\nCSeq: 2 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n,1\", qop=\"auth,auth-int\", algorithm=SHA-256, stale=FALSE\r\n\
Warning: 399 pbx \"bad \\\"thing\\\"\", 307 isi.edu \"x\"\r\nRetry-After: 30 (busy);duration=60\r\n\
Session-Expires: 1800;refresher=uac\r\nEvent: presence;id=1\r\nSubscription-State: active;expires=60\r\n\
Refer-To: <sip:1002@pbx?Replaces=abc%40h%3Bto-tag%3D1>\r\nReferred-By: <sip:1001@pbx>\r\n\
Replaces: abc@h;to-tag=1;from-tag=2;early-only\r\nMin-Expires: 60\r\nRecord-Route: <sip:p1;lr>, <sip:[2001:db8::1];lr>\r\n\
Path: <sip:edge;lr>\r\nContact: *\r\nContent-Type: text/plain;charset=\"utf-8\"\r\nl: 2\r\n\r\nhi"[..],
        &b"INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0\r\nv: SIP/2.0/TCP h\r\nf: <tel:+1234>;tag=1\r\nt: sip:a@b\r\ni: x@y\r\nCSeq: 1 INVITE\r\n\r\n"[..],
    ] {
        out.push(extra.to_vec());
    }
    out
}

fn line_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            spans.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < b.len() {
        spans.push((start, b.len()));
    }
    spans
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(13) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                if !input.is_empty() {
                    let i = rng.below(input.len());
                    input[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let at = rng.below(len + 1);
            let b = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            };
            input.insert(at, b);
        }
        2 if len > 0 => {
            let at = rng.below(len);
            let n = (1 + rng.below(8)).min(len - at);
            input.drain(at..at + n);
        }
        3 => input.truncate(rng.below(len + 1)),
        4 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        5 => {
            let spans = line_spans(input);
            if !spans.is_empty() {
                let (s, e) = spans[rng.below(spans.len())];
                let line = input[s..e].to_vec();
                let at = spans[rng.below(spans.len())].0;
                input.splice(at..at, line);
            }
        }
        6 => {
            let spans = line_spans(input);
            if !spans.is_empty() {
                let (s, e) = spans[rng.below(spans.len())];
                input.drain(s..e);
            }
        }
        7 => {
            let spans = line_spans(input);
            if spans.len() > 2 {
                let a = spans[rng.below(spans.len())];
                let b = spans[rng.below(spans.len())];
                let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                if first.1 <= second.0 {
                    let mut v = input[..first.0].to_vec();
                    v.extend_from_slice(&input[second.0..second.1]);
                    v.extend_from_slice(&input[first.1..second.0]);
                    v.extend_from_slice(&input[first.0..first.1]);
                    v.extend_from_slice(&input[second.1..]);
                    *input = v;
                }
            }
        }
        8 => {
            let at = rng.below(len + 1);
            let fold: &[u8] =
                [&b"\r\n "[..], b"\r\n\t", b"\n ", b"\r\n", b"\r\n\r\n"][rng.below(5)];
            input.splice(at..at, fold.iter().copied());
        }
        9 => {
            let value: String = match rng.below(5) {
                0 => "99999999999999999999999999".into(),
                1 => "-1".into(),
                2 => (rng.next() % 100_000).to_string(),
                3 => usize::MAX.to_string(),
                _ => (rng.next() % 400).to_string(),
            };
            let text = String::from_utf8_lossy(input).into_owned();
            let lower = text.to_ascii_lowercase();
            let pos = lower
                .find("\ncontent-length:")
                .or_else(|| lower.find("\nl:"));
            let line = format!("\r\nContent-Length: {value}");
            match pos {
                Some(p) if text.is_char_boundary(p) => {
                    let end = text[p + 1..].find('\n').map_or(text.len(), |e| p + 1 + e);
                    let mut t = text[..p].to_owned();
                    t.push_str(&line[1..]);
                    t.push_str(&text[end..]);
                    *input = t.into_bytes();
                }
                _ => {
                    let at = input.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
                    input.splice(at..at, line.bytes());
                }
            }
        }
        10 => {
            let n = rng.below(400);
            *input = (0..n)
                .map(|_| {
                    if rng.below(3) == 0 {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.byte() & 0x7f
                    }
                })
                .collect();
        }
        11 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        _ => {
            // Grow a line past small limits, or repeat a chunk.
            if len > 0 {
                let s = rng.below(len);
                let e = (s + 1 + rng.below(64)).min(len);
                let chunk = input[s..e].to_vec();
                for _ in 0..1 + rng.below(16) {
                    input.splice(s..s, chunk.iter().copied());
                }
            }
        }
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

/// The properties every input must satisfy; returns whether it parsed.
fn check(input: &[u8], limits: &Limits) -> bool {
    if let Ok(Some(n)) = Message::frame_len(input, limits) {
        assert!(
            n <= input.len(),
            "frame_len {n} > {} for {}",
            input.len(),
            show(input)
        );
    }
    let _ = salvage_request(input);
    let Ok(m) = Message::parse(input, limits) else {
        return false;
    };
    let bytes = m.to_bytes();
    let again = Message::parse(&bytes, &Limits::default()).unwrap_or_else(|e| {
        panic!(
            "re-parse failed: {e}\ninput: {}\nserialized: {}",
            show(input),
            show(&bytes)
        )
    });
    assert_eq!(
        again,
        m,
        "round trip differs\ninput: {}\nserialized: {}",
        show(input),
        show(&bytes)
    );
    let h = m.headers();
    let ctx = || show(input);
    for via in h.via().unwrap_or_else(|e| panic!("via: {e}: {}", ctx())) {
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via, "{}", ctx());
    }
    let mut addrs = vec![h.from().unwrap(), h.to().unwrap()];
    addrs.extend(h.route().unwrap());
    addrs.extend(h.record_route().unwrap());
    addrs.extend(h.path().unwrap());
    addrs.extend(h.refer_to().unwrap());
    addrs.extend(h.referred_by().unwrap());
    if let sip_proto::header::Contact::Addrs(c) = h.contact().unwrap() {
        addrs.extend(c);
    }
    for na in addrs {
        let text = na.to_string();
        let back = NameAddr::parse(&text).unwrap_or_else(|e| panic!("{e}: {text} from {}", ctx()));
        assert_eq!(back, na, "{}", ctx());
    }
    let cseq = h.cseq().unwrap();
    assert_eq!(CSeq::parse(&cseq.to_string()).unwrap(), cseq, "{}", ctx());
    h.max_forwards().unwrap();
    h.expires().unwrap();
    h.min_expires().unwrap();
    for c in h
        .authorization()
        .unwrap()
        .into_iter()
        .chain(h.proxy_authorization().unwrap())
    {
        assert_eq!(
            sip_proto::header::Credentials::parse(&c.to_string()).unwrap(),
            c
        );
    }
    for c in h
        .www_authenticate()
        .unwrap()
        .into_iter()
        .chain(h.proxy_authenticate().unwrap())
    {
        assert_eq!(
            sip_proto::header::Challenge::parse(&c.to_string()).unwrap(),
            c
        );
    }
    h.warning().unwrap();
    h.event().unwrap();
    h.subscription_state().unwrap();
    h.replaces().unwrap();
    h.session_expires().unwrap();
    h.retry_after().unwrap();
    if let Message::Request(r) = &m {
        assert_eq!(Uri::parse(&r.uri.to_string()).unwrap(), r.uri, "{}", ctx());
        assert!(r.cseq().is_some() && r.top_via().is_some());
    }
    true
}

#[test]
fn mutated_corpus_never_panics_and_round_trips() {
    let seeds = seeds();
    let mut rng = Rng(0x5EED_5171_C0DE_u64);
    let default = Limits::default();
    let small = Limits {
        max_message_size: 600,
        max_headers: 12,
        max_body_size: 100,
        max_header_line: 120,
    };
    let mut accepted = 0usize;
    for i in 0..ITERATIONS {
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        // Mostly one mutation, so that many inputs still parse and the
        // round trip is exercised; sometimes two or three stacked.
        let rounds = [1, 1, 1, 2, 3][rng.below(5)];
        for _ in 0..rounds {
            mutate(&mut rng, &mut input, other);
        }
        let limits = if i % 8 == 0 { &small } else { &default };
        accepted += usize::from(check(&input, limits));
    }
    // The mutations must leave a fair share of inputs parseable, or the
    // round-trip property is not being exercised.
    assert!(
        accepted > ITERATIONS / 20,
        "only {accepted} of {ITERATIONS} parsed"
    );
    eprintln!("{accepted} of {ITERATIONS} mutated messages parsed");
}

#[test]
fn every_seed_as_is_and_every_prefix() {
    for seed in seeds() {
        for cut in 0..=seed.len() {
            check(&seed[..cut], &Limits::default());
        }
    }
}
