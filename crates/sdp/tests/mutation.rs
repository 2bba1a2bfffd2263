//! Deterministic mutation test of the SDP parser, serializer and
//! offer/answer over the RFC 4317 corpus and a few everyday descriptions.
//!
//! A fixed-seed xorshift generator flips bits, inserts and deletes bytes,
//! truncates, splices two descriptions, duplicates / deletes / swaps
//! lines, and inserts lines with hostile values. For every input: nothing
//! panics; when `parse` accepts, the serialization re-parses to an equal
//! model and re-serializes to the same bytes, every accessor answers, and
//! answering it as an offer gives a description that parses back and that
//! `negotiate` reads. A failure prints the input.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use sdp::{Codec, Local, LocalSession, Role, answer, negotiate, parse};

/// Mutated inputs per run.
const ITERATIONS: usize = 20_000;

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

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to the SDP grammar.
const INTERESTING: &[u8] = b"\r\n =:/ .0123456789abcmotvs\t\x00\xff\x80-*";

/// Lines with edge values, inserted whole.
const HOSTILE: &[&str] = &[
    "m=audio 65535/65535 RTP/AVP 127 0",
    "m=audio 65536 RTP/AVP 0",
    "m=video 0 RTP/SAVPF 96 97",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP6 ::ffff:192.0.2.1",
    "c=IN IP4 233.252.0.1/255/4294967295",
    "c=IN IP6 ff15::1/0",
    "c=IN IP4 a-b.c",
    "a=rtpmap:96 telephone-event/8000/1",
    "a=rtpmap:127 X/4294967295/65535",
    "a=rtpmap:0 PCMA/8000",
    "a=fmtp:96",
    "a=ptime:4294967296",
    "a=inactive",
    "a=sendonly",
    "a=:",
    "a=x:",
    "b=AS:18446744073709551615",
    "t=18446744073709551615 0",
    "r=7d 1h 0 25h",
    "o=- 99999999999999999999999 1 IN IP4 h",
    "z=0 -1h",
    "k=base64:AAAA",
    "i=",
    "s=",
    "v=0",
];

fn seeds() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpora/rfc4317"
    ));
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut out: Vec<Vec<u8>> = manifest
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| std::fs::read(dir.join(l.split('\t').next().unwrap())).unwrap())
        .collect();
    out.push(
        b"v=0\r\no=- 1718 1719 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nb=AS:64\r\nt=0 0\r\n\
m=audio 14562 RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n"
            .to_vec(),
    );
    out.push(
        b"v=0\no=- 123 456 IN IP6 2001:db8::1\ns=baresip\nc=IN IP6 2001:db8::1\nt=0 0\na=tool:baresip\n\
m=audio 10000 RTP/AVP 96 0 101\nb=TIAS:64000\na=rtpmap:96 opus/48000/2\na=fmtp:96 stereo=1;sprop-stereo=1\n\
a=rtpmap:101 telephone-event/8000\na=rtcp:10001 IN IP6 2001:db8::1\na=inactive\n\
m=video 10002 RTP/AVP 96\na=rtpmap:96 H264/90000\nm=video 0 RTP/SAVP 31\n"
            .to_vec(),
    );
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
    match rng.below(10) {
        0 => {
            for _ in 0..1 + rng.below(3) {
                if !input.is_empty() {
                    let i = rng.below(input.len());
                    input[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let b = INTERESTING[rng.below(INTERESTING.len())];
            input.insert(rng.below(len + 1), b);
        }
        2 if len > 0 => {
            let at = rng.below(len);
            let n = (1 + rng.below(6)).min(len - at);
            input.drain(at..at + n);
        }
        3 => input.truncate(rng.below(len + 1)),
        4 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        5..=7 => {
            let spans = line_spans(input);
            if spans.is_empty() {
                return;
            }
            let (s, e) = spans[rng.below(spans.len())];
            let line = input[s..e].to_vec();
            match rng.below(3) {
                0 => {
                    let at = spans[rng.below(spans.len())].0;
                    input.splice(at..at, line);
                }
                1 => {
                    input.drain(s..e);
                }
                _ => {
                    let (s2, e2) = spans[rng.below(spans.len())];
                    if s2 > e {
                        let other_line = input[s2..e2].to_vec();
                        input.splice(s2..e2, line);
                        input.splice(s..e, other_line);
                    }
                }
            }
        }
        _ => {
            let spans = line_spans(input);
            let at = if spans.is_empty() {
                0
            } else {
                spans[rng.below(spans.len())].0
            };
            let line = format!("{}\r\n", HOSTILE[rng.below(HOSTILE.len())]);
            input.splice(at..at, line.into_bytes());
        }
    }
}

#[test]
fn mutated_descriptions_never_panic_and_accepted_ones_round_trip() {
    let seeds = seeds();
    let mut rng = Rng(0x5D9E_2026_0000_4317);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let local = Local::new(
        ip,
        vec![
            Codec::PCMU,
            Codec::PCMA,
            Codec::G722,
            Codec::TELEPHONE_EVENT,
        ],
        vec![30000, 30002, 30004, 30006],
    );
    let mut accepted = 0;
    for _ in 0..ITERATIONS {
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut input, other);
        }
        let Ok(sdp) = parse(&input) else {
            continue;
        };
        accepted += 1;
        let show = String::from_utf8_lossy(&input);
        let bytes = sdp.to_bytes();
        let again = parse(&bytes).unwrap_or_else(|e| panic!("re-parse failed ({e}) for {show:?}"));
        assert_eq!(again, sdp, "round trip changed the model for {show:?}");
        assert_eq!(
            again.to_bytes(),
            bytes,
            "serializing is not stable for {show:?}"
        );

        for (i, m) in sdp.media.iter().enumerate() {
            let _ = (m.rtpmaps(), m.telephone_event(), m.ptime(), m.maxptime());
            let _ = (sdp.direction(i), sdp.rtp_address(i), sdp.connection(i));
        }
        let ours = answer(&sdp, &local, &mut LocalSession::with_id(1, ip));
        assert_eq!(ours.media.len(), sdp.media.len(), "{show:?}");
        assert_eq!(parse(&ours.to_bytes()).unwrap(), ours, "answer to {show:?}");
        negotiate(&sdp, &ours, Role::Answerer).unwrap();
        negotiate(&sdp, &ours, Role::Offerer).unwrap();
    }
    eprintln!("{accepted} of {ITERATIONS} mutated descriptions accepted");
    // The mutations must leave enough valid input to test the round trip.
    assert!(accepted > ITERATIONS / 10, "only {accepted} accepted");
}
