//! RFC 4317 offer/answer examples (tests/corpora/rfc4317, driven by its
//! MANIFEST.tsv): every description parses, serializes back to its exact
//! bytes, and matches the manifest's SHA-256; and for every offer, the
//! answer [`sdp::answer`] produces — given the capabilities the RFC's
//! answerer shows in that example — agrees with the RFC's answer on what
//! is the answerer's to decide: which streams are accepted or refused
//! with port 0, the direction of each, which codecs, and whether the `o=`
//! version moves (RFC 3264 §8).
//!
//! Where we differ from the printed answer, on purpose:
//! - Payload type numbers: we keep the offer's number for a codec
//!   (RFC 3264 §6.1 SHOULD); §2.3's Bob answers iLBC as 99 to an offer of
//!   97, which the RFC allows but we do not do.
//! - §3.2 second answer: the RFC's Alice leaves a `sendonly`-offered
//!   stream `sendrecv` (the manifest flags it as the RFC's slip); RFC 3264
//!   §6.1 requires `recvonly`, which is what we answer. Her answer also
//!   lists PCMU, which the offer did not contain; we compare codecs only
//!   among those offered.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use sdp::{
    Codec, Direction, Local, LocalSession, MediaKind, Role, SessionDescription, answer, negotiate,
    offer, parse,
};
use sha2::{Digest, Sha256};

struct Row {
    file: String,
    section: String,
    role: String,
    note: String,
    exchange: u32,
    sender: String,
    sha256: String,
    bytes: Vec<u8>,
}

fn corpus() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/corpora/rfc4317"
    ))
}

fn rows() -> Vec<Row> {
    let dir = corpus();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(
        lines.next().unwrap(),
        "file\tsection\trole\tnote\texchange\tsender\ttitle\tsha256"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 8, "{l}");
            Row {
                file: f[0].to_owned(),
                section: f[1].to_owned(),
                role: f[2].to_owned(),
                note: f[3].to_owned(),
                exchange: f[4].parse().unwrap(),
                sender: f[5].to_owned(),
                sha256: f[7].to_owned(),
                bytes: std::fs::read(dir.join(f[0])).unwrap(),
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_file_parses_round_trips_and_matches_its_hash() {
    let rows = rows();
    assert_eq!(rows.len(), 54, "the manifest lists 54 descriptions");
    for row in &rows {
        assert_eq!(
            hex(&Sha256::digest(&row.bytes)),
            row.sha256,
            "{}: SHA-256 differs (line ends converted by git?)",
            row.file
        );
        let sdp = parse(&row.bytes).unwrap_or_else(|e| panic!("{}: {e}", row.file));
        assert_eq!(
            String::from_utf8_lossy(&sdp.to_bytes()),
            String::from_utf8_lossy(&row.bytes),
            "{}: serializing gives other bytes",
            row.file
        );
        assert_eq!(parse(&sdp.to_bytes()).unwrap(), sdp, "{}", row.file);
        // The manifest pairs each answer with the offer just before it;
        // RFC 3264 §6: same number of m= sections.
        if row.role == "answer" {
            let offer = rows
                .iter()
                .find(|r| {
                    r.section == row.section && r.exchange == row.exchange && r.role == "offer"
                })
                .unwrap();
            assert_eq!(
                parse(&offer.bytes).unwrap().media.len(),
                sdp.media.len(),
                "{}",
                row.file
            );
        }
    }
}

fn ilbc(pt: u8) -> Codec {
    Codec::new(MediaKind::Audio, "iLBC", 8000, pt)
}
fn h261() -> Codec {
    Codec::new(MediaKind::Video, "H261", 90000, 31)
}
fn mpv() -> Codec {
    Codec::new(MediaKind::Video, "MPV", 90000, 32)
}
fn te(pt: u8) -> Codec {
    Codec {
        payload_type: pt,
        fmtp: None,
        ..Codec::TELEPHONE_EVENT
    }
}

/// What each party can do in one RFC 4317 example, read off the SDP they
/// send there (in the order they list it).
struct Example {
    alice: Vec<Codec>,
    bob: Vec<Codec>,
    /// Bob's wish in the first exchange (§3.1: he answers on hold).
    bob_first_direction: Direction,
}

fn example(section: &str) -> Example {
    let alice_av = vec![Codec::PCMU, Codec::PCMA, ilbc(97), h261(), mpv()];
    let (alice, bob) = match section {
        "2.1" => (alice_av, vec![Codec::PCMU, mpv()]),
        "2.2" => (alice_av, vec![Codec::PCMU, Codec::PCMA]),
        // Bob would offer iLBC as 99; answering he keeps the offer's 97.
        "2.3" => (alice_av, vec![ilbc(99), h261()]),
        "2.4" | "3.2" => (vec![Codec::PCMU, ilbc(97), te(98)], vec![ilbc(97), te(98)]),
        "2.5" | "4.3" => (vec![ilbc(97), h261()], vec![ilbc(97), h261()]),
        "2.6" => (
            vec![Codec::PCMU, ilbc(97), te(101)],
            vec![ilbc(97), te(101)],
        ),
        // Alice adds MPV only in her re-offer (from the file).
        "2.7" => (vec![ilbc(99), h261()], vec![ilbc(99), h261(), mpv()]),
        "2.8" => (alice_av, vec![Codec::PCMU, mpv()]),
        "3.1" => (vec![Codec::PCMU, ilbc(97)], vec![ilbc(97)]),
        "4.1" => (vec![Codec::PCMU, ilbc(97), te(98)], vec![ilbc(97)]),
        "4.2" => (vec![Codec::PCMU, h261()], vec![Codec::PCMU, h261()]),
        "5.1" | "5.2" | "5.3" => (vec![ilbc(97)], vec![ilbc(97)]),
        other => panic!("no capabilities for section {other}"),
    };
    Example {
        alice,
        bob,
        bob_first_direction: if section == "3.1" {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        },
    }
}

/// Our port for every section: the RFC answerer's where it gave one, else
/// a made-up one, so that a refusal must come from the codecs.
fn ports_like(sdp: &SessionDescription) -> Vec<u16> {
    sdp.media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.port != 0 {
                m.port
            } else {
                40_000 + 2 * i as u16
            }
        })
        .collect()
}

fn encodings(sdp: &SessionDescription, i: usize) -> Vec<String> {
    sdp.media[i]
        .rtpmaps()
        .into_iter()
        .map(|(_, m)| m.encoding.to_ascii_lowercase())
        .collect()
}

/// Checks `ours` against the RFC's answer `theirs` to `offer`.
fn check_answer(
    offer: &SessionDescription,
    ours: &SessionDescription,
    theirs: &SessionDescription,
    row: &Row,
) {
    let file = &row.file;
    assert_eq!(
        ours.media.len(),
        offer.media.len(),
        "{file}: RFC 3264 §6 same m= count"
    );
    for (i, (o, t)) in ours.media.iter().zip(&theirs.media).enumerate() {
        assert_eq!(
            o.media, offer.media[i].media,
            "{file} m={i}: same media type"
        );
        assert_eq!(
            o.port != 0,
            t.port != 0,
            "{file} m={i}: accepted/refused (ours port {}, RFC's {})",
            o.port,
            t.port
        );
        if t.port == 0 {
            continue;
        }
        let expected = if row.note.contains("although RFC 3264")
            && offer.direction(i) == Direction::SendOnly
        {
            // The RFC's slip: §6.1 wants recvonly (or inactive).
            Direction::RecvOnly
        } else {
            theirs.direction(i)
        };
        assert_eq!(ours.direction(i), expected, "{file} m={i}: direction");
        let offered = encodings(offer, i);
        let wanted: Vec<String> = encodings(theirs, i)
            .into_iter()
            .filter(|e| offered.contains(e))
            .collect();
        assert_eq!(encodings(ours, i), wanted, "{file} m={i}: codecs");
        // RFC 3264 §6.1: a codec keeps the offer's payload type number.
        for (pt, map) in o.rtpmaps() {
            assert_eq!(
                offer.media[i].rtpmap(pt).map(|m| m.encoding),
                Some(map.encoding.clone()),
                "{file} m={i}: {} answered as {pt}, not the offer's number",
                map.encoding
            );
        }
    }
    assert_eq!(
        ours.origin.session_version, theirs.origin.session_version,
        "{file}: o= version (RFC 3264 §8: moves only when the SDP changes)"
    );

    // Reading the exchange back gives our first codec and the offer's
    // address (every example uses domain names, which are not resolved).
    let streams = negotiate(offer, ours, Role::Answerer).unwrap();
    for (s, o) in streams.iter().zip(&ours.media) {
        assert_eq!(s.accepted, o.port != 0, "{file}");
        let first = o
            .rtpmaps()
            .into_iter()
            .find(|(_, m)| !m.is_telephone_event())
            .filter(|_| o.port != 0);
        assert_eq!(
            s.codec.as_ref().map(|c| c.recv_payload_type),
            first.map(|f| f.0),
            "{file}"
        );
        assert_eq!(s.remote, None, "{file}");
    }
}

#[test]
fn our_answers_agree_with_the_rfc_answers() {
    let rows = rows();
    let mut sections: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        sections.entry(r.section.as_str()).or_default().push(r);
    }
    let alice_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let bob_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let mut answers = 0;
    let mut reproduced = Vec::new();
    for (section, rows) in &sections {
        let ex = example(section);
        let get = |role: &str, exchange: u32| {
            rows.iter()
                .find(|r| r.role == role && r.exchange == exchange)
                .copied()
        };
        let offer1 = get("offer", 1).unwrap();
        assert_eq!(offer1.sender, "alice");
        let offer1_sdp = parse(&offer1.bytes).unwrap();

        // Alice's first offer: ours when her capabilities reproduce it
        // (same m= lines), else hers as printed. Either way it is what
        // her session last sent.
        let mut alice = LocalSession::new(offer1_sdp.origin.clone());
        let kinds: Vec<MediaKind> = offer1_sdp
            .media
            .iter()
            .map(|m| MediaKind::from_media(&m.media).unwrap())
            .collect();
        let alice_local = Local::new(alice_ip, ex.alice.clone(), ports_like(&offer1_sdp));
        let ours = offer(&alice_local, &kinds, &mut alice.clone());
        let same_lines = ours.media.len() == offer1_sdp.media.len()
            && ours
                .media
                .iter()
                .zip(&offer1_sdp.media)
                .all(|(a, b)| (&a.media, a.port, &a.formats) == (&b.media, b.port, &b.formats));
        if same_lines {
            offer(&alice_local, &kinds, &mut alice);
            reproduced.push(*section);
        } else {
            alice.stamp(offer1_sdp.clone());
        }

        // Bob answers the first offer.
        let answer1 = parse(&get("answer", 1).unwrap().bytes).unwrap();
        let mut bob = LocalSession::new(answer1.origin.clone());
        let mut bob_local = Local::new(bob_ip, ex.bob.clone(), ports_like(&answer1));
        bob_local.direction = ex.bob_first_direction;
        let ours = answer(&offer1_sdp, &bob_local, &mut bob);
        check_answer(&offer1_sdp, &ours, &answer1, get("answer", 1).unwrap());
        answers += 1;

        // The second exchange, when there is one: whoever did not offer
        // answers, from their session.
        if let (Some(offer2), Some(answer2_row)) = (get("offer", 2), get("answer", 2)) {
            let offer2_sdp = parse(&offer2.bytes).unwrap();
            let answer2 = parse(&answer2_row.bytes).unwrap();
            let ours = if offer2.sender == "alice" {
                let local = Local::new(bob_ip, ex.bob.clone(), ports_like(&answer2));
                answer(&offer2_sdp, &local, &mut bob)
            } else {
                let local = Local::new(alice_ip, ex.alice.clone(), ports_like(&answer2));
                answer(&offer2_sdp, &local, &mut alice)
            };
            check_answer(&offer2_sdp, &ours, &answer2, answer2_row);
            answers += 1;
        }
    }
    assert_eq!(answers, 27, "every offer in the manifest was answered");
    // Our offer builder writes Alice's first offer wherever it lists one
    // codec set for all sections of a kind.
    assert_eq!(
        reproduced,
        [
            "2.1", "2.2", "2.3", "2.5", "2.7", "2.8", "3.1", "4.2", "4.3", "5.1", "5.2", "5.3"
        ]
    );
}
