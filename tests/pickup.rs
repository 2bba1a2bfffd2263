//! Call pickup through the real binary and the shipped `default.lua`
//! (issue 12, item 4): `**1002` takes the call ringing 1002 (directed),
//! `*8` one ringing a member of the caller's `pickup_group`; the rung
//! phone gets CANCEL, and caller and picker hear each other (a tone each
//! way, checked by frequency). A callee that answers first keeps the call
//! (the pickup gets 404); one that answers after the pickup is too late
//! and gets BYE.

mod office;

use office::{OFFER, WAIT, assert_heard, exchange, media_of, office_with, phone};
use testkit::{InCall, OutCall, Phone, RemoteMedia, RtpPeer};

const GROUP: &str =
    "\n[[extension]]\nid = \"1003\"\npassword = \"pw-1003\"\npickup_group = \"sales\"\n";

/// 1001 calls 1002, which rings and does not answer.
fn ringing(o: &office::Office) -> (Phone, RtpPeer, OutCall, Phone, InCall) {
    let mut a = phone(o, "1001");
    let mut b = phone(o, "1002");
    let ra = RtpPeer::localhost();
    let out = a
        .call_sdp("1002", &[], &ra.sdp_offer(OFFER))
        .expect("INVITE");
    let b_in = b.incoming(WAIT).expect("1002 rings");
    b.reply(&b_in.invite, &b_in.tag, 180).unwrap();
    (a, ra, out, b, b_in)
}

/// The picker's call is answered; the caller's too; audio both ways.
fn picked_up(a: &mut Phone, ra: &RtpPeer, out: &OutCall, c: &mut Phone, dest: &str) {
    let rc = RtpPeer::localhost();
    let pick = c.call_sdp(dest, &[], &rc.sdp_offer(OFFER)).expect("INVITE");
    let (ok, _) = c.final_response(WAIT).expect("the picker is answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    let c_media: RemoteMedia = media_of(&ok.body);
    let mut c_dialog = c.ack(&pick, &ok).expect("ACK");
    let (ok, _) = a.final_response(WAIT).expect("the caller is answered");
    assert_eq!(ok.status, 200);
    let a_media = media_of(&ok.body);
    let _a_dialog = a.ack(out, &ok).expect("ACK");
    exchange(
        ra,
        (a_media.addr, 0, 1000.0),
        &rc,
        (c_media.addr, 0, 2000.0),
    );
    assert_heard("the picker", &rc, c_media.addr, 40, 1000.0);
    assert_heard("the caller", ra, a_media.addr, 40, 2000.0);
    let bye = c.request_in(&mut c_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = a.request("BYE", WAIT).expect("the caller gets BYE");
    drop(bye);
}

#[test]
fn a_directed_pickup_takes_the_ringing_call_with_audio_both_ways() {
    let o = office_with(None, GROUP);
    let (mut a, ra, out, mut b, b_in) = ringing(&o);
    let mut c = phone(&o, "1003");
    let cancelled = std::thread::scope(|s| {
        // 1002 stops ringing: CANCEL, answered 200, then 487 to the INVITE.
        let cancel = s.spawn(|| {
            let cancel = b.request("CANCEL", WAIT).expect("1002 gets CANCEL");
            b.reply(&cancel, &b_in.tag, 200).unwrap();
            b.reply(&b_in.invite, &b_in.tag, 487).unwrap();
        });
        picked_up(&mut a, &ra, &out, &mut c, "**1002");
        cancel.join().is_ok()
    });
    assert!(cancelled, "1002's side of the test failed");
}

#[test]
fn group_pickup_takes_a_call_ringing_another_member() {
    let group = format!(
        "{GROUP}\n[[extension]]\nid = \"1004\"\npassword = \"pw-1004\"\npickup_group = \"sales\"\n"
    );
    // The group "sales" is 1003 and 1004 (the office's 1002 is in none);
    // 1001 calls 1004.
    let o = office_with(None, &group);
    let mut a = phone(&o, "1001");
    let mut d = phone(&o, "1004");
    let ra = RtpPeer::localhost();
    let out = a
        .call_sdp("1004", &[], &ra.sdp_offer(OFFER))
        .expect("INVITE");
    let d_in = d.incoming(WAIT).expect("1004 rings");
    d.reply(&d_in.invite, &d_in.tag, 180).unwrap();
    let mut c = phone(&o, "1003");
    // Someone outside the group gets nothing: 1002 dials *8.
    let mut b = phone(&o, "1002");
    let rb = RtpPeer::localhost();
    b.call_sdp("*8", &[], &rb.sdp_offer(OFFER)).expect("INVITE");
    let (r, _) = b.final_response(WAIT).expect("answered");
    assert_eq!(r.status, 404, "1002 is in no pickup group");
    std::thread::scope(|s| {
        s.spawn(|| {
            let cancel = d.request("CANCEL", WAIT).expect("1004 gets CANCEL");
            d.reply(&cancel, &d_in.tag, 200).unwrap();
            d.reply(&d_in.invite, &d_in.tag, 487).unwrap();
        });
        picked_up(&mut a, &ra, &out, &mut c, "*8");
    });
}

#[test]
fn the_callee_answering_first_keeps_the_call_and_a_late_answer_gets_bye() {
    let o = office_with(None, GROUP);
    // The callee answers before the pickup: it keeps the call.
    let (mut a, ra, out, mut b, b_in) = ringing(&o);
    let rb = RtpPeer::localhost();
    b.reply_sdp(&b_in.invite, &b_in.tag, 200, &rb.sdp_answer(&["PCMU"]))
        .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("answered by 1002");
    assert_eq!(ok.status, 200);
    let mut a_dialog = a.ack(&out, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("ACK");
    let mut c = phone(&o, "1003");
    let rc = RtpPeer::localhost();
    c.call_sdp("**1002", &[], &rc.sdp_offer(OFFER))
        .expect("INVITE");
    let (r, _) = c.final_response(WAIT).expect("answered");
    assert_eq!(r.status, 404, "nothing rings any more");
    let bye = a.request_in(&mut a_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = b.request("BYE", WAIT).expect("1002 gets BYE");
    b.reply(&bye, &b_in.tag, 200).unwrap();

    // The pickup first: the callee's 200 crossing the CANCEL is too late.
    let (mut a, ra2, out, mut b, b_in) = ringing(&o);
    std::thread::scope(|s| {
        s.spawn(|| {
            let cancel = b.request("CANCEL", WAIT).expect("1002 gets CANCEL");
            b.reply(&cancel, &b_in.tag, 200).unwrap();
            // Answered anyway (crossed on the wire): ACKed, then BYE.
            let late = RtpPeer::localhost();
            b.reply_sdp(&b_in.invite, &b_in.tag, 200, &late.sdp_answer(&["PCMU"]))
                .unwrap();
            b.request("ACK", WAIT).expect("the late 200 is ACKed");
            let bye = b.request("BYE", WAIT).expect("and ended with BYE");
            b.reply(&bye, &b_in.tag, 200).unwrap();
        });
        picked_up(&mut a, &ra2, &out, &mut c, "**1002");
    });
    drop(ra);
}

/// The tag of a From/To value.
fn tag_of(party: &str) -> &str {
    party.split(";tag=").nth(1).unwrap_or_default()
}

/// The Replaces value (RFC 3891) naming the dialog `invite` started with
/// the phone that answers it with `tag`: what a BLF key reads from the
/// dialog-info of the watched phone.
fn replaces_for(invite: &sip_proto::Request, tag: &str, early: bool) -> String {
    let from = invite
        .headers
        .get(&sip_proto::HeaderName::From)
        .unwrap_or_default();
    format!(
        "{};to-tag={tag};from-tag={}{}",
        invite.call_id().unwrap_or_default(),
        tag_of(from),
        if early { ";early-only" } else { "" }
    )
}

#[test]
fn a_blf_key_picks_up_a_ringing_call_with_an_invite_with_replaces() {
    let o = office_with(None, GROUP);
    let (mut a, ra, out, mut b, b_in) = ringing(&o);
    let mut c = phone(&o, "1003");
    let replaces = replaces_for(&b_in.invite, &b_in.tag, true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let cancel = b.request("CANCEL", WAIT).expect("1002 gets CANCEL");
            b.reply(&cancel, &b_in.tag, 200).unwrap();
            b.reply(&b_in.invite, &b_in.tag, 487).unwrap();
        });
        let rc = RtpPeer::localhost();
        let pick = c
            .call_sdp("1002", &[("Replaces", &replaces)], &rc.sdp_offer(OFFER))
            .expect("INVITE");
        let (ok, _) = c.final_response(WAIT).expect("the BLF key is answered");
        assert_eq!(ok.status, 200, "{ok:?}");
        let c_media = media_of(&ok.body);
        c.ack(&pick, &ok).expect("ACK");
        let (ok, _) = a.final_response(WAIT).expect("the caller is answered");
        assert_eq!(ok.status, 200);
        let a_media = media_of(&ok.body);
        a.ack(&out, &ok).expect("ACK");
        exchange(
            &ra,
            (a_media.addr, 0, 1000.0),
            &rc,
            (c_media.addr, 0, 2000.0),
        );
        assert_heard("the BLF key's phone", &rc, c_media.addr, 40, 1000.0);
        assert_heard("the caller", &ra, a_media.addr, 40, 2000.0);
    });
    // Nothing rings any more: the same Replaces again gets 481.
    let mut d = phone(&o, "1002");
    let rd = RtpPeer::localhost();
    d.call_sdp("1002", &[("Replaces", &replaces)], &rd.sdp_offer(OFFER))
        .expect("INVITE");
    let (r, _) = d.final_response(WAIT).expect("answered");
    assert_eq!(r.status, 481);
}

#[test]
fn an_invite_with_replaces_takes_an_answered_partys_place() {
    let o = office_with(None, GROUP);
    let (mut a, ra, out, mut b, b_in) = ringing(&o);
    let rb = RtpPeer::localhost();
    b.reply_sdp(&b_in.invite, &b_in.tag, 200, &rb.sdp_answer(&["PCMU"]))
        .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("answered");
    let a_media = media_of(&ok.body);
    let a_dialog = a.ack(&out, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("ACK");
    // 1003 takes 1002's place (an attended transfer completed by a phone).
    let mut c = phone(&o, "1003");
    let rc = RtpPeer::localhost();
    let replaces = replaces_for(&b_in.invite, &b_in.tag, false);
    let pick = c
        .call_sdp("1002", &[("Replaces", &replaces)], &rc.sdp_offer(OFFER))
        .expect("INVITE");
    let (ok, _) = c.final_response(WAIT).expect("answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    let c_media = media_of(&ok.body);
    c.ack(&pick, &ok).expect("ACK");
    let bye = b.request("BYE", WAIT).expect("1002 is released");
    b.reply(&bye, &b_in.tag, 200).unwrap();
    let update = a
        .request("UPDATE", WAIT)
        .expect("1001 is told who it talks to");
    a.reply(&update, tag_of(&a_dialog.local), 200).unwrap();
    let pai = update
        .headers
        .get(&sip_proto::HeaderName::parse("P-Asserted-Identity"))
        .unwrap_or_default();
    assert!(pai.contains("sip:1003@"), "{pai}");
    exchange(
        &ra,
        (a_media.addr, 0, 1000.0),
        &rc,
        (c_media.addr, 0, 2000.0),
    );
    assert_heard("the replacing phone", &rc, c_media.addr, 40, 1000.0);
    assert_heard("the caller", &ra, a_media.addr, 40, 2000.0);
}
