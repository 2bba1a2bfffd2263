//! Offer/answer policy (RFC 3264 §5, §6, §8): codec order, payload type
//! numbers, telephone-event, ptime, directions, refusals with port 0,
//! `o=` versions, offers, reading an exchange back, and anchoring.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sdp::{
    Codec, Direction, Error, Local, LocalSession, MediaKind, Role, SessionDescription, answer,
    negotiate, offer, parse, rewrite_connection,
};

const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

fn phone_offer(media: &str) -> SessionDescription {
    let text = format!(
        "v=0\r\no=phone 42 42 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n{media}"
    );
    parse(text.as_bytes()).unwrap()
}

fn ours(ports: Vec<u16>) -> Local {
    Local::new(
        PBX,
        vec![
            Codec::PCMU,
            Codec::PCMA,
            Codec::G722,
            Codec::TELEPHONE_EVENT,
        ],
        ports,
    )
}

fn session() -> LocalSession {
    LocalSession::with_id(1000, PBX)
}

fn attr<'a>(sdp: &'a SessionDescription, i: usize, name: &str) -> Vec<&'a str> {
    sdp.media[i]
        .attributes
        .iter()
        .filter(|a| a.name == name)
        .map(|a| a.value.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn formats_are_answered_in_our_order_under_the_offers_numbers() {
    let offer = phone_offer(
        "m=audio 5000 RTP/AVP 9 96 8 0 18\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n",
    );
    let a = answer(&offer, &ours(vec![30000]), &mut session());
    assert_eq!(
        a.media[0].formats,
        ["0", "8", "9", "96"],
        "our preference order (RFC 3264 §6.1)"
    );
    assert_eq!(
        attr(&a, 0, "rtpmap"),
        [
            "0 PCMU/8000",
            "8 PCMA/8000",
            "9 G722/8000",
            "96 telephone-event/8000"
        ]
    );
    assert_eq!(
        attr(&a, 0, "fmtp"),
        ["96 0-15"],
        "the offer's event list is echoed"
    );
    assert_eq!(a.media[0].port, 30000);
    assert_eq!(a.rtp_address(0), Some(SocketAddr::new(PBX, 30000)));
    assert_eq!(a.direction(0), Direction::SendRecv);
    assert_eq!(
        attr(&a, 0, "sendrecv"),
        [""],
        "direction written explicitly"
    );

    let mut g722_first = ours(vec![30000]);
    g722_first.codecs = vec![Codec::G722, Codec::PCMA];
    let a = answer(&offer, &g722_first, &mut session());
    assert_eq!(
        a.media[0].formats,
        ["9", "8"],
        "no telephone-event when we lack it"
    );
    // The answer is valid SDP and survives a round trip.
    assert_eq!(parse(&a.to_bytes()).unwrap(), a);
}

#[test]
fn dynamic_codec_keeps_the_offers_number() {
    let offer = phone_offer("m=audio 5000 RTP/AVP 112 0\r\na=rtpmap:112 G729/8000\r\n");
    let mut local = ours(vec![30000]);
    local.codecs = vec![Codec::G729, Codec::PCMU];
    let a = answer(&offer, &local, &mut session());
    assert_eq!(a.media[0].formats, ["112", "0"]);
    assert_eq!(a.media[0].rtpmap(112).unwrap().encoding, "G729");
}

#[test]
fn encoding_names_match_without_case_and_static_types_without_rtpmap() {
    let offer = phone_offer("m=audio 5000 RTP/AVP 8 97\r\na=rtpmap:97 TELEPHONE-EVENT/8000\r\n");
    let a = answer(&offer, &ours(vec![30000]), &mut session());
    assert_eq!(a.media[0].formats, ["8", "97"]);
    assert_eq!(
        a.media[0].telephone_event().unwrap().events.as_deref(),
        Some("0-16")
    );
}

#[test]
fn telephone_event_alone_does_not_make_a_voice_stream() {
    // Voice offered but none in common: refused even though events match.
    let offer = phone_offer(
        "m=audio 5000 RTP/AVP 97 101\r\na=rtpmap:97 iLBC/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let a = answer(&offer, &ours(vec![30000]), &mut session());
    assert_eq!(a.media[0].port, 0);
    assert_eq!(
        a.media[0].formats,
        ["97", "101"],
        "refusal keeps the offer's formats"
    );
    // An unknown dynamic type counts as voice too.
    let offer = phone_offer("m=audio 5000 RTP/AVP 99 101\r\na=rtpmap:101 telephone-event/8000\r\n");
    assert_eq!(
        answer(&offer, &ours(vec![30000]), &mut session()).media[0].port,
        0
    );
    // A pure event stream (RFC 4317 §2.4) is accepted.
    let offer = phone_offer(
        "m=audio 5000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
    );
    let a = answer(&offer, &ours(vec![30000]), &mut session());
    assert_eq!(a.media[0].formats, ["101"]);
    assert_eq!(a.direction(0), Direction::RecvOnly);
}

#[test]
fn ptime_is_echoed_or_ours() {
    let offer = phone_offer("m=audio 5000 RTP/AVP 0\r\na=ptime:30\r\n");
    let mut local = ours(vec![30000]);
    local.ptime = Some(20);
    let a = answer(&offer, &local, &mut session());
    assert_eq!(a.media[0].ptime(), Some(30));
    let a = answer(
        &phone_offer("m=audio 5000 RTP/AVP 0\r\n"),
        &local,
        &mut session(),
    );
    assert_eq!(a.media[0].ptime(), Some(20));
    let a = answer(
        &phone_offer("m=audio 5000 RTP/AVP 0\r\n"),
        &ours(vec![1]),
        &mut session(),
    );
    assert_eq!(a.media[0].ptime(), None);
}

#[test]
fn direction_is_mirrored_and_meets_ours() {
    use Direction::*;
    let table = [
        // (offer, ours, answer)
        (SendRecv, SendRecv, SendRecv),
        (SendOnly, SendRecv, RecvOnly),
        (RecvOnly, SendRecv, SendOnly),
        (Inactive, SendRecv, Inactive),
        (SendRecv, SendOnly, SendOnly),
        (SendOnly, SendOnly, Inactive),
        (RecvOnly, Inactive, Inactive),
    ];
    for (offered, wanted, expected) in table {
        let offer = phone_offer(&format!("m=audio 5000 RTP/AVP 0\r\na={offered}\r\n"));
        let mut local = ours(vec![30000]);
        local.direction = wanted;
        let a = answer(&offer, &local, &mut session());
        assert_eq!(
            a.direction(0),
            expected,
            "offer {offered}, we want {wanted}"
        );
    }
    // Session-level direction in the offer counts.
    let offer = parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n",
    )
    .unwrap();
    assert_eq!(
        answer(&offer, &ours(vec![1]), &mut session()).direction(0),
        RecvOnly
    );
}

#[test]
fn everything_else_is_refused_with_port_zero_in_place() {
    let offer = phone_offer(
        "m=video 6000 RTP/AVP 31 34\r\n\
m=audio 5000 RTP/AVP 0\r\n\
m=application 7000 UDP/BFCP *\r\n\
m=audio 5002 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 5004 RTP/AVP 0\r\n\
m=image 5006 udptl t38\r\n",
    );
    let a = answer(&offer, &ours(vec![1, 30000, 3, 4, 5]), &mut session());
    let lines: Vec<String> = a
        .media
        .iter()
        .map(|m| m.to_string().lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "m=video 0 RTP/AVP 31 34",
            "m=audio 30000 RTP/AVP 0",
            "m=application 0 UDP/BFCP *",
            "m=audio 0 RTP/SAVP 0",
            "m=audio 0 RTP/AVP 0",
            "m=audio 0 RTP/AVP 0",
            "m=image 0 udptl t38",
        ],
        "same m= count and order (RFC 3264 §6); offered port 0 and no local port refuse too"
    );
    assert!(
        a.media
            .iter()
            .filter(|m| m.port == 0)
            .all(|m| m.attributes.is_empty())
    );
}

#[test]
fn a_section_without_any_address_is_refused() {
    let offer =
        parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")
            .unwrap();
    assert_eq!(
        answer(&offer, &ours(vec![1]), &mut session()).media[0].port,
        0
    );
}

#[test]
fn ipv6_answers_use_ip6() {
    let offer = parse(
        b"v=0\r\no=- 1 1 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
    )
    .unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    let mut local = ours(vec![30000]);
    local.address = v6;
    let a = answer(&offer, &local, &mut LocalSession::with_id(7, v6));
    let text = a.to_string();
    assert!(text.contains("c=IN IP6 2001:db8::10\r\n"), "{text}");
    assert!(text.contains("o=- 7 7 IN IP6 2001:db8::10\r\n"), "{text}");
    let streams = negotiate(&offer, &a, Role::Answerer).unwrap();
    assert_eq!(
        streams[0].remote,
        Some("[2001:db8::5]:5000".parse().unwrap())
    );
}

#[test]
fn version_moves_only_when_the_description_changes() {
    let offer = phone_offer("m=audio 5000 RTP/AVP 0 8\r\n");
    let mut s = session();
    let first = answer(&offer, &ours(vec![30000]), &mut s);
    assert_eq!(
        (
            first.origin.session_id.as_str(),
            first.origin.session_version
        ),
        ("1000", 1000)
    );
    // The same offer again (a session refresh): same answer, same version.
    let again = answer(&offer, &ours(vec![30000]), &mut s);
    assert_eq!(again, first);
    // Hold: the answer changes, the version goes up by one.
    let hold = phone_offer("m=audio 5000 RTP/AVP 0 8\r\na=sendonly\r\n");
    let held = answer(&hold, &ours(vec![30000]), &mut s);
    assert_eq!(held.origin.session_version, 1001);
    assert_eq!(held.direction(0), Direction::RecvOnly);
    // Unhold.
    let back = answer(&offer, &ours(vec![30000]), &mut s);
    assert_eq!(back.origin.session_version, 1002);
    assert_eq!(s.origin().session_version, 1002);
    assert_eq!(s.last_sent(), Some(back.clone()));
    assert_eq!(s.last_sent_bytes(), Some(&back.to_bytes()[..]));
    assert_eq!(
        back.origin.session_id, "1000",
        "the session id never changes"
    );
}

#[test]
fn offers_list_our_codecs() {
    let mut local = ours(vec![30000]);
    local.ptime = Some(20);
    let mut s = session();
    let o = offer(&local, &[MediaKind::Audio], &mut s);
    let text = o.to_string();
    assert_eq!(
        text,
        "v=0\r\no=- 1000 1000 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
a=ptime:20\r\na=sendrecv\r\n"
    );
    assert_eq!(parse(text.as_bytes()).unwrap(), o);
    // Re-offer to put the peer on hold: sendonly, version + 1.
    local.direction = Direction::SendOnly;
    let hold = offer(&local, &[MediaKind::Audio], &mut s);
    assert_eq!(hold.direction(0), Direction::SendOnly);
    assert_eq!(hold.origin.session_version, 1001);
    // A kind we have no codec for, or no port for, is offered disabled.
    let o = offer(
        &ours(vec![30000]),
        &[MediaKind::Audio, MediaKind::Video, MediaKind::Audio],
        &mut session(),
    );
    assert_eq!(
        o.media.iter().map(|m| m.port).collect::<Vec<_>>(),
        [30000, 0, 0]
    );
}

#[test]
fn reading_an_exchange_back_as_offerer() {
    let mut s = session();
    let our_offer = offer(&ours(vec![30000]), &[MediaKind::Audio], &mut s);
    // The callee answers PCMA and events under its own number 96, recvonly.
    let their_answer = parse(
        b"v=0\r\no=callee 1 1 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\n\
m=audio 7078 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\na=ptime:40\r\na=recvonly\r\n",
    )
    .unwrap();
    let streams = negotiate(&our_offer, &their_answer, Role::Offerer).unwrap();
    assert_eq!(streams.len(), 1);
    let s0 = &streams[0];
    assert!(s0.accepted);
    let codec = s0.codec.as_ref().unwrap();
    assert_eq!(codec.rtpmap.encoding, "PCMA");
    assert_eq!((codec.send_payload_type, codec.recv_payload_type), (8, 8));
    let ev = s0.telephone_event.as_ref().unwrap();
    assert_eq!((ev.send_payload_type, ev.recv_payload_type), (96, 101));
    assert_eq!(s0.remote, Some("198.51.100.9:7078".parse().unwrap()));
    assert_eq!(
        s0.direction,
        Direction::SendOnly,
        "they only receive, so we only send"
    );
    assert_eq!(s0.remote_ptime, Some(40));
}

#[test]
fn reading_an_exchange_back_as_answerer() {
    let offer = phone_offer(
        "m=audio 5000 RTP/AVP 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\nm=video 6000 RTP/AVP 31\r\n",
    );
    let a = answer(&offer, &ours(vec![30000, 30002]), &mut session());
    let streams = negotiate(&offer, &a, Role::Answerer).unwrap();
    assert_eq!(streams[0].codec.as_ref().unwrap().rtpmap.encoding, "PCMA");
    assert_eq!(
        streams[0]
            .telephone_event
            .as_ref()
            .unwrap()
            .send_payload_type,
        101
    );
    assert_eq!(streams[0].remote, Some("192.0.2.50:5000".parse().unwrap()));
    assert_eq!(streams[0].direction, Direction::SendRecv);
    assert!(!streams[1].accepted);
    assert_eq!((streams[1].codec.clone(), streams[1].remote), (None, None));
    assert_eq!(streams[1].direction, Direction::Inactive);

    // The RFC 2543 hold address: nothing is sent there.
    let held = parse(
        b"v=0\r\no=- 1 2 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
    )
    .unwrap();
    let a = answer(&held, &ours(vec![30000]), &mut session());
    assert_eq!(
        negotiate(&held, &a, Role::Answerer).unwrap()[0].remote,
        None
    );

    assert_eq!(
        negotiate(&offer, &held, Role::Answerer),
        Err(Error::SectionCount {
            offer: 2,
            answer: 1
        })
    );
}

#[test]
fn rewrite_anchors_media_on_our_address() {
    let mut sdp = parse(
        b"v=0\r\no=alice 5 6 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\n\
m=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 10.0.0.6\r\na=rtcp:4001 IN IP4 10.0.0.6\r\n\
a=candidate:1 1 UDP 2130706431 10.0.0.6 4000 typ host\r\na=ice-ufrag:x\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n\
m=video 0 RTP/AVP 31\r\n\
m=audio 4002/2 RTP/AVP 8\r\n",
    )
    .unwrap();
    rewrite_connection(&mut sdp, PBX, &[30000, 30002]);
    let text = sdp.to_string();
    assert_eq!(
        text,
        "v=0\r\no=alice 5 6 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n\
m=video 0 RTP/AVP 31\r\n\
m=audio 0 RTP/AVP 8\r\n",
        "ports replaced, disabled stays 0, no port → refused, addresses and ICE gone"
    );
    assert!(!text.contains("10.0.0."));
    // Then stamped with the leg's own o=.
    let mut leg = LocalSession::with_id(77, PBX);
    let out = leg.stamp(sdp);
    assert_eq!(out.origin.session_id, "77");
}

#[test]
fn comfort_noise_is_neither_the_codec_nor_enough_to_accept() {
    let mut local = ours(vec![30000]);
    local
        .codecs
        .push(Codec::new(MediaKind::Audio, "CN", 8000, 13));
    // Only comfort noise in common with a voice offer: refused.
    let offer = phone_offer("m=audio 5000 RTP/AVP 97 13\r\na=rtpmap:97 iLBC/8000\r\n");
    assert_eq!(answer(&offer, &local, &mut session()).media[0].port, 0);
    // CN listed first in an answer does not become the codec.
    let offer = phone_offer("m=audio 5000 RTP/AVP 13 0\r\n");
    let their = parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 6000 RTP/AVP 13 0\r\n",
    )
    .unwrap();
    let s = negotiate(&offer, &their, Role::Offerer).unwrap();
    assert_eq!(s[0].codec.as_ref().unwrap().rtpmap.encoding, "PCMU");
}

#[test]
fn retain_formats_drops_codecs_with_their_attributes() {
    let mut offer = phone_offer(
        "m=audio 5000 RTP/AVP 96 0 97 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 iLBC/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n",
    );
    let ours = [Codec::PCMU, Codec::PCMA, Codec::TELEPHONE_EVENT];
    let left = offer.media[0]
        .retain_formats(|_, map| map.is_some_and(|m| ours.iter().any(|c| c.matches(m))));
    assert_eq!(left, 2);
    assert_eq!(
        offer.media[0].to_string(),
        "m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
    );
    assert_eq!(offer.media[0].retain_formats(|_, _| false), 0);
}
