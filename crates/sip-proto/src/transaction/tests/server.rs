//! Server transaction tests (RFC 3261 §17.2.1, §17.2.2; RFC 6026 §7.1).

use super::*;

const TRYING: &str = "SIP/2.0 100 Trying\r\n\r\n";
const RINGING: &str = "SIP/2.0 180 Ringing\r\n\r\n";
const OK: &str = "SIP/2.0 200 OK\r\n\r\n";
const BUSY: &str = "SIP/2.0 486 Busy Here\r\n\r\n";

fn invite(reliability: Reliability, clock: &Clock) -> ServerInvite {
    let tx = ServerInvite::new(reliability, Timers::default(), clock.at(0));
    assert_eq!(tx.state(), ServerInviteState::Proceeding);
    tx
}

/// A server INVITE transaction that sent 486 at `ms`.
fn rejected(reliability: Reliability, clock: &Clock, ms: u64) -> ServerInvite {
    let mut tx = invite(reliability, clock);
    assert_eq!(
        tx.send_response(486, msg(BUSY), clock.at(ms)),
        [Action::Transmit(msg(BUSY))]
    );
    assert_eq!(tx.state(), ServerInviteState::Completed);
    tx
}

fn assert_dead_invite(tx: &mut ServerInvite, clock: &Clock, ms: u64) {
    let t = clock.at(ms);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.handle_request(t), []);
    assert_eq!(tx.handle_ack(t), []);
    assert_eq!(tx.send_response(200, msg(OK), t), []);
    assert_eq!(tx.send_response(486, msg(BUSY), t), []);
    assert_eq!(tx.handle_transport_error(t), []);
    assert_eq!(tx.handle_timeout(clock.at(ms + 100_000)), []);
}

fn assert_dead_non_invite(tx: &mut ServerNonInvite, clock: &Clock, ms: u64) {
    let t = clock.at(ms);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.handle_request(t), []);
    assert_eq!(tx.send_response(200, msg(OK), t), []);
    assert_eq!(tx.handle_transport_error(t), []);
    assert_eq!(tx.handle_timeout(clock.at(ms + 100_000)), []);
}

// ---- INVITE server (§17.2.1) ----

#[test]
fn invite_asks_for_100_trying_after_200_ms() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(tx.poll_timeout(), Some(clock.at(200)));
    assert_eq!(tx.handle_timeout(clock.at(199)), []);
    assert_eq!(tx.handle_timeout(clock.at(200)), [Action::SendTrying]);
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(
        tx.send_response(100, msg(TRYING), clock.at(201)),
        [Action::Transmit(msg(TRYING))]
    );
    // A retransmitted INVITE gets the 100 again.
    assert_eq!(
        tx.handle_request(clock.at(500)),
        [Action::Transmit(msg(TRYING))]
    );
}

#[test]
fn invite_tu_response_within_200_ms_cancels_100_trying() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.send_response(180, msg(RINGING), clock.at(50)),
        [Action::Transmit(msg(RINGING))]
    );
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.handle_timeout(clock.at(300)), []);

    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.send_response(404, msg(BUSY), clock.at(50));
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert!(!fired.iter().any(|(_, a)| a.contains(&Action::SendTrying)));
}

#[test]
fn invite_retransmission_before_200_ms_asks_for_100_trying_at_once() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(tx.handle_request(clock.at(100)), [Action::SendTrying]);
    assert_eq!(tx.poll_timeout(), None);
    // Asked once only: until the endpoint hands the 100 over, nothing to resend.
    assert_eq!(tx.handle_request(clock.at(150)), []);
}

#[test]
fn invite_100_trying_is_overdue_only_once_asked_for_and_unanswered() {
    let clock = Clock::new();
    // Before the deadline: the machine will ask itself.
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert!(!tx.trying_overdue());
    assert_eq!(tx.handle_timeout(clock.at(200)), [Action::SendTrying]);
    // Asked with nothing to send: a 100 handed over now goes at once.
    assert!(tx.trying_overdue());
    tx.send_response(100, msg(TRYING), clock.at(250));
    assert!(!tx.trying_overdue());

    // A retransmission asked early.
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(tx.handle_request(clock.at(100)), [Action::SendTrying]);
    assert!(tx.trying_overdue());

    // Any response sent first: no 100 is due, ever.
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.send_response(180, msg(RINGING), clock.at(50));
    assert_eq!(tx.handle_timeout(clock.at(300)), []);
    assert!(!tx.trying_overdue());
    let tx = rejected(Reliability::Unreliable, &clock, 300);
    assert!(!tx.trying_overdue());
}

#[test]
fn invite_retransmission_resends_latest_provisional() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.send_response(100, msg(TRYING), clock.at(0));
    tx.send_response(180, msg(RINGING), clock.at(1_000));
    assert_eq!(
        tx.handle_request(clock.at(1_500)),
        [Action::Transmit(msg(RINGING))]
    );
    assert_eq!(tx.state(), ServerInviteState::Proceeding);
}

#[test]
fn invite_timer_g_caps_at_t2_until_timer_h_at_64_t1() {
    let clock = Clock::new();
    let mut tx = rejected(Reliability::Unreliable, &clock, 1_000);
    assert_eq!(tx.poll_timeout(), Some(clock.at(1_500)));
    let fired = run_timers(&mut tx, &clock, 100_000);
    let expected = schedule(1_000, 500, Some(4_000), 33_000);
    assert_eq!(
        expected,
        [
            1_500, 2_500, 4_500, 8_500, 12_500, 16_500, 20_500, 24_500, 28_500, 32_500
        ]
    );
    assert_eq!(transmit_times(&fired), expected);
    for (_, actions) in &fired[..fired.len() - 1] {
        assert_eq!(actions, &[Action::Transmit(msg(BUSY))]);
    }
    assert_eq!(
        fired.last(),
        Some(&(33_000, vec![Action::Timeout(Timer::H), Action::Terminated]))
    );
    assert_dead_invite(&mut tx, &clock, 33_000);
}

#[test]
fn invite_reliable_has_no_timer_g_only_h() {
    let clock = Clock::new();
    let mut tx = rejected(Reliability::Reliable, &clock, 0);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(
        fired,
        [(32_000, vec![Action::Timeout(Timer::H), Action::Terminated])]
    );
}

#[test]
fn invite_retransmission_in_completed_resends_final() {
    let clock = Clock::new();
    let mut tx = rejected(Reliability::Unreliable, &clock, 0);
    assert_eq!(
        tx.handle_request(clock.at(100)),
        [Action::Transmit(msg(BUSY))]
    );
    // Later final responses from the TU are discarded.
    assert_eq!(tx.send_response(200, msg(OK), clock.at(200)), []);
    assert_eq!(tx.send_response(500, msg(OK), clock.at(200)), []);
    assert_eq!(tx.send_response(180, msg(RINGING), clock.at(200)), []);
    assert_eq!(tx.state(), ServerInviteState::Completed);
}

#[test]
fn invite_ack_is_absorbed_and_timer_i_is_t4() {
    let clock = Clock::new();
    let mut tx = rejected(Reliability::Unreliable, &clock, 0);
    tx.handle_timeout(clock.at(500));
    assert_eq!(tx.handle_ack(clock.at(800)), []);
    assert_eq!(tx.state(), ServerInviteState::Confirmed);
    assert_eq!(tx.poll_timeout(), Some(clock.at(5_800)));
    // More ACKs and INVITEs are absorbed; G and H no longer fire.
    assert_eq!(tx.handle_ack(clock.at(900)), []);
    assert_eq!(tx.handle_request(clock.at(1_000)), []);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(fired, [(5_800, vec![Action::Terminated])]);
    assert_dead_invite(&mut tx, &clock, 5_800);
}

#[test]
fn invite_ack_on_reliable_transport_terminates_at_once() {
    let clock = Clock::new();
    let mut tx = rejected(Reliability::Reliable, &clock, 0);
    assert_eq!(tx.handle_ack(clock.at(100)), [Action::Terminated]);
    assert_dead_invite(&mut tx, &clock, 100);
}

#[test]
fn invite_ack_before_final_response_is_ignored() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(tx.handle_ack(clock.at(10)), []);
    assert_eq!(tx.state(), ServerInviteState::Proceeding);
}

#[test]
fn invite_2xx_enters_accepted_until_timer_l() {
    let clock = Clock::new();
    for reliability in [Reliability::Unreliable, Reliability::Reliable] {
        let mut tx = invite(reliability, &clock);
        tx.send_response(180, msg(RINGING), clock.at(100));
        assert_eq!(
            tx.send_response(200, msg(OK), clock.at(2_000)),
            [Action::Transmit(msg(OK))]
        );
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert_eq!(tx.poll_timeout(), Some(clock.at(34_000)));
        // INVITE retransmissions are absorbed, not passed to the TU.
        assert_eq!(tx.handle_request(clock.at(2_500)), []);
        // The TU's own 2xx retransmissions are sent; other responses are not.
        assert_eq!(
            tx.send_response(200, msg(OK), clock.at(2_500)),
            [Action::Transmit(msg(OK))]
        );
        assert_eq!(tx.send_response(486, msg(BUSY), clock.at(2_600)), []);
        assert_eq!(tx.send_response(180, msg(RINGING), clock.at(2_600)), []);
        // An ACK that matched goes to the TU.
        assert_eq!(tx.handle_ack(clock.at(3_000)), [Action::PassAckToTu]);
        let fired = run_timers(&mut tx, &clock, 100_000);
        assert_eq!(fired, [(34_000, vec![Action::Terminated])]);
        assert_dead_invite(&mut tx, &clock, 34_000);
    }
}

#[test]
fn invite_transport_error_terminates_proceeding_and_completed() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.send_response(180, msg(RINGING), clock.at(0));
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_invite(&mut tx, &clock, 10);

    let mut tx = rejected(Reliability::Unreliable, &clock, 0);
    assert_eq!(
        tx.handle_transport_error(clock.at(600)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_invite(&mut tx, &clock, 600);
}

#[test]
fn invite_transport_error_in_accepted_informs_tu_and_stays() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.send_response(200, msg(OK), clock.at(0));
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError]
    );
    assert_eq!(tx.state(), ServerInviteState::Accepted);
    assert_eq!(tx.poll_timeout(), Some(clock.at(32_000)));
}

#[test]
fn invite_ignores_codes_outside_100_699() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    for status in [0, 99, 700, u16::MAX] {
        assert_eq!(tx.send_response(status, msg(OK), clock.at(10)), []);
    }
    assert_eq!(tx.state(), ServerInviteState::Proceeding);
    assert_eq!(tx.poll_timeout(), Some(clock.at(200)));
}

// ---- non-INVITE server (§17.2.2) ----

#[test]
fn non_invite_retransmissions_get_the_last_response_then_timer_j() {
    let clock = Clock::new();
    let mut tx = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
    assert_eq!(tx.state(), ServerNonInviteState::Trying);
    assert_eq!(tx.poll_timeout(), None);
    // Trying: absorbed.
    assert_eq!(tx.handle_request(clock.at(500)), []);
    assert_eq!(
        tx.send_response(100, msg(TRYING), clock.at(600)),
        [Action::Transmit(msg(TRYING))]
    );
    assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
    assert_eq!(
        tx.handle_request(clock.at(1_500)),
        [Action::Transmit(msg(TRYING))]
    );
    assert_eq!(
        tx.send_response(200, msg(OK), clock.at(2_000)),
        [Action::Transmit(msg(OK))]
    );
    assert_eq!(tx.state(), ServerNonInviteState::Completed);
    assert_eq!(tx.poll_timeout(), Some(clock.at(34_000)));
    assert_eq!(
        tx.handle_request(clock.at(3_500)),
        [Action::Transmit(msg(OK))]
    );
    // Further responses from the TU are discarded.
    assert_eq!(tx.send_response(404, msg(BUSY), clock.at(4_000)), []);
    assert_eq!(tx.send_response(180, msg(RINGING), clock.at(4_000)), []);
    assert_eq!(
        tx.handle_request(clock.at(4_500)),
        [Action::Transmit(msg(OK))]
    );
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(fired, [(34_000, vec![Action::Terminated])]);
    assert_dead_non_invite(&mut tx, &clock, 34_000);
}

#[test]
fn non_invite_final_from_trying_and_reliable_timer_j_is_zero() {
    let clock = Clock::new();
    let mut tx = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
    assert_eq!(
        tx.send_response(404, msg(BUSY), clock.at(10)),
        [Action::Transmit(msg(BUSY))]
    );
    assert_eq!(tx.poll_timeout(), Some(clock.at(32_010)));

    let mut tx = ServerNonInvite::new(Reliability::Reliable, Timers::default());
    assert_eq!(
        tx.send_response(200, msg(OK), clock.at(10)),
        [Action::Transmit(msg(OK)), Action::Terminated]
    );
    assert_dead_non_invite(&mut tx, &clock, 10);
}

#[test]
fn non_invite_transport_error_terminates() {
    let clock = Clock::new();
    let mut tx = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
    tx.send_response(200, msg(OK), clock.at(0));
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_non_invite(&mut tx, &clock, 10);

    let mut tx = ServerNonInvite::new(Reliability::Reliable, Timers::default());
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError, Action::Terminated]
    );
}

#[test]
fn non_invite_ignores_codes_outside_100_699() {
    let clock = Clock::new();
    let mut tx = ServerNonInvite::new(Reliability::Unreliable, Timers::default());
    assert_eq!(tx.send_response(42, msg(OK), clock.at(0)), []);
    assert_eq!(tx.send_response(700, msg(OK), clock.at(0)), []);
    assert_eq!(tx.state(), ServerNonInviteState::Trying);
}
