//! Blind transfer (RFC 3515 REFER, issue 12 item 1) through the real
//! binary and the shipped `default.lua`: 1001 calls 1002, 1002 transfers
//! the call to 1003. The transferor gets 202 and NOTIFYs with
//! `message/sipfrag` (100 Trying, then 200 or the failure), the target is
//! routed in the transferor's context, and the remaining phones hear each
//! other (a tone each way, checked by frequency). A busy target sends the
//! call back to a transferor still on the line; one that hung up is rung
//! back, or handed to the context's `on_transfer_failed` when it has one.

mod office;

use office::{OFFER, WAIT, assert_heard, exchange, media_of, office_with, phone};
use sip_proto::HeaderName;
use testkit::{Dialog, InCall, Phone, RemoteMedia, RtpPeer};

const THIRD: &str = "\n[[extension]]\nid = \"1003\"\npassword = \"pw-1003\"\n";

/// The Allow of a phone that takes no UPDATE: it is told its new party in
/// a re-INVITE.
const NO_UPDATE: &str = "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY";

/// A call 1001 -> 1002, answered and ACKed both sides.
struct Call {
    a: Phone,
    b: Phone,
    a_dialog: Dialog,
    b_in: InCall,
    b_dialog: Dialog,
    ra: RtpPeer,
    rb: RtpPeer,
    a_media: RemoteMedia,
    b_media: RemoteMedia,
}

fn call_1002(o: &office::Office) -> Call {
    call_1002_with(o, &[])
}

/// As [`call_1002`], 1001's INVITE carrying `extra` headers.
fn call_1002_with(o: &office::Office, extra: &[(&str, &str)]) -> Call {
    call_1002_as(o, extra, false)
}

/// As [`call_1002`]; with `early`, 1002 first sends early media (183 with
/// SDP and a 1500 Hz tone, which 1001 must hear) and answers after.
fn call_1002_as(o: &office::Office, extra: &[(&str, &str)], early: bool) -> Call {
    let mut a = phone(o, "1001");
    let mut b = phone(o, "1002");
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let out = a
        .call_sdp("1002", extra, &ra.sdp_offer(OFFER))
        .expect("INVITE");
    let b_in = b.incoming(WAIT).expect("1002 rings");
    let b_media = media_of(&b_in.invite.body);
    if early {
        b.reply_sdp(&b_in.invite, &b_in.tag, 183, &rb.sdp_answer(&["PCMU"]))
            .unwrap();
        let progress = a.response(WAIT).expect("183 relayed");
        assert_eq!(progress.status, 183);
        let a_early = media_of(&progress.body);
        rb.send_tone(b_media.addr, 0, 1500.0, office::TONE)
            .expect("send tone");
        ra.settle(std::time::Duration::from_millis(200), WAIT);
        assert_heard("1001, ringing", &ra, a_early.addr, 40, 1500.0);
    }
    b.reply_sdp(&b_in.invite, &b_in.tag, 200, &rb.sdp_answer(&["PCMU"]))
        .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("answered");
    assert_eq!(ok.status, 200);
    let a_media = media_of(&ok.body);
    let a_dialog = a.ack(&out, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("the PBX ACKs 1002");
    let b_dialog = b.dialog_of(&b_in);
    Call {
        a,
        b,
        a_dialog,
        b_in,
        b_dialog,
        ra,
        rb,
        a_media,
        b_media,
    }
}

/// The sipfrag status line of the next NOTIFY `p` gets (answered 200), and
/// its Subscription-State.
fn next_notify(p: &mut Phone, tag: &str) -> (String, String) {
    let notify = p.request("NOTIFY", WAIT).expect("a NOTIFY of the REFER");
    assert_eq!(
        notify
            .headers
            .get(&HeaderName::parse("Event"))
            .map(|e| e.starts_with("refer")),
        Some(true),
        "{notify:?}"
    );
    assert_eq!(
        notify.headers.get(&HeaderName::parse("Content-Type")),
        Some("message/sipfrag;version=2.0")
    );
    p.reply(&notify, tag, 200).unwrap();
    let state = notify
        .headers
        .get(&HeaderName::parse("Subscription-State"))
        .unwrap_or_default()
        .to_owned();
    let frag = String::from_utf8_lossy(&notify.body)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (frag, state)
}

fn refer(c: &mut Call, to: &str) -> u16 {
    let refer_to = format!("<sip:{to}@{}>", office::DOMAIN);
    c.b.request_in_headers(&mut c.b_dialog, "REFER", &[("Refer-To", &refer_to)], None)
        .expect("REFER answered")
        .status
}

#[test]
fn a_blind_transfer_connects_the_caller_to_the_target_and_releases_the_transferor() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    assert_eq!(refer(&mut c, "1003"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, state) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    assert!(state.starts_with("active"), "{state}");

    // 1003 rings, from 1001 (the party transferred), and answers.
    let t_in = t.incoming(WAIT).expect("the target rings");
    let from = t_in
        .invite
        .headers
        .get(&HeaderName::parse("From"))
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains("sip:1001@"), "{from}");
    let t_media = media_of(&t_in.invite.body);
    let rt = RtpPeer::localhost();
    t.reply_sdp(&t_in.invite, &t_in.tag, 200, &rt.sdp_answer(&["PCMU"]))
        .unwrap();
    t.request("ACK", WAIT).expect("the PBX ACKs 1003");

    // The transferor: NOTIFY 200 (subscription over), then BYE.
    let (frag, state) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    let bye =
        c.b.request("BYE", WAIT)
            .expect("the transferor is released");
    c.b.reply(&bye, &tag, 200).unwrap();

    // 1001 and 1003 hear each other; the caller hangs up and the target
    // gets the BYE.
    talk_then_hang_up(
        (&mut c.a, &mut c.a_dialog, &c.ra, &c.a_media),
        (&mut t, &t_in, &rt, &t_media),
        (0, 0),
    );
    let _ = (&c.rb, &c.b_media);
    // The CDR records the transfer.
    assert!(cdr_says(&o, "transferred by 1002 to 1003"));
}

/// Whether a CDR's hangup cause says `what` (CDRs are written in batches).
fn cdr_says(o: &office::Office, what: &str) -> bool {
    for _ in 0..100 {
        let (_, cdrs) = o.server.http_get("/api/v1/cdrs").expect("admin API");
        if cdrs.contains(what) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn a_blind_transfer_to_the_park_announces_the_slot_to_the_transferor() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    assert_eq!(refer(&mut c, "70"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    // The transferor hears "parked in slot 71" (RTP from the PBX), then
    // NOTIFY 200 and BYE.
    c.rb.clear();
    assert!(
        c.rb.wait_for(50, std::time::Duration::from_secs(5)),
        "the transferor hears the slot"
    );
    let (frag, state) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    let bye =
        c.b.request("BYE", WAIT)
            .expect("the transferor is released");
    c.b.reply(&bye, &tag, 200).unwrap();
    let (_, parked) = o.server.http_get("/api/v1/parked").expect("admin API");
    assert!(parked.contains("\"slot\":71"), "{parked}");
    assert!(parked.contains("\"parker\":\"1002\""), "{parked}");
    // 1003 takes it from 71: 1001 and 1003 hear each other.
    let mut t = phone(&o, "1003");
    let rt = RtpPeer::localhost();
    let pick = t.call_sdp("71", &[], &rt.sdp_offer(OFFER)).expect("INVITE");
    let (ok, _) = t.final_response(WAIT).expect("answered");
    assert_eq!(ok.status, 200);
    let t_media = media_of(&ok.body);
    t.ack(&pick, &ok).expect("ACK");
    hear_each_other((&c.ra, &c.a_media), (&rt, &t_media), (0, 0));
    assert!(cdr_says(&o, "transferred by 1002 to park slot 71"));
}

#[test]
fn a_busy_target_sends_the_call_back_to_a_transferor_still_on_the_line() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    assert_eq!(refer(&mut c, "1003"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    let t_in = t.incoming(WAIT).expect("the target rings");
    t.reply(&t_in.invite, &t_in.tag, 486).unwrap();
    let (frag, state) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 486 Busy Here");
    assert!(state.starts_with("terminated"), "{state}");
    // Back together: 1001 and 1002 hear each other.
    talk_and_end(&mut c);
}

/// 1001 and 1002, still in their call, hear each other (1000 Hz from
/// 1001, 2000 Hz from 1002); then 1001 hangs up and 1002 gets the BYE.
fn talk_and_end(c: &mut Call) {
    hear_each_other((&c.ra, &c.a_media), (&c.rb, &c.b_media), (0, 0));
    let bye = c.a.request_in(&mut c.a_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = c.b.request("BYE", WAIT).expect("1002 gets BYE");
    let tag = c.b_in.tag.clone();
    c.b.reply(&bye, &tag, 200).unwrap();
}

/// 1002 blind-transfers the call to 1003 (`t`) and hangs up at once, as
/// most phones do; then 1003 answers busy.
fn transfer_then_hang_up_then_busy(c: &mut Call, t: &mut Phone) {
    assert_eq!(refer(c, "1003"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    let bye = c.b.request_in(&mut c.b_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let t_in = t.incoming(WAIT).expect("the target rings");
    t.reply(&t_in.invite, &t_in.tag, 486).unwrap();
}

#[test]
fn a_busy_target_after_the_transferor_hung_up_rings_the_transferor_back() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    transfer_then_hang_up_then_busy(&mut c, &mut t);
    // 1002 is rung again, with the call.
    let again = c.b.incoming(WAIT).expect("the transferor is rung back");
    let from = again
        .invite
        .headers
        .get(&HeaderName::parse("From"))
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains("sip:1001@"), "{from}");
    let rb2 = RtpPeer::localhost();
    let b2_media = media_of(&again.invite.body);
    c.b.reply_sdp(&again.invite, &again.tag, 200, &rb2.sdp_answer(&["PCMU"]))
        .unwrap();
    c.b.request("ACK", WAIT).expect("ACK");
    hear_each_other((&c.ra, &c.a_media), (&rb2, &b2_media), (0, 0));
}

/// The shipped office with an `on_transfer_failed` hook that sends the
/// transferred party to 1004 (and says what `call.transfer` told it).
const HOOK: &str = r#"
function on_transfer_failed(call)
  local t = call.transfer
  log.info("transfer by " .. t.by .. " to " .. t.target .. " failed: " .. t.status)
  call:dial("1004", { timeout = 20 })
end
"#;

#[test]
fn a_busy_target_after_the_transferor_hung_up_goes_to_the_contexts_on_transfer_failed() {
    let default =
        std::fs::read_to_string(office::repo().join("dialplans/default.lua")).expect("default.lua");
    let fourth = "\n[[extension]]\nid = \"1004\"\npassword = \"pw-1004\"\n";
    let o = office_with(
        Some(&format!("{default}\n{HOOK}")),
        &format!("{THIRD}{fourth}"),
    );
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    let mut d = phone(&o, "1004");
    transfer_then_hang_up_then_busy(&mut c, &mut t);
    // The hook, not the ring-back: 1004 rings, with the call from 1001.
    let d_in = d.incoming(WAIT).expect("on_transfer_failed dials 1004");
    let from = d_in
        .invite
        .headers
        .get(&HeaderName::parse("From"))
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains("sip:1001@"), "{from}");
    let rd = RtpPeer::localhost();
    let d_media = media_of(&d_in.invite.body);
    d.reply_sdp(&d_in.invite, &d_in.tag, 200, &rd.sdp_answer(&["PCMU"]))
        .unwrap();
    d.request("ACK", WAIT).expect("ACK");
    exchange(
        &c.ra,
        (c.a_media.addr, 0, 1000.0),
        &rd,
        (d_media.addr, 0, 2000.0),
    );
    assert_heard(
        "1004, from on_transfer_failed",
        &rd,
        d_media.addr,
        40,
        1000.0,
    );
    assert_heard("the caller", &c.ra, c.a_media.addr, 40, 2000.0);
    // The hook saw who transferred, to where, and how it failed.
    assert!(
        o.server
            .wait_log("transfer by 1002 to 1003 failed: busy", WAIT),
        "{}",
        o.server.log()
    );
    // The transferor was not rung back.
    match c.b.silence(std::time::Duration::from_millis(300)) {
        Some(sip_proto::Message::Request(r)) if r.method.as_str() == "INVITE" => {
            panic!("the transferor was rung back: {r:?}")
        }
        _ => {}
    }
    let bye = c.a.request_in(&mut c.a_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
}

#[test]
fn the_caller_transfers_too_and_the_callee_meets_the_target() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    // No Refer-To: 400, and nothing changes.
    let r =
        c.a.request_in(&mut c.a_dialog, "REFER", None)
            .expect("answered");
    assert_eq!(r.status, 400);
    // 1001, the caller, transfers 1002 to 1003, without the implicit
    // subscription (RFC 4488).
    let refer_to = format!("<sip:1003@{}>", office::DOMAIN);
    let r =
        c.a.request_in_headers(
            &mut c.a_dialog,
            "REFER",
            &[("Refer-To", &refer_to), ("Refer-Sub", "false")],
            None,
        )
        .expect("answered");
    assert_eq!(r.status, 202);
    // 1003 rings, shown 1002 (the party transferred), and answers.
    let t_in = t.incoming(WAIT).expect("the target rings");
    let from = t_in
        .invite
        .headers
        .get(&HeaderName::From)
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains("sip:1002@"), "{from}");
    let t_media = media_of(&t_in.invite.body);
    let rt = RtpPeer::localhost();
    t.reply_sdp(&t_in.invite, &t_in.tag, 200, &rt.sdp_answer(&["PCMU"]))
        .unwrap();
    t.request("ACK", WAIT).expect("the PBX ACKs 1003");
    // The transferor gets no NOTIFY, only the BYE.
    let bye =
        c.a.request("BYE", WAIT)
            .expect("the transferor is released");
    assert_eq!(bye.call_id(), Some(c.a_dialog.call_id.as_str()));
    c.a.reply(&bye, tag_of(&c.a_dialog.local), 200).unwrap();
    // 1002 and 1003 hear each other.
    hear_each_other((&c.rb, &c.b_media), (&rt, &t_media), (0, 0));
    // 1002 hangs up (its dialog, once the callee's, now the call's first).
    let bye = c.b.request_in(&mut c.b_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = t.request("BYE", WAIT).expect("the target gets BYE");
    t.reply(&bye, &t_in.tag, 200).unwrap();
}

/// The tag of a From/To value.
fn tag_of(party: &str) -> &str {
    party.split(";tag=").nth(1).unwrap_or_default()
}

/// Answers the next UPDATE `p` gets (200) and returns its
/// P-Asserted-Identity.
fn identity_update(p: &mut Phone, tag: &str) -> String {
    let update = p
        .request("UPDATE", WAIT)
        .expect("an UPDATE with the new identity");
    p.reply(&update, tag, 200).unwrap();
    update
        .headers
        .get(&HeaderName::parse("P-Asserted-Identity"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_attended_transfer_joins_the_held_caller_and_the_consulted_party() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    // 1002 holds 1001 (the classic one-way-audio case once joined)...
    let hold = c.rb.sdp_offer(OFFER).replace("a=sendrecv", "a=sendonly");
    let ok =
        c.b.request_in(&mut c.b_dialog, "INVITE", Some(&hold))
            .expect("hold answered");
    assert_eq!(ok.status, 200);
    c.b.ack_in(&c.b_dialog).unwrap();
    // ... calls 1003, which answers, and joins them (REFER with Replaces).
    let (mut t, t_in, rt, t_media) = attended_to_1003(&o, &mut c);
    // Each remaining phone is told who it talks to now.
    let a_tag = tag_of(&c.a_dialog.local).to_owned();
    assert!(identity_update(&mut c.a, &a_tag).contains("sip:1003@"));
    assert!(identity_update(&mut t, &t_in.tag).contains("sip:1001@"));
    // 1001 and 1003 hear each other.
    talk_then_hang_up(
        (&mut c.a, &mut c.a_dialog, &c.ra, &c.a_media),
        (&mut t, &t_in, &rt, &t_media),
        (0, 0),
    );
}

/// 1002 consults 1003 and joins 1001 to it (REFER with Replaces); returns
/// 1003's phone, its incoming call and RTP peer, and the PBX's media
/// towards it.
fn attended_to_1003(o: &office::Office, c: &mut Call) -> (Phone, InCall, RtpPeer, RemoteMedia) {
    let b_tag = c.b_in.tag.clone();
    let mut t = phone(o, "1003");
    let rb2 = RtpPeer::localhost();
    let out =
        c.b.call_sdp("1003", &[], &rb2.sdp_offer(OFFER))
            .expect("INVITE");
    let t_in = t.incoming(WAIT).expect("1003 rings");
    let t_media = media_of(&t_in.invite.body);
    let rt = RtpPeer::localhost();
    t.reply_sdp(&t_in.invite, &t_in.tag, 200, &rt.sdp_answer(&["PCMU"]))
        .unwrap();
    let (ok, _) = c.b.final_response(WAIT).expect("1003 answered");
    assert_eq!(ok.status, 200);
    let consult = c.b.ack(&out, &ok).expect("ACK");
    t.request("ACK", WAIT).expect("the PBX ACKs 1003");
    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        consult.call_id.replace('@', "%40"),
        tag_of(&consult.remote),
        tag_of(&consult.local)
    );
    let refer_to = format!("<sip:1003@{}?Replaces={replaces}>", office::DOMAIN);
    let r =
        c.b.request_in_headers(&mut c.b_dialog, "REFER", &[("Refer-To", &refer_to)], None)
            .expect("REFER answered");
    assert_eq!(r.status, 202);
    // The transferor is released: NOTIFY 200 in the first call, a BYE in
    // each.
    let mut byes = Vec::new();
    let mut notified = false;
    while byes.len() < 2 || !notified {
        let request = c.b.request_any(WAIT).expect("the transferor is released");
        match request.method.as_str() {
            "NOTIFY" => {
                assert!(String::from_utf8_lossy(&request.body).starts_with("SIP/2.0 200"));
                notified = true;
            }
            "BYE" => byes.push(request.call_id().unwrap_or_default().to_owned()),
            other => panic!("the transferor got {other}"),
        }
        c.b.reply(&request, &b_tag, 200).unwrap();
    }
    byes.sort();
    let mut both = vec![c.b_dialog.call_id.clone(), consult.call_id.clone()];
    both.sort();
    assert_eq!(byes, both, "both of the transferor's dialogs end");
    (t, t_in, rt, t_media)
}

#[test]
fn a_phone_told_its_new_party_in_a_re_invite_may_settle_on_another_codec() {
    let o = office_with(None, THIRD);
    // 1001 takes no UPDATE: it is told who it talks to in a re-INVITE
    // offering our codecs again, and answers with PCMA (PCMU so far).
    let mut c = call_1002_with(&o, &[("Allow", NO_UPDATE)]);
    let (mut t, t_in, rt, t_media) = attended_to_1003(&o, &mut c);
    let reinvite =
        c.a.request("INVITE", WAIT)
            .expect("a re-INVITE with the new identity");
    let identity = reinvite
        .headers
        .get(&HeaderName::parse("P-Asserted-Identity"))
        .unwrap_or_default()
        .to_owned();
    assert!(identity.contains("sip:1003@"), "{identity}");
    let a_tag = tag_of(&c.a_dialog.local).to_owned();
    c.a.reply_sdp(&reinvite, &a_tag, 200, &c.ra.sdp_answer(&["PCMA"]))
        .unwrap();
    c.a.request("ACK", WAIT)
        .expect("the PBX ACKs the re-INVITE's 200");
    assert!(identity_update(&mut t, &t_in.tag).contains("sip:1001@"));
    // 1001 now sends and gets PCMA; 1003 keeps PCMU. Both hear each other.
    let types = talk_then_hang_up(
        (&mut c.a, &mut c.a_dialog, &c.ra, &c.a_media),
        (&mut t, &t_in, &rt, &t_media),
        (8, 0),
    );
    // The answer takes effect as the PBX reads it: a packet or two may
    // have left in PCMU as the tones started.
    let pcma = types.iter().filter(|pt| **pt == 8).count();
    assert!(
        pcma >= 40 && types.last() == Some(&8),
        "1001 answered PCMA and gets PCMA, got payload types {types:?}"
    );
}

#[test]
fn a_call_that_came_in_with_early_media_is_transferred_to_a_target_with_early_media() {
    let o = office_with(None, THIRD);
    // 1002 sent early media before answering (1001 heard it).
    let mut c = call_1002_as(&o, &[], true);
    let mut t = phone(&o, "1003");
    assert_eq!(refer(&mut c, "1003"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    // 1003 sends early media too: 1001, answered long ago, hears it
    // instead of our ringback.
    let t_in = t.incoming(WAIT).expect("the target rings");
    let t_media = media_of(&t_in.invite.body);
    let rt = RtpPeer::localhost();
    t.reply_sdp(&t_in.invite, &t_in.tag, 183, &rt.sdp_answer(&["PCMU"]))
        .unwrap();
    c.ra.clear();
    rt.send_tone(t_media.addr, 0, 700.0, office::TONE)
        .expect("send tone");
    c.ra.settle(std::time::Duration::from_millis(200), WAIT);
    assert_heard("1001, transferred", &c.ra, c.a_media.addr, 40, 700.0);
    // 1003 answers: the transferor is released, 1001 and 1003 talk.
    target_answers(&mut c, (&mut t, &t_in, &rt, &t_media));
    assert!(cdr_says(&o, "transferred by 1002 to 1003"));
}

/// `ra` and `rt` (each at the PBX's media it was given) send their tones,
/// 1000 Hz and 2000 Hz in the payload types `pts`, and each hears the
/// other's; the payload types `ra` got.
fn hear_each_other(
    (ra, a_media): (&RtpPeer, &RemoteMedia),
    (rt, t_media): (&RtpPeer, &RemoteMedia),
    (a_pt, t_pt): (u8, u8),
) -> Vec<u8> {
    ra.clear();
    rt.clear();
    exchange(
        ra,
        (a_media.addr, a_pt, 1000.0),
        rt,
        (t_media.addr, t_pt, 2000.0),
    );
    assert_heard("the other party", rt, t_media.addr, 40, 1000.0);
    assert_heard("the call's first phone", ra, a_media.addr, 40, 2000.0)
}

/// The call's first phone (`a`, on `dialog`) and `t` (its call `t_in`)
/// hear each other's tone (1000 Hz from `a`, 2000 Hz from `t`, each in
/// `codecs`' payload type), then `a` hangs up and `t` gets the BYE.
/// Returns the payload types `a` got.
fn talk_then_hang_up(
    a: (&mut Phone, &mut Dialog, &RtpPeer, &RemoteMedia),
    t: (&mut Phone, &InCall, &RtpPeer, &RemoteMedia),
    (a_pt, t_pt): (u8, u8),
) -> Vec<u8> {
    let (a, dialog, ra, a_media) = a;
    let (t, t_in, rt, t_media) = t;
    let types = hear_each_other((ra, a_media), (rt, t_media), (a_pt, t_pt));
    let bye = a.request_in(dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = t.request("BYE", WAIT).expect("the other phone gets BYE");
    t.reply(&bye, &t_in.tag, 200).unwrap();
    types
}

#[test]
fn a_re_invite_crossing_our_identity_re_invite_gets_491_and_ours_goes_again() {
    let o = office_with(None, THIRD);
    let mut c = call_1002_with(&o, &[("Allow", NO_UPDATE)]);
    let (mut t, t_in, rt, t_media) = attended_to_1003(&o, &mut c);
    let ours =
        c.a.request("INVITE", WAIT)
            .expect("our re-INVITE with the new identity");
    // 1001 re-INVITEs at the same moment: glare (RFC 3261 §14.2) ...
    let offer = c.ra.sdp_offer(OFFER);
    let crossed =
        c.a.request_in(&mut c.a_dialog, "INVITE", Some(&offer))
            .expect("1001's re-INVITE answered");
    assert_eq!(crossed.status, 491);
    // ... and refuses ours the same way.
    let a_tag = tag_of(&c.a_dialog.local).to_owned();
    c.a.reply(&ours, &a_tag, 491).unwrap();
    // Ours goes again after the wait of §14.1 (up to 2 s: 1001 chose the
    // Call-ID), in a new transaction, still naming 1003.
    let again = c.a.request("INVITE", WAIT).expect("our re-INVITE again");
    let seq = |r: &sip_proto::Request| r.cseq().map(|c| c.seq);
    assert!(
        seq(&again) > seq(&ours),
        "{:?} after {:?}",
        seq(&again),
        seq(&ours)
    );
    let identity = again
        .headers
        .get(&HeaderName::parse("P-Asserted-Identity"))
        .unwrap_or_default()
        .to_owned();
    assert!(identity.contains("sip:1003@"), "{identity}");
    c.a.reply_sdp(&again, &a_tag, 200, &c.ra.sdp_answer(&["PCMU"]))
        .unwrap();
    c.a.request("ACK", WAIT)
        .expect("the PBX ACKs the re-INVITE's 200");
    assert!(identity_update(&mut t, &t_in.tag).contains("sip:1001@"));
    talk_then_hang_up(
        (&mut c.a, &mut c.a_dialog, &c.ra, &c.a_media),
        (&mut t, &t_in, &rt, &t_media),
        (0, 0),
    );
}

#[test]
fn the_transferor_is_served_while_the_target_rings() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let mut t = phone(&o, "1003");
    assert_eq!(refer(&mut c, "1003"), 202);
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    let t_in = t.incoming(WAIT).expect("the target rings");
    // While 1003 rings, 1002 re-INVITEs (a resume, a session refresh): its
    // dialog is still served, by its own media (was 481, which ends a
    // dialog for many phones).
    let ok =
        c.b.request_in(&mut c.b_dialog, "INVITE", Some(&c.rb.sdp_offer(OFFER)))
            .expect("re-INVITE answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(!ok.body.is_empty(), "an SDP answer");
    c.b.ack_in(&c.b_dialog).unwrap();
    // 1003 answers: 1002 hears 200 in its NOTIFY and is released.
    let t_media = media_of(&t_in.invite.body);
    let rt = RtpPeer::localhost();
    target_answers(&mut c, (&mut t, &t_in, &rt, &t_media));
}

/// A blind transfer's target (1003) answers: 1002, the transferor, hears
/// 200 in its NOTIFY and is released; 1001 and 1003 hear each other, then
/// 1001 hangs up.
fn target_answers(c: &mut Call, t: (&mut Phone, &InCall, &RtpPeer, &RemoteMedia)) {
    let (t, t_in, rt, t_media) = t;
    t.reply_sdp(&t_in.invite, &t_in.tag, 200, &rt.sdp_answer(&["PCMU"]))
        .unwrap();
    t.request("ACK", WAIT).expect("the PBX ACKs 1003");
    let tag = c.b_in.tag.clone();
    let (frag, _) = next_notify(&mut c.b, &tag);
    assert_eq!(frag, "SIP/2.0 200 OK");
    let bye =
        c.b.request("BYE", WAIT)
            .expect("the transferor is released");
    c.b.reply(&bye, &tag, 200).unwrap();
    talk_then_hang_up(
        (&mut c.a, &mut c.a_dialog, &c.ra, &c.a_media),
        (t, t_in, rt, t_media),
        (0, 0),
    );
}

#[test]
fn after_an_attended_transfer_the_party_that_joined_can_hang_up_too() {
    // 1003 was the party of 1002's second call: it now talks to 1001 in
    // the first call's bridge, and its BYE must reach that call (its
    // dialog outlives the call it came from).
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let (mut t, t_in, rt, t_media) = attended_to_1003(&o, &mut c);
    let a_tag = tag_of(&c.a_dialog.local).to_owned();
    identity_update(&mut c.a, &a_tag);
    identity_update(&mut t, &t_in.tag);
    hear_each_other((&c.ra, &c.a_media), (&rt, &t_media), (0, 0));
    let mut t_dialog = t.dialog_of(&t_in);
    let bye = t.request_in(&mut t_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200, "{bye:?}");
    let bye = c.a.request("BYE", WAIT).expect("1001 gets BYE");
    c.a.reply(&bye, &a_tag, 200).unwrap();
}

#[test]
fn a_refer_that_would_replace_the_calls_own_dialog_is_refused_and_the_call_goes_on() {
    let o = office_with(None, THIRD);
    let mut c = call_1002(&o);
    let own = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        c.b_dialog.call_id.replace('@', "%40"),
        tag_of(&c.b_dialog.remote),
        tag_of(&c.b_dialog.local)
    );
    let refer_to = format!("<sip:1001@{}?Replaces={own}>", office::DOMAIN);
    let r =
        c.b.request_in_headers(&mut c.b_dialog, "REFER", &[("Refer-To", &refer_to)], None)
            .expect("REFER answered");
    assert_eq!(r.status, 481, "{r:?}");
    // The call is whole: the phones hear each other, and a BYE ends it.
    talk_and_end(&mut c);
}
