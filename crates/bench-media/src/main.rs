//! `bench-media`: the load generator of `bench/media.sh`. It sets up N
//! G.711 calls through a media relay — Switchboard over SIP (it is every
//! call's caller and callee), rtpengine over its ng control protocol, or
//! no relay at all (`direct`, the generator's own floor) — then sends
//! 20 ms PCMU RTP both ways on every call for a counted window and reports
//! per step: packets forwarded per second, loss per direction, the jitter
//! the relay added (one-way delay above each stream's minimum), the
//! relay's CPU (from `/proc/PID/stat`) and packets per CPU-second, and its
//! own CPU, so that a saturated generator is not mistaken for a saturated
//! relay. Steps add calls to those already up.
//!
//! Not a test: run by `bench/media.sh`, which starts the relay pinned to
//! one core and this program on another.

mod bencode;
mod cpu;
mod media;
mod moh;
mod ng;
mod sdp_text;
mod sip;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::media::{Endpoints, Outcome, Route, Window};

/// What relays the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Switchboard: calls set up over SIP through the Lua dialplan.
    Switchboard,
    /// rtpengine: calls set up with ng offer/answer.
    Rtpengine,
    /// No relay: the caller's and callee's sockets talk to each other.
    Direct,
    /// Switchboard's call queue: callers only, each waiting with music on
    /// hold (`bench/queue.sh`); the last step's size is the number of
    /// callers.
    Queue,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "RTP load through Switchboard or rtpengine: loss, jitter, CPU")]
struct Args {
    /// What relays the media.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Switchboard's SIP address, or rtpengine's ng address.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// The relay's process id, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The calling extension (Switchboard).
    #[arg(long, default_value = "1100")]
    user: String,
    /// Its password.
    #[arg(long, default_value = "pw-1100-x")]
    password: String,
    /// Switchboard's domain.
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Calls up at each step (ascending).
    #[arg(long, value_delimiter = ',', default_values_t = [250, 500, 1000, 1500, 2000, 2500, 3000])]
    steps: Vec<usize>,
    /// New calls per second while setting up.
    #[arg(long, default_value_t = 200.0)]
    setup_rate: f64,
    /// Seconds of RTP before the counted window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of the counted window.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Seconds to wait for packets in flight after the last send.
    #[arg(long, default_value_t = 0.5)]
    drain: f64,
    /// A step passes below this loss, in percent.
    #[arg(long, default_value_t = 0.1)]
    loss_limit: f64,
    /// Failed steps before the ramp stops.
    #[arg(long, default_value_t = 1)]
    stop_after: usize,
    /// Measure even when the relay hands out the generator's own sockets
    /// (SDP passed through: RTP goes direct). Only for checking call set-up.
    #[arg(long)]
    allow_unanchored: bool,
    /// Generator CPU share (of one core) above which it counts as saturated.
    #[arg(long, default_value_t = 90.0)]
    saturated_pct: f64,
}

/// How the calls are set up and torn down.
enum Relay {
    Sip(sip::Agent),
    Ng(ng::Ng),
    Direct,
}

/// Why the run stopped early.
enum Stop {
    /// The relay does not anchor media (it handed out the peer's own socket).
    NotAnchored(String),
    /// Calls could not be set up.
    Setup(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-media: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mode = format!("{:?}", args.mode).to_lowercase();
    let server = || args.server.ok_or("--server is required for this mode");
    let mut relay = match args.mode {
        Mode::Switchboard => Relay::Sip(sip::Agent::start(sip::Account {
            server: server()?,
            user: args.user.clone(),
            password: args.password.clone(),
            domain: args.domain.clone(),
            callee: true,
        })?),
        Mode::Queue => return run_queue(args),
        Mode::Rtpengine => {
            let mut ng = ng::Ng::new(server()?)?;
            ng.wait_ready(Duration::from_secs(10))?;
            Relay::Ng(ng)
        }
        Mode::Direct => Relay::Direct,
    };
    let pid = args.server_pid.map(|p| p.to_string());
    let window = Window {
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.window),
        drain: Duration::from_secs_f64(args.drain),
    };
    let mut endpoints = Endpoints::new()?;
    let mut routes: Vec<Route> = Vec::new();
    let mut own: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut failed_steps = 0;
    let mut best: Option<(usize, Outcome)> = None;
    let mut stop = None;

    println!(
        "[{mode}] {:.0} s counted per step, {:.0} s warm-up; loss limit {}%",
        args.window, args.warmup, args.loss_limit
    );
    println!(
        "{:>6} {:>7} {:>9} {:>8} {:>8} {:>22} {:>7} {:>10} {:>7} {:>7}  verdict",
        "calls",
        "setup s",
        "pkts/s",
        "loss c>e",
        "loss e>c",
        "jitter p50/p99/max ms",
        "srv cpu",
        "pkts/CPU-s",
        "gen cpu",
        "late"
    );
    for &n in &args.steps {
        if n <= routes.len() {
            continue;
        }
        let began = Instant::now();
        let first = routes.len();
        let mut new = Vec::new();
        for index in first..n {
            let (caller, callee) = endpoints.add_call()?;
            own.push((caller, callee));
            new.push(sip::NewCall {
                index,
                caller_media: caller,
                callee_media: callee,
            });
        }
        match setup(&mut relay, &new, args.setup_rate) {
            Ok(list) => {
                let relayed = args.mode != Mode::Direct && !args.allow_unanchored;
                for (call, r) in new.iter().zip(&list).filter(|_| relayed) {
                    if sip::is_own(r.caller_to, call.callee_media)
                        || sip::is_own(r.callee_to, call.caller_media)
                    {
                        stop = Some(Stop::NotAnchored(format!(
                            "call {}: the caller was told to send RTP to {} and the callee to {} \
                             (the generator's own sockets are {} and {}): SDP passed through unchanged",
                            call.index,
                            r.caller_to,
                            r.callee_to,
                            call.caller_media,
                            call.callee_media
                        )));
                        break;
                    }
                }
                routes.extend(list);
            }
            Err(why) => stop = Some(Stop::Setup(why)),
        }
        if stop.is_some() {
            break;
        }
        let setup_secs = began.elapsed().as_secs_f64();
        let o = endpoints.run(&routes, window, pid.as_deref())?;
        let pps = o.pps();
        let cpu_pct = o.server_cpu.map(|c| 100.0 * c / o.seconds);
        let ppcs = o.per_cpu_second();
        let gen_pct = 100.0 * o.own_cpu / o.seconds;
        let loss = o.loss_percent();
        let pass = loss < args.loss_limit && o.misrouted == 0;
        // Busy, or behind its schedule (it shares its core with whatever
        // else runs there).
        let saturated = gen_pct >= args.saturated_pct || o.late_percent > 1.0;
        let verdict = match (pass, saturated) {
            (true, false) => "pass".to_owned(),
            (true, true) => "pass (generator saturated or starved)".to_owned(),
            (false, false) => "FAIL".to_owned(),
            (false, true) => {
                "FAIL (generator saturated or starved: maybe not the relay's limit)".to_owned()
            }
        };
        let fmt_opt = |v: Option<f64>, prec: usize| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"))
        };
        println!(
            "{:>6} {:>7.1} {:>9.0} {:>7.3}% {:>7.3}% {:>22} {:>6}% {:>10} {:>6.0}% {:>6.1}%  {verdict}{}",
            n,
            setup_secs,
            pps,
            o.dirs[0].loss_percent(),
            o.dirs[1].loss_percent(),
            format!(
                "{:.2}/{:.2}/{:.1}",
                o.added_p50_us / 1e3,
                o.added_p99_us / 1e3,
                o.added_max_us / 1e3
            ),
            fmt_opt(cpu_pct, 0),
            fmt_opt(ppcs, 0),
            gen_pct,
            o.late_percent,
            if o.misrouted > 0 {
                format!(" ({} misrouted)", o.misrouted)
            } else {
                String::new()
            },
        );
        println!(
            "STEP mode={mode} n={n} pps={pps:.0} loss={loss:.4} loss_ce={:.4} loss_ec={:.4} p50_us={:.0} p99_us={:.0} max_us={:.0} \
             min_delay_us={:.0} cpu_pct={} ppcs={} gen_pct={gen_pct:.1} lag_ms={:.1} late_pct={:.2} misrouted={} pass={} gen_saturated={}",
            o.dirs[0].loss_percent(),
            o.dirs[1].loss_percent(),
            o.added_p50_us,
            o.added_p99_us,
            o.added_max_us,
            o.delay_min_us,
            fmt_opt(cpu_pct, 1),
            fmt_opt(ppcs, 0),
            o.max_send_lag_ms,
            o.late_percent,
            o.misrouted,
            u8::from(pass),
            u8::from(saturated),
        );
        if pass {
            best = Some((n, o));
        } else {
            failed_steps += 1;
            if failed_steps >= args.stop_after {
                break;
            }
        }
    }

    teardown(&mut relay, &own);
    match stop {
        Some(Stop::NotAnchored(why)) => {
            eprintln!("bench-media: {mode} did not anchor media: {why}");
            println!("RESULT mode={mode} error=not_anchored");
            return Ok(ExitCode::from(3));
        }
        Some(Stop::Setup(why)) => {
            eprintln!("bench-media: call set-up failed: {why}");
            println!("RESULT mode={mode} error=setup");
            return Ok(ExitCode::from(2));
        }
        None => {}
    }
    match best {
        Some((n, o)) => println!(
            "RESULT mode={mode} max_n={n} pps={:.0} p99_us={:.0} cpu_pct={} ppcs={}",
            o.pps(),
            o.added_p99_us,
            o.server_cpu
                .map_or_else(|| "n/a".into(), |c| format!("{:.1}", 100.0 * c / o.seconds)),
            o.per_cpu_second()
                .map_or_else(|| "n/a".into(), |p| format!("{p:.0}")),
        ),
        None => println!("RESULT mode={mode} max_n=0"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets `calls` up through the relay: where each call's caller and callee
/// send their RTP, or why a call failed (the first failure).
fn setup(relay: &mut Relay, calls: &[sip::NewCall], rate: f64) -> Result<Vec<Route>, String> {
    match relay {
        Relay::Direct => Ok(calls
            .iter()
            .map(|c| Route {
                caller_to: c.callee_media,
                callee_to: c.caller_media,
            })
            .collect()),
        Relay::Sip(agent) => {
            let results = agent
                .setup(calls.to_vec(), rate)
                .map_err(|e| e.to_string())?;
            let failed: Vec<_> = calls
                .iter()
                .zip(&results)
                .filter_map(|(c, r)| r.as_ref().err().map(|e| (c.index, e.clone())))
                .collect();
            if let Some((index, why)) = failed.first() {
                return Err(format!(
                    "{} of {} calls failed; call {index}: {why}",
                    failed.len(),
                    calls.len()
                ));
            }
            Ok(results
                .into_iter()
                .flatten()
                .map(|l| Route {
                    caller_to: l.caller_to,
                    callee_to: l.callee_to,
                })
                .collect())
        }
        Relay::Ng(ng) => {
            let gap = Duration::from_secs_f64(1.0 / rate.max(1.0));
            let began = Instant::now();
            let lo = std::net::IpAddr::from([127, 0, 0, 1]);
            let mut out = Vec::with_capacity(calls.len());
            for (k, c) in calls.iter().enumerate() {
                let due = began + gap * k as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let (call_id, from_tag, to_tag) = ng_ids(c.index);
                let caller_sdp = sdp_text::pcmu(c.index as u64, c.caller_media.port());
                let callee_sdp = sdp_text::pcmu(c.index as u64, c.callee_media.port());
                let (for_callee, for_caller) = ng
                    .offer_answer(&call_id, &from_tag, &to_tag, &caller_sdp, &callee_sdp)
                    .map_err(|e| format!("call {}: {e}", c.index))?;
                let callee_to = sdp_text::media_addr(&for_callee, lo).ok_or_else(|| {
                    format!(
                        "call {}: no RTP address in the offer rtpengine rewrote",
                        c.index
                    )
                })?;
                let caller_to = sdp_text::media_addr(&for_caller, lo).ok_or_else(|| {
                    format!(
                        "call {}: no RTP address in the answer rtpengine rewrote",
                        c.index
                    )
                })?;
                out.push(Route {
                    caller_to,
                    callee_to,
                });
            }
            Ok(out)
        }
    }
}

/// Call-ID, from-tag and to-tag of rtpengine call `index`.
fn ng_ids(index: usize) -> (String, String, String) {
    (
        format!("bench-{index}-{}", std::process::id()),
        format!("caller-{index}"),
        format!("callee-{index}"),
    )
}

/// Ends every call (BYE, or ng delete); failures are only reported.
fn teardown(relay: &mut Relay, own: &[(SocketAddr, SocketAddr)]) {
    match relay {
        Relay::Direct => {}
        Relay::Sip(agent) => match agent.teardown(1000.0) {
            Ok((_, 0)) => {}
            Ok((ok, bad)) => {
                eprintln!("bench-media: teardown: {ok} calls ended, {bad} BYEs not answered 2xx")
            }
            Err(e) => eprintln!("bench-media: teardown: {e}"),
        },
        Relay::Ng(ng) => {
            let mut bad = 0;
            for index in 0..own.len() {
                let (call_id, from_tag, _) = ng_ids(index);
                if ng.delete(&call_id, &from_tag).is_err() {
                    bad += 1;
                }
            }
            if bad > 0 {
                eprintln!("bench-media: teardown: {bad} ng deletes failed");
            }
        }
    }
}

/// `--mode queue`: the callers wait in Switchboard's queue with music; one
/// line `QUEUE callers=N ... kib_per_caller=K p99_ms=J` and a summary.
fn run_queue(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let agent = sip::Agent::start(sip::Account {
        server: args.server.ok_or("--server is required for this mode")?,
        user: args.user.clone(),
        password: args.password.clone(),
        domain: args.domain.clone(),
        callee: false,
    })?;
    let n = args.steps.iter().copied().max().unwrap_or(0);
    let pid = args.server_pid.map(|p| p.to_string());
    let began = Instant::now();
    let o = match moh::run(
        &agent,
        n,
        args.setup_rate,
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.window),
        pid.as_deref(),
    ) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("bench-media: queue set-up failed: {why}");
            println!("RESULT mode=queue error=setup");
            return Ok(ExitCode::from(2));
        }
    };
    let kib = o.kib_per_caller();
    println!(
        "[queue] {} callers waiting (set up and settled in {:.1} s), {} hear music; {} of {} packets in {:.0} s",
        o.callers,
        began.elapsed().as_secs_f64() - args.window,
        o.hearing,
        o.packets,
        o.expected,
        args.window
    );
    println!(
        "[queue] server RSS {} -> {} KiB: {} KiB per waiting caller; MOH jitter p50/p99/max {:.2}/{:.2}/{:.1} ms; {} timestamp steps backwards",
        o.rss_before_kib.map_or("n/a".into(), |v| v.to_string()),
        o.rss_after_kib.map_or("n/a".into(), |v| v.to_string()),
        kib.map_or("n/a".into(), |k| format!("{k:.1}")),
        o.p50_ms,
        o.p99_ms,
        o.max_ms,
        o.backward_steps
    );
    println!(
        "QUEUE callers={} hearing={} packets={} expected={} rss_before_kib={} rss_after_kib={} kib_per_caller={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        o.callers,
        o.hearing,
        o.packets,
        o.expected,
        o.rss_before_kib.map_or("n/a".into(), |v| v.to_string()),
        o.rss_after_kib.map_or("n/a".into(), |v| v.to_string()),
        kib.map_or("n/a".into(), |k| format!("{k:.1}")),
        o.p50_ms,
        o.p99_ms,
        o.max_ms
    );
    match agent.teardown(1000.0) {
        Ok((_, 0)) => {}
        Ok((ok, bad)) => {
            eprintln!("bench-media: teardown: {ok} callers hung up, {bad} BYEs not answered 2xx")
        }
        Err(e) => eprintln!("bench-media: teardown: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
