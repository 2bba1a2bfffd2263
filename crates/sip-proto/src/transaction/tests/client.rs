//! Client transaction tests (RFC 3261 §17.1.1, §17.1.2; RFC 6026 §7.2).

use super::*;

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\r\n";
const OPTIONS: &str = "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n\r\n";

fn invite(reliability: Reliability, clock: &Clock) -> ClientInvite {
    let (tx, actions) = ClientInvite::new(msg(INVITE), reliability, Timers::default(), clock.at(0));
    assert_eq!(actions, [Action::Transmit(msg(INVITE))]);
    assert_eq!(tx.state(), ClientInviteState::Calling);
    tx
}

fn non_invite(reliability: Reliability, clock: &Clock) -> ClientNonInvite {
    let (tx, actions) =
        ClientNonInvite::new(msg(OPTIONS), reliability, Timers::default(), clock.at(0));
    assert_eq!(actions, [Action::Transmit(msg(OPTIONS))]);
    assert_eq!(tx.state(), ClientNonInviteState::Trying);
    tx
}

fn assert_dead_invite(tx: &mut ClientInvite, clock: &Clock, ms: u64) {
    let t = clock.at(ms);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
    for status in [100, 180, 200, 486] {
        assert_eq!(tx.handle_response(status, t), []);
    }
    assert_eq!(tx.handle_transport_error(t), []);
    assert_eq!(tx.handle_timeout(clock.at(ms + 100_000)), []);
}

fn assert_dead_non_invite(tx: &mut ClientNonInvite, clock: &Clock, ms: u64) {
    let t = clock.at(ms);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
    for status in [100, 200, 404] {
        assert_eq!(tx.handle_response(status, t), []);
    }
    assert_eq!(tx.handle_transport_error(t), []);
    assert_eq!(tx.handle_timeout(clock.at(ms + 100_000)), []);
}

// ---- INVITE client (§17.1.1) ----

#[test]
fn invite_timer_a_doubles_until_timer_b_at_64_t1() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(tx.poll_timeout(), Some(clock.at(500)));
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(transmit_times(&fired), schedule(0, 500, None, 32_000));
    assert_eq!(
        transmit_times(&fired),
        [500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    for (_, actions) in &fired[..fired.len() - 1] {
        assert_eq!(actions, &[Action::Transmit(msg(INVITE))]);
    }
    assert_eq!(
        fired.last(),
        Some(&(32_000, vec![Action::Timeout(Timer::B), Action::Terminated]))
    );
    assert_dead_invite(&mut tx, &clock, 32_000);
}

#[test]
fn invite_timer_a_follows_configured_t1() {
    let clock = Clock::new();
    let timers = Timers {
        t1: Duration::from_millis(100),
        ..Timers::default()
    };
    let (mut tx, _) = ClientInvite::new(msg(INVITE), Reliability::Unreliable, timers, clock.at(0));
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(transmit_times(&fired), [100, 300, 700, 1_500, 3_100, 6_300]);
    assert_eq!(fired.last().map(|f| f.0), Some(6_400));
    assert!(tx.is_terminated());
}

#[test]
fn invite_reliable_has_no_timer_a_only_b() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Reliable, &clock);
    assert_eq!(tx.poll_timeout(), Some(clock.at(32_000)));
    assert_eq!(tx.handle_timeout(clock.at(31_999)), []);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(
        fired,
        [(32_000, vec![Action::Timeout(Timer::B), Action::Terminated])]
    );
}

#[test]
fn invite_late_timeout_call_retransmits_once_and_b_wins() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    // The endpoint wakes up late, at 4 s: one retransmission, not three.
    assert_eq!(
        tx.handle_timeout(clock.at(4_000)),
        [Action::Transmit(msg(INVITE))]
    );
    assert_eq!(tx.poll_timeout(), Some(clock.at(5_000)));
    // Woken after B: Timer B wins over the overdue Timer A.
    assert_eq!(
        tx.handle_timeout(clock.at(40_000)),
        [Action::Timeout(Timer::B), Action::Terminated]
    );
}

#[test]
fn invite_provisional_stops_timers_a_and_b() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.handle_timeout(clock.at(500)),
        [Action::Transmit(msg(INVITE))]
    );
    assert_eq!(
        tx.handle_response(100, clock.at(700)),
        [Action::PassToTu { status: 100 }]
    );
    assert_eq!(tx.state(), ClientInviteState::Proceeding);
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.handle_timeout(clock.at(60_000)), []);
    assert_eq!(
        tx.handle_response(180, clock.at(61_000)),
        [Action::PassToTu { status: 180 }]
    );
    assert_eq!(
        tx.handle_response(183, clock.at(62_000)),
        [Action::PassToTu { status: 183 }]
    );
    assert_eq!(tx.state(), ClientInviteState::Proceeding);
}

#[test]
fn invite_non_2xx_is_acked_and_timer_d_runs_32_s() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.handle_response(180, clock.at(100));
    assert_eq!(
        tx.handle_response(486, clock.at(5_000)),
        [
            Action::SendAck { status: 486 },
            Action::PassToTu { status: 486 }
        ]
    );
    assert_eq!(tx.state(), ClientInviteState::Completed);
    assert_eq!(tx.poll_timeout(), Some(clock.at(37_000)));
    // A retransmission of the final response is ACKed again, not passed up.
    assert_eq!(
        tx.handle_response(486, clock.at(5_500)),
        [Action::SendAck { status: 486 }]
    );
    // Other responses are absorbed in Completed.
    assert_eq!(tx.handle_response(180, clock.at(5_600)), []);
    assert_eq!(tx.handle_response(200, clock.at(5_700)), []);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(fired, [(37_000, vec![Action::Terminated])]);
    assert_dead_invite(&mut tx, &clock, 37_000);
}

#[test]
fn invite_non_2xx_in_calling_stops_retransmission() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.handle_response(603, clock.at(200)),
        [
            Action::SendAck { status: 603 },
            Action::PassToTu { status: 603 }
        ]
    );
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(transmit_times(&fired), Vec::<u64>::new());
    assert_eq!(fired, [(32_200, vec![Action::Terminated])]);
}

#[test]
fn invite_non_2xx_on_reliable_transport_terminates_at_once() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Reliable, &clock);
    assert_eq!(
        tx.handle_response(404, clock.at(300)),
        [
            Action::SendAck { status: 404 },
            Action::PassToTu { status: 404 },
            Action::Terminated
        ]
    );
    assert_dead_invite(&mut tx, &clock, 300);
}

#[test]
fn invite_2xx_enters_accepted_and_timer_m_runs_64_t1() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.handle_response(180, clock.at(100));
    assert_eq!(
        tx.handle_response(200, clock.at(1_000)),
        [Action::PassToTu { status: 200 }]
    );
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    assert_eq!(tx.poll_timeout(), Some(clock.at(33_000)));
    // 2xx retransmissions and other forks' 2xx go to the TU (RFC 6026).
    assert_eq!(
        tx.handle_response(200, clock.at(1_500)),
        [Action::PassToTu { status: 200 }]
    );
    assert_eq!(
        tx.handle_response(202, clock.at(1_600)),
        [Action::PassToTu { status: 202 }]
    );
    // Everything else is absorbed.
    assert_eq!(tx.handle_response(180, clock.at(1_700)), []);
    assert_eq!(tx.handle_response(486, clock.at(1_800)), []);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(fired, [(33_000, vec![Action::Terminated])]);
    assert_dead_invite(&mut tx, &clock, 33_000);
}

#[test]
fn invite_2xx_in_calling_stops_timers_a_and_b_on_reliable_too() {
    let clock = Clock::new();
    for reliability in [Reliability::Unreliable, Reliability::Reliable] {
        let mut tx = invite(reliability, &clock);
        assert_eq!(
            tx.handle_response(200, clock.at(50)),
            [Action::PassToTu { status: 200 }]
        );
        let fired = run_timers(&mut tx, &clock, 100_000);
        assert_eq!(fired, [(32_050, vec![Action::Terminated])]);
    }
}

#[test]
fn invite_transport_error_terminates_calling_and_completed() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_invite(&mut tx, &clock, 10);

    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.handle_response(180, clock.at(10));
    assert_eq!(
        tx.handle_transport_error(clock.at(20)),
        [Action::TransportError, Action::Terminated]
    );

    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.handle_response(500, clock.at(10));
    // Sending the ACK failed.
    assert_eq!(
        tx.handle_transport_error(clock.at(20)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_invite(&mut tx, &clock, 20);
}

#[test]
fn invite_transport_error_in_accepted_informs_tu_and_stays() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    tx.handle_response(200, clock.at(10));
    assert_eq!(
        tx.handle_transport_error(clock.at(20)),
        [Action::TransportError]
    );
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    assert_eq!(
        tx.handle_response(200, clock.at(30)),
        [Action::PassToTu { status: 200 }]
    );
}

#[test]
fn invite_ignores_codes_outside_100_699() {
    let clock = Clock::new();
    let mut tx = invite(Reliability::Unreliable, &clock);
    for status in [0, 99, 700, 999, u16::MAX] {
        assert_eq!(tx.handle_response(status, clock.at(10)), []);
    }
    assert_eq!(tx.state(), ClientInviteState::Calling);
    assert_eq!(tx.poll_timeout(), Some(clock.at(500)));
}

#[test]
fn invite_huge_t1_never_fires_and_never_panics() {
    let clock = Clock::new();
    let timers = Timers {
        t1: Duration::MAX,
        ..Timers::default()
    };
    let (mut tx, _) = ClientInvite::new(msg(INVITE), Reliability::Unreliable, timers, clock.at(0));
    assert_eq!(tx.poll_timeout(), None);
    assert_eq!(tx.handle_timeout(clock.at(1_000_000)), []);
    tx.handle_response(200, clock.at(1));
    assert_eq!(tx.poll_timeout(), None);
}

// ---- non-INVITE client (§17.1.2) ----

#[test]
fn non_invite_timer_e_caps_at_t2_until_timer_f() {
    let clock = Clock::new();
    let mut tx = non_invite(Reliability::Unreliable, &clock);
    let fired = run_timers(&mut tx, &clock, 100_000);
    let expected = schedule(0, 500, Some(4_000), 32_000);
    assert_eq!(
        expected,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(transmit_times(&fired), expected);
    for (_, actions) in &fired[..fired.len() - 1] {
        assert_eq!(actions, &[Action::Transmit(msg(OPTIONS))]);
    }
    assert_eq!(
        fired.last(),
        Some(&(32_000, vec![Action::Timeout(Timer::F), Action::Terminated]))
    );
    assert_dead_non_invite(&mut tx, &clock, 32_000);
}

#[test]
fn non_invite_timer_e_is_t2_in_proceeding_and_f_still_runs() {
    let clock = Clock::new();
    let mut tx = non_invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.handle_timeout(clock.at(500)),
        [Action::Transmit(msg(OPTIONS))]
    );
    assert_eq!(
        tx.handle_response(100, clock.at(600)),
        [Action::PassToTu { status: 100 }]
    );
    assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
    // The pending Timer E (at 1.5 s) still fires, then every T2.
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(
        transmit_times(&fired),
        [1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500]
    );
    assert_eq!(
        fired.last(),
        Some(&(32_000, vec![Action::Timeout(Timer::F), Action::Terminated]))
    );
}

#[test]
fn non_invite_provisionals_pass_to_tu() {
    let clock = Clock::new();
    let mut tx = non_invite(Reliability::Unreliable, &clock);
    for (ms, status) in [(10, 100), (20, 180), (30, 199)] {
        assert_eq!(
            tx.handle_response(status, clock.at(ms)),
            [Action::PassToTu { status }]
        );
    }
    assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
}

#[test]
fn non_invite_final_response_then_timer_k_is_t4() {
    let clock = Clock::new();
    for status in [200, 404, 699] {
        let mut tx = non_invite(Reliability::Unreliable, &clock);
        tx.handle_response(100, clock.at(100));
        assert_eq!(
            tx.handle_response(status, clock.at(2_000)),
            [Action::PassToTu { status }]
        );
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        assert_eq!(tx.poll_timeout(), Some(clock.at(7_000)));
        // Retransmissions of the final response are absorbed.
        assert_eq!(tx.handle_response(status, clock.at(2_500)), []);
        assert_eq!(tx.handle_response(100, clock.at(2_600)), []);
        let fired = run_timers(&mut tx, &clock, 100_000);
        assert_eq!(fired, [(7_000, vec![Action::Terminated])]);
        assert_dead_non_invite(&mut tx, &clock, 7_000);
    }
}

#[test]
fn non_invite_reliable_has_no_timer_e_and_zero_k() {
    let clock = Clock::new();
    let mut tx = non_invite(Reliability::Reliable, &clock);
    assert_eq!(tx.poll_timeout(), Some(clock.at(32_000)));
    assert_eq!(
        tx.handle_response(200, clock.at(40)),
        [Action::PassToTu { status: 200 }, Action::Terminated]
    );
    assert_dead_non_invite(&mut tx, &clock, 40);

    let mut tx = non_invite(Reliability::Reliable, &clock);
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(
        fired,
        [(32_000, vec![Action::Timeout(Timer::F), Action::Terminated])]
    );
}

#[test]
fn non_invite_transport_error_terminates() {
    let clock = Clock::new();
    let mut tx = non_invite(Reliability::Unreliable, &clock);
    assert_eq!(
        tx.handle_transport_error(clock.at(10)),
        [Action::TransportError, Action::Terminated]
    );
    assert_dead_non_invite(&mut tx, &clock, 10);

    let mut tx = non_invite(Reliability::Reliable, &clock);
    tx.handle_response(100, clock.at(10));
    assert_eq!(
        tx.handle_transport_error(clock.at(20)),
        [Action::TransportError, Action::Terminated]
    );
}

#[test]
fn non_invite_zero_t2_stops_retransmitting_instead_of_spinning() {
    let clock = Clock::new();
    let timers = Timers {
        t2: Duration::ZERO,
        ..Timers::default()
    };
    let (mut tx, _) =
        ClientNonInvite::new(msg(OPTIONS), Reliability::Unreliable, timers, clock.at(0));
    let fired = run_timers(&mut tx, &clock, 100_000);
    assert_eq!(transmit_times(&fired), [500]);
    assert_eq!(
        fired.last(),
        Some(&(32_000, vec![Action::Timeout(Timer::F), Action::Terminated]))
    );
}
