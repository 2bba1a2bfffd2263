//! Call parking through the real binary and the shipped `default.lua`
//! (issue 12, item 4): 70 parks the caller, which hears "parked in slot
//! 71" and then music on hold; dialling 71 from another phone takes the
//! parked call, with audio both ways (a tone each way, checked by
//! frequency); an empty slot says so; a parked caller that hangs up frees
//! its slot.

mod office;

use std::time::Duration;

use office::{OFFER, WAIT, answered, assert_heard, assert_music, exchange, office, phone};
use testkit::RtpPeer;

/// Waits until `peer` has received `count` RTP packets, or fails.
fn hears(who: &str, peer: &RtpPeer, count: usize) {
    assert!(
        peer.wait_for(count, Duration::from_secs(8)),
        "{who} got {} RTP packets, wanted {count}",
        peer.count()
    );
}

#[test]
fn a_parked_call_hears_music_and_is_picked_up_from_its_slot_with_audio_both_ways() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (a_dialog, a_media) = answered(&mut a, "70", &ra.sdp_offer(OFFER));
    // The announcement, then the music: wait for the music's first
    // seconds and check it is music (more than one pitch).
    hears("the parked caller", &ra, 150);
    ra.clear();
    // It keeps sending its own tone meanwhile, and hears nothing of it.
    ra.send_tone(a_media.addr, 0, 1000.0, Duration::from_millis(1600))
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    assert_music("the parked caller", &ra, a_media.addr, 1000.0);
    // The lot shows it.
    let (_, parked) = o.server.http_get("/api/v1/parked").expect("admin API");
    assert!(parked.contains("\"slot\":71"), "{parked}");

    // 1002 dials 71: bridged to the parked caller.
    let mut b = phone(&o, "1002");
    let rb = RtpPeer::localhost();
    let (b_dialog, b_media) = answered(&mut b, "71", &rb.sdp_offer(OFFER));
    ra.clear();
    exchange(
        &ra,
        (a_media.addr, 0, 1000.0),
        &rb,
        (b_media.addr, 0, 2000.0),
    );
    assert_heard("the picker", &rb, b_media.addr, 40, 1000.0);
    assert_heard("the parked caller", &ra, a_media.addr, 40, 2000.0);
    let (_, parked) = o.server.http_get("/api/v1/parked").expect("admin API");
    assert_eq!(parked.trim(), "[]", "slot 71 is free again");

    // The parked caller hangs up (its dialog now served by the picker's
    // call): the picker gets the BYE.
    let mut a_dialog = a_dialog;
    let bye = a
        .request_in(&mut a_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200, "the moved dialog is still served");
    let bye = b.request("BYE", WAIT).expect("the picker gets BYE");
    assert_eq!(bye.call_id(), Some(b_dialog.call_id.as_str()));
    b.reply(&bye, tag_of(&b_dialog.local), 200).unwrap();
}

/// A parked phone that changes codec (a re-INVITE offering PCMA only)
/// hears the music in the new codec: the lot starts it again on the leg
/// as the new offer left it.
#[test]
fn a_parked_phone_that_changes_codec_hears_the_music_in_the_new_one() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (mut a_dialog, a_media) = answered(&mut a, "70", &ra.sdp_offer(OFFER));
    wait_parked(&o, 71);
    hears("the parked caller", &ra, 100);
    let pcma = ra.sdp_offer(&["PCMA", "telephone-event"]);
    let ok = a
        .request_in(&mut a_dialog, "INVITE", Some(&pcma))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("RTP/AVP 8"));
    a.ack_in(&a_dialog).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ra.clear();
    hears("the parked caller, in PCMA", &ra, 80);
    let types: Vec<u8> = ra
        .received()
        .iter()
        .filter_map(|p| p.header.map(|h| h.payload_type))
        .collect();
    assert!(
        types.iter().all(|pt| *pt == 8),
        "the music is PCMA now: {types:?}"
    );
    assert_music("the parked caller", &ra, a_media.addr, 1000.0);
}

/// Waits until the lot shows a call in `slot`, or fails.
fn wait_parked(o: &office::Office, slot: u16) {
    let deadline = std::time::Instant::now() + WAIT;
    let want = format!("\"slot\":{slot}");
    while !o
        .server
        .http_get("/api/v1/parked")
        .is_ok_and(|(_, parked)| parked.contains(&want))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never parked in {slot}: {}",
            o.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tag of a From/To value.
fn tag_of(party: &str) -> &str {
    party.split(";tag=").nth(1).unwrap_or_default()
}

#[test]
fn an_empty_slot_says_so_and_a_parked_caller_that_hangs_up_frees_its_slot() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (mut a_dialog, _) = answered(&mut a, "70", &ra.sdp_offer(OFFER));
    hears("the parked caller", &ra, 50);
    // It hangs up while parked: the slot is free.
    let bye = a
        .request_in(&mut a_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let mut freed = false;
    for _ in 0..100 {
        let (_, parked) = o.server.http_get("/api/v1/parked").expect("admin API");
        if parked.trim() == "[]" {
            freed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(freed, "slot 71 freed after the parked caller hung up");

    // 71 now: "nobody is parked there", then the PBX hangs up.
    let mut b = phone(&o, "1002");
    let rb = RtpPeer::localhost();
    let (_b_dialog, _) = answered(&mut b, "71", &rb.sdp_offer(OFFER));
    hears("the caller of an empty slot", &rb, 40);
    let bye = b.request("BYE", WAIT).expect("hung up after the prompt");
    assert_eq!(bye.call_id(), Some(_b_dialog.call_id.as_str()));
}

/// A dialplan that parks for a second: 80 rings 1002 back, 81 nobody.
const SHORT_PARK_LUA: &str = r#"
function route(call)
  local dest = call.request_uri.user
  if dest == "80" then
    call:park({ timeout = 1, ringback = "1002" })
  elseif dest == "81" then
    call:park({ timeout = 1 })
  else
    call:reject(404, "Not Found")
  end
end
"#;

#[test]
fn a_parked_call_left_too_long_rings_back_with_audio_both_ways_or_is_hung_up() {
    let o = office(Some(SHORT_PARK_LUA));
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let ra = RtpPeer::localhost();
    let (a_dialog, a_media) = answered(&mut a, "80", &ra.sdp_offer(OFFER));
    // After the second in the lot, 1002 rings, told it is slot 71.
    let incoming = b.incoming(WAIT).expect("the ring-back reaches 1002");
    let from = incoming
        .invite
        .headers
        .from()
        .map(|f| f.to_string())
        .unwrap_or_default();
    assert!(from.contains("sip:71@"), "{from}");
    let b_media = office::media_of(&incoming.invite.body);
    let rb = RtpPeer::localhost();
    b.reply_sdp(
        &incoming.invite,
        &incoming.tag,
        200,
        &rb.sdp_answer(&["PCMU"]),
    )
    .unwrap();
    b.request("ACK", WAIT).expect("the PBX ACKs 1002's 200");
    ra.clear();
    exchange(
        &ra,
        (a_media.addr, 0, 1000.0),
        &rb,
        (b_media.addr, 0, 2000.0),
    );
    assert_heard("1002, rung back", &rb, b_media.addr, 40, 1000.0);
    assert_heard("the parked caller", &ra, a_media.addr, 40, 2000.0);
    // 1002 hangs up: the parked caller gets the BYE.
    let mut b_dialog = b.dialog_of(&incoming);
    let bye = b
        .request_in(&mut b_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye = a.request("BYE", WAIT).expect("the parked caller gets BYE");
    assert_eq!(bye.call_id(), Some(a_dialog.call_id.as_str()));
    a.reply(&bye, tag_of(&a_dialog.local), 200).unwrap();

    // 81 names nobody to ring back: after the second the call is over.
    let (a_dialog, _) = answered(&mut a, "81", &ra.sdp_offer(OFFER));
    let bye = a
        .request("BYE", WAIT)
        .expect("hung up when the park times out");
    assert_eq!(bye.call_id(), Some(a_dialog.call_id.as_str()));
}

/// A phone whose ACK for our 200 is lost keeps getting the 200 until it
/// ACKs (RFC 3261 §13.3.1.4), even once its call has been parked and
/// picked up by another phone's call: the 2xx goes with the dialog.
#[test]
fn our_200_is_sent_again_until_the_ack_after_the_call_is_parked_and_picked_up() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let out = a.call_sdp("70", &[], &ra.sdp_offer(OFFER)).expect("INVITE");
    let (ok, _) = a.final_response(WAIT).expect("70 answers");
    assert_eq!(ok.status, 200);
    // No ACK: the call is parked all the same, and picked up from 1002.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, parked) = o.server.http_get("/api/v1/parked").expect("admin API");
        if parked.contains("\"slot\":71") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never parked: {parked}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = phone(&o, "1002");
    let rb = RtpPeer::localhost();
    let (_b_dialog, b_media) = answered(&mut b, "71", &rb.sdp_offer(OFFER));
    // What came before the pickup is drained; the 200 must come again.
    while a.silence(Duration::from_millis(100)).is_some() {}
    let again = a
        .response(Duration::from_secs(9))
        .expect("our 200 again, after the pickup");
    assert_eq!(again.status, 200);
    assert_eq!(again.cseq(), ok.cseq());
    let _a_dialog = a.ack(&out, &again).expect("ACK");
    let a_media = office::media_of(&again.body);
    ra.clear();
    exchange(
        &ra,
        (a_media.addr, 0, 1000.0),
        &rb,
        (b_media.addr, 0, 2000.0),
    );
    assert_heard("the picker", &rb, b_media.addr, 40, 1000.0);
    assert_heard("the parked caller", &ra, a_media.addr, 40, 2000.0);
}

/// A phone that changes codec while the park announcement plays (as
/// some do right after the answer): the announcement goes on in the new
/// codec, the route is not cut short, and the call is parked with music.
#[test]
fn a_codec_change_during_the_announcement_does_not_cut_it_short() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (mut a_dialog, _) = answered(&mut a, "70", &ra.sdp_offer(OFFER));
    hears("the parked caller", &ra, 5);
    let pcma = ra.sdp_offer(&["PCMA", "telephone-event"]);
    let ok = a
        .request_in(&mut a_dialog, "INVITE", Some(&pcma))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    a.ack_in(&a_dialog).unwrap();
    wait_parked(&o, 71);
    ra.clear();
    hears("the parked caller, in PCMA", &ra, 50);
    assert!(
        ra.received()
            .iter()
            .filter_map(|p| p.header)
            .all(|h| h.payload_type == 8),
        "the music is PCMA"
    );
}
