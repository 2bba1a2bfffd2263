//! Parser and serializer tests (RFC 8866 §5): every line type, CRLF and
//! LF, IPv4/IPv6/multicast `c=`, typed accessors, and garbage that must
//! give a typed error with its line number, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sdp::{
    Address, Direction, Error, Limit, Limits, SessionDescription, parse, parse_with,
    static_payload_type,
};

/// Everything RFC 8866 §5 allows, in order, with both levels of c=/b=/k=.
const FULL: &str = "v=0\r\n\
o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\r\n\
s=Call to John Smith\r\n\
i=SDP Offer #1\r\n\
u=http://www.jdoe.example.com/home.html\r\n\
e=Jane Doe <jane@jdoe.example.com>\r\n\
p=+1 617 555-6011\r\n\
c=IN IP4 198.51.100.1\r\n\
b=CT:128\r\n\
t=2873397496 2873404696\r\n\
r=7d 1h 0 25h\r\n\
t=0 0\r\n\
z=2882844526 -1h 2898848070 0\r\n\
k=prompt\r\n\
a=recvonly\r\n\
a=tool:foo 1.0\r\n\
m=audio 49170 RTP/AVP 0 96 101\r\n\
i=voice\r\n\
c=IN IP6 2001:db8::1\r\n\
b=AS:64\r\n\
k=clear:secret\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=x-unknown:keep me\r\n\
a=sendonly\r\n\
m=video 51372/2 RTP/AVP 31\r\n\
c=IN IP4 233.252.0.1/127/3\r\n\
m=application 9 UDP/BFCP *\r\n\
c=IN IP6 ff15::101/3\r\n";

#[test]
fn full_description_parses_and_round_trips_byte_for_byte() {
    let sdp = parse(FULL.as_bytes()).unwrap();
    assert_eq!(sdp.origin.username, "jdoe");
    assert_eq!(sdp.origin.session_id, "3724394400");
    assert_eq!(sdp.origin.session_version, 3724394405);
    assert_eq!(sdp.session_name, "Call to John Smith");
    assert_eq!(sdp.emails.len(), 1);
    assert_eq!(sdp.timings.len(), 2);
    assert_eq!(sdp.timings[0].repeats, ["7d 1h 0 25h"]);
    assert_eq!(sdp.bandwidths[0].kind, "CT");
    assert_eq!(sdp.bandwidths[0].value, 128);
    assert_eq!(sdp.media.len(), 3);

    let audio = &sdp.media[0];
    assert_eq!(audio.formats, ["0", "96", "101"]);
    assert_eq!(audio.title.as_deref(), Some("voice"));
    assert_eq!(audio.rtpmap(0).unwrap().encoding, "PCMU");
    let opus = audio.rtpmap(96).unwrap();
    assert_eq!(
        (opus.encoding.as_str(), opus.clock_rate, opus.channels),
        ("opus", 48000, 2)
    );
    assert_eq!(audio.fmtp(96).unwrap().params, "useinbandfec=1");
    assert_eq!(audio.ptime(), Some(20));
    assert_eq!(audio.maxptime(), Some(40));
    let te = audio.telephone_event().unwrap();
    assert_eq!((te.payload_type, te.clock_rate), (101, 8000));
    assert_eq!(te.events.as_deref(), Some("0-16"));
    assert_eq!(audio.attribute_value("x-unknown"), Some("keep me"));
    assert_eq!(sdp.direction(0), Direction::SendOnly, "media level wins");
    assert_eq!(
        sdp.direction(1),
        Direction::RecvOnly,
        "session level applies"
    );
    assert_eq!(
        sdp.rtp_address(0),
        Some(SocketAddr::new(
            IpAddr::V6("2001:db8::1".parse().unwrap()),
            49170
        ))
    );

    let video = &sdp.media[1];
    assert_eq!((video.port, video.port_count), (51372, Some(2)));
    let c = sdp.connection(1).unwrap();
    assert_eq!((c.ttl, c.count), (Some(127), Some(3)));
    let c = sdp.connection(2).unwrap();
    assert_eq!((c.ttl, c.count), (None, Some(3)));
    assert!(!sdp.media[2].is_rtp());

    assert_eq!(sdp.to_string(), FULL, "serializer writes what was read");
    assert_eq!(parse(&sdp.to_bytes()).unwrap(), sdp);
}

#[test]
fn lf_line_ends_and_missing_final_newline_are_accepted() {
    let crlf = parse(FULL.as_bytes()).unwrap();
    let lf = FULL.replace("\r\n", "\n");
    assert_eq!(parse(lf.as_bytes()).unwrap(), crlf);
    assert_eq!(parse(lf.trim_end().as_bytes()).unwrap(), crlf);
    // Trailing empty lines are tolerated; the serializer writes CRLF.
    let padded = format!("{FULL}\r\n\r\n");
    assert_eq!(parse(padded.as_bytes()).unwrap(), crlf);
    assert!(crlf.to_string().lines().all(|l| !l.contains('\n')));
    assert!(crlf.to_string().ends_with("\r\n"));
}

fn minimal(tail: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{tail}")
}

#[test]
fn effective_connection_media_over_session() {
    let sdp = parse(
        minimal("m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        sdp.rtp_address(0),
        Some(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 4000)))
    );
    assert_eq!(
        sdp.rtp_address(1),
        Some(SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 4002)))
    );
    assert_eq!(sdp.direction(0), Direction::SendRecv, "default sendrecv");
    assert_eq!(sdp.rtp_address(5), None);
}

#[test]
fn ipv6_and_domain_names() {
    let sdp = parse(
        b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns= \r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\n",
    )
    .unwrap();
    assert_eq!(
        sdp.origin.address,
        Address::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
    );
    assert_eq!(sdp.session_name, " ");
    assert_eq!(sdp.rtp_address(0).unwrap().port(), 5004);
    assert_eq!(sdp.media[0].rtpmap(8).unwrap().encoding, "PCMA");

    let named =
        parse(minimal("m=audio 1 RTP/AVP 0\r\nc=IN IP4 host.example.com\r\n").as_bytes()).unwrap();
    assert_eq!(
        named.connection(0).unwrap().address,
        Address::Name {
            name: "host.example.com".into(),
            ipv6: false
        }
    );
    assert_eq!(named.rtp_address(0), None, "names are not resolved");
    assert!(
        parse(
            minimal("")
                .replace("c=IN IP4 192.0.2.1", "c=IN IP4 0.0.0.0")
                .as_bytes()
        )
        .unwrap()
        .connection
        .unwrap()
        .address
        .is_unspecified()
    );
}

#[test]
fn static_payload_types_without_rtpmap() {
    let sdp = parse(minimal("m=audio 1 RTP/AVP 0 3 8 9 18 96\r\n").as_bytes()).unwrap();
    let names: Vec<String> = sdp.media[0]
        .rtpmaps()
        .into_iter()
        .map(|(_, m)| m.encoding)
        .collect();
    assert_eq!(
        names,
        ["PCMU", "GSM", "PCMA", "G722", "G729"],
        "96 unknown without rtpmap"
    );
    assert_eq!(static_payload_type(9).unwrap().clock_rate, 8000);
}

#[test]
fn rtpmap_overrides_static_table_and_bad_rtpmap_is_ignored() {
    let sdp = parse(
        minimal("m=audio 1 RTP/AVP 0 97\r\na=rtpmap:97 nonsense\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20.5\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(sdp.media[0].rtpmap(97), None);
    assert_eq!(sdp.media[0].rtpmap(0).unwrap().encoding, "PCMU");
    assert_eq!(sdp.media[0].ptime(), Some(20));
}

#[test]
fn set_direction_replaces_the_attribute() {
    let mut sdp =
        parse(minimal("m=audio 1 RTP/AVP 0\r\na=sendonly\r\na=ptime:20\r\n").as_bytes()).unwrap();
    sdp.media[0].set_direction(Direction::Inactive);
    assert_eq!(sdp.direction(0), Direction::Inactive);
    assert_eq!(sdp.media[0].attributes.len(), 2);
}

#[test]
fn direction_algebra() {
    use Direction::*;
    for (d, r) in [
        (SendRecv, SendRecv),
        (SendOnly, RecvOnly),
        (RecvOnly, SendOnly),
        (Inactive, Inactive),
    ] {
        assert_eq!(d.reverse(), r);
    }
    assert_eq!(SendRecv.intersect(SendOnly), SendOnly);
    assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
}

/// Parses, expecting a syntax error on `line` whose text contains `needle`.
fn syntax_error(input: &str, line: usize, needle: &str) {
    match parse(input.as_bytes()) {
        Err(e @ Error::Syntax { .. }) => {
            assert_eq!(e.line(), Some(line), "{input:?}: {e}");
            assert!(
                e.to_string().contains(needle),
                "{input:?}: {e} lacks {needle:?}"
            );
        }
        other => panic!("{input:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn malformed_lines_name_the_line_and_the_fault() {
    syntax_error(
        &minimal("m=audio 4000 RTP/AVP\r\n"),
        6,
        "m= line needs \"media port proto fmt...\"",
    );
    syntax_error(&minimal("m=audio\r\n"), 6, "m= line needs");
    syntax_error(
        &minimal("m=audio 70000 RTP/AVP 0\r\n"),
        6,
        "port \"70000\" is not 0-65535",
    );
    syntax_error(&minimal("m=audio -1 RTP/AVP 0\r\n"), 6, "port");
    syntax_error(&minimal("m=audio +5 RTP/AVP 0\r\n"), 6, "port");
    syntax_error(&minimal("m=audio 5/0 RTP/AVP 0\r\n"), 6, "number of ports");
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 128\r\n"),
        6,
        "payload type \"128\"",
    );
    syntax_error(&minimal("m=audio 5 RTP/AVP PCMU\r\n"), 6, "payload type");
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IP4\r\n"),
        7,
        "c= line needs",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IP4 ::1\r\n"),
        7,
        "IP4 with an IPv6",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IP6 10.0.0.1\r\n"),
        7,
        "IP6 with an IPv4",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=ATM NSAP 47.0005\r\n"),
        7,
        "network type",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IPX 1.2.3.4\r\n"),
        7,
        "address type",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IP4 300.1.1.1\r\n"),
        7,
        "neither",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\nc=IN IP4 1.2.3.4/999\r\n"),
        7,
        "TTL",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\ns=again\r\n"),
        7,
        "s= is not allowed in an m= section",
    );
    syntax_error(
        &minimal("m=audio 5 RTP/AVP 0\r\na=:x\r\n"),
        7,
        "attribute name",
    );
    syntax_error(&minimal("b=AS\r\n"), 6, "b= line needs");
    syntax_error(&minimal("b=AS:lots\r\n"), 6, "not a number");
    syntax_error(&minimal("x=1\r\n"), 6, "x= is not allowed");
    syntax_error(&minimal("A=1\r\n"), 6, "lowercase letter");
    syntax_error(&minimal("a=b\r\n\r\na=c\r\n"), 7, "empty line");
    syntax_error(&minimal("a=nul\0here\r\n"), 6, "control character 0x00");
    syntax_error(&minimal("a=bare\rcr\r\n"), 6, "control character 0x0d");
    syntax_error(&minimal("junk\r\n"), 6, "<type>=<value>");
    syntax_error(
        "v=0\r\no=- 1 1 IN IP4 h.example\r\ns=-\r\nr=1d 1h 0\r\n",
        4,
        "r= must follow a t= line",
    );
    syntax_error("v=1\r\n", 1, "unsupported SDP version");
    syntax_error("o=- 1 1 IN IP4 h\r\n", 1, "starts with v=0");
    syntax_error("v=0\r\ns=-\r\n", 2, "o= must follow v=");
    syntax_error(
        "v=0\r\no=- 1 1 IN IP4 h.example\r\nt=0 0\r\n",
        3,
        "s= must follow o=",
    );
    syntax_error("v=0\r\no=- x 1 IN IP4 h.example\r\n", 2, "session id");
    syntax_error(
        "v=0\r\no=- 1 99999999999999999999 IN IP4 h.example\r\n",
        2,
        "session version",
    );
    syntax_error("v=0\r\no=- 1 1 IN IP4\r\n", 2, "o= line needs");
    syntax_error(&minimal("t=now later\r\n"), 6, "t= times");
    syntax_error(
        &minimal("c=IN IP4 192.0.2.2\r\n"),
        6,
        "c= may appear only once",
    );
    syntax_error(
        "v=0\r\no=- 1 1 IN IP4 h.example\r\ns=a\x01b\r\n",
        3,
        "control character 0x01",
    );
}

#[test]
fn invalid_utf8_and_missing_lines() {
    let mut bytes = minimal("a=x\r\n").into_bytes();
    let at = bytes.len() - 3;
    bytes[at] = 0xff;
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e.line(), Some(6));
    assert!(e.to_string().contains("UTF-8"), "{e}");

    assert_eq!(parse(b""), Err(Error::Empty));
    assert_eq!(parse(b"\r\n\r\n"), Err(Error::Empty));
    assert_eq!(parse(b"v=0\r\n"), Err(Error::Missing { what: "o=" }));
    assert_eq!(
        parse(b"v=0\r\no=- 1 1 IN IP4 h.example\r\n"),
        Err(Error::Missing { what: "s=" })
    );
    assert_eq!(
        parse(b"v=0\r\no=- 1 1 IN IP4 h.example\r\ns=-\r\nc=IN IP4 h.example\r\n"),
        Err(Error::Missing { what: "t=" })
    );
    assert_eq!(
        Error::Missing { what: "t=" }.to_string(),
        "missing mandatory t= line"
    );
}

#[test]
fn truncated_descriptions_never_panic() {
    let full = FULL.as_bytes();
    for end in 0..full.len() {
        // Every prefix either parses or gives a typed error.
        if let Ok(sdp) = parse(&full[..end]) {
            assert_eq!(parse(&sdp.to_bytes()).unwrap(), sdp);
        }
    }
}

#[test]
fn hundred_thousand_media_sections_hit_a_limit() {
    let mut s = minimal("");
    for _ in 0..100_000 {
        s.push_str("m=audio 0 RTP/AVP 0\r\n");
    }
    assert_eq!(
        parse(s.as_bytes()),
        Err(Error::TooLarge {
            limit: Limit::Size,
            max: 65_536
        })
    );
    let roomy = Limits {
        max_size: usize::MAX,
        max_lines: usize::MAX,
        max_media: 64,
    };
    assert_eq!(
        parse_with(s.as_bytes(), &roomy),
        Err(Error::TooLarge {
            limit: Limit::MediaSections,
            max: 64
        })
    );
    let lines = Limits {
        max_size: usize::MAX,
        max_lines: 2_000,
        max_media: usize::MAX,
    };
    let e = parse_with(s.as_bytes(), &lines).unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            limit: Limit::Lines,
            max: 2_000
        }
    );
    assert_eq!(
        e.to_string(),
        "session description has more than 2000 lines"
    );
    // At the limit is fine.
    let at = minimal(&"m=audio 0 RTP/AVP 0\r\n".repeat(64));
    assert_eq!(parse(at.as_bytes()).unwrap().media.len(), 64);
}

#[test]
fn binary_junk_gives_typed_errors() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [1usize, 2, 3, 7, 64, 1000, 70_000] {
        for _ in 0..50 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(parse(&junk).is_err());
            let mut prefixed = b"v=0\r\n".to_vec();
            prefixed.extend_from_slice(&junk);
            assert!(parse(&prefixed).is_err());
        }
    }
}

#[test]
fn from_str_and_model_equality() {
    let a: SessionDescription = minimal("m=audio 1 RTP/AVP 0\r\n").parse().unwrap();
    let b = parse(minimal("m=audio  1   RTP/AVP  0\n").as_bytes()).unwrap();
    assert_eq!(a, b, "extra spaces between fields are tolerated");
    assert_eq!(b.to_string(), minimal("m=audio 1 RTP/AVP 0\r\n"));
}

#[test]
fn trailing_whitespace_is_tolerated_where_it_is_harmless() {
    let sloppy = "v=0 \r\no=- 1 1 IN IP4 192.0.2.1 \r\ns=-\r\nc=IN IP4 192.0.2.1 \r\nb=AS:64 \r\nt=0 0 \r\n\
m=audio 4000 RTP/AVP 0 \r\na=rtpmap:0 PCMU/8000 \r\na=sendonly \r\n";
    let sdp = parse(sloppy.as_bytes()).unwrap();
    assert_eq!(sdp.direction(0), Direction::SendOnly);
    assert_eq!(sdp.bandwidths[0].value, 64);
    assert_eq!(sdp.media[0].rtpmap(0).unwrap().encoding, "PCMU");
    assert_eq!(parse(&sdp.to_bytes()).unwrap(), sdp);
}
