//! `switchboard run`: opens storage, builds the registrar, binds the SIP
//! endpoint and the admin API, serves until a signal, then drains.

use std::sync::Arc;
use std::time::Instant;

use registrar::Registrar;
use sip_net::Endpoint;
use storage::{LocationStore, Storage};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admin;
use crate::admin_guard::{AdminToken, Guard};
use crate::config::Config;
use crate::error::Error;
use crate::extensions::Extensions;
use crate::shutdown::Signals;
use crate::store::{self, DemoPassword};

/// Runs Switchboard with `config` until SIGTERM / Ctrl-C, then shuts down within `shutdown_grace`.
///
/// Start-up failures (storage in use or damaged, port in use, ...) return
/// an error before anything is served. Must run inside a tokio runtime with
/// IO and time enabled.
pub async fn serve(config: Config, started: Instant) -> Result<(), Error> {
    let mut signals = Signals::install().map_err(Error::Signals)?;

    // Storage first: a locked or damaged file stops start-up before any port is bound.
    let (storage, extensions, demo, admin_token) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let storage = store::open(&config.storage)?;
            let (extensions, demo) = store::extensions(&config, storage.as_ref())?;
            let token = match config.admin.listen {
                Some(_) => Some(AdminToken::load(&config.admin, &config.storage)?),
                None => None,
            };
            Ok((storage, extensions, demo, token))
        })
        .await
        .map_err(|_| Error::Stopped("opening storage"))??
    };
    let locations: Arc<dyn LocationStore> = storage.clone();
    let registrar = Registrar::new(
        config.registrar_config(),
        &extensions,
        locations,
        rand::random(),
    )
    .map_err(Error::RegistrarStart)?;

    let metrics = admin::install_metrics(started, registrar.clone())?;
    let office = Arc::new(Extensions::new(&config, storage.clone(), registrar.clone()));
    // Bad Lua stops start-up here, before any port is bound.
    // What voicemail reports to when a message is left or counts change:
    // the log, the mailer (email; kept until shutdown, dropping it stops its
    // queue) and the subscription service (MWI), which starts after the SIP
    // endpoint and so joins through `mwi` below.
    let mailer = start_mailer(&config, &office)?;
    let mwi = Arc::new(Deferred::default());
    let mut mailbox_listeners = pbx::MailboxListeners::new()
        .with(Arc::new(crate::voicemail::LogListener))
        .with(Arc::clone(&mwi) as Arc<dyn pbx::MailboxListener>);
    if let Some(mailer) = &mailer {
        mailbox_listeners =
            mailbox_listeners.with(Arc::clone(mailer) as Arc<dyn pbx::MailboxListener>);
    }
    let voicemail = Arc::new(crate::voicemail::Voicemail::new(
        config.dialplan.voicemail.clone(),
        storage.clone(),
        Arc::clone(&office),
        Arc::new(mailbox_listeners),
    ));
    let dialplan = crate::dialplan::start(
        &config,
        storage.clone(),
        Arc::clone(&office),
        Arc::clone(&voicemail),
    )
    .await?;
    let mut endpoint = Endpoint::bind(config.endpoint_config())
        .await
        .map_err(|source| Error::SipStart { source })?;
    let media = media_config(&config)?;
    let calls = chan_sip::ChanSip::new(
        chan_sip_config(&config),
        endpoint.handle(),
        registrar.clone(),
        pbx::CdrWriter::start(storage.clone()).with_observer(crate::plugin_hooks::cdr_observer(
            Arc::clone(dialplan.runtime()),
        )),
        office.channel_map(),
        Arc::new(dialplan::LuaRouter::new(
            Arc::clone(dialplan.runtime()),
            dialplan::MediaFiles {
                sounds: config.dialplan.sounds.clone(),
                recordings: config.dialplan.recordings.clone(),
                voicemail: config.dialplan.voicemail.clone(),
            },
        )),
        media,
        office.trunks().clone(),
    );
    // The plugins' hooks: `on_register` from the registrar, `pbx.state`
    // from the live calls.
    registrar.on_register(crate::plugin_hooks::register_observer(Arc::clone(
        dialplan.runtime(),
    )));
    dialplan.set_calls(calls.registry());
    if config.admin.trace_calls > 0 {
        endpoint.set_tap(calls.trace_tap());
    }
    // SUBSCRIBE/NOTIFY: lamps from the calls, MWI from voicemail's counts.
    let subscriptions = presence::Presence::new(
        presence::PresenceConfig::new(&config.sip.domain),
        endpoint.handle(),
        registrar.clone(),
        Arc::new(crate::subscriptions::Office(office.channel_map())),
        Arc::new(crate::subscriptions::LuaAuthorizer {
            runtime: Arc::clone(dialplan.runtime()),
            extensions: office.channel_map(),
        }),
        Arc::clone(&voicemail) as Arc<dyn pbx::Mailboxes>,
    );
    mwi.set(Arc::new(subscriptions.clone()));
    endpoint.set_service(Arc::new(
        sip_net::ServiceMux::new()
            .with(Arc::new(registrar.clone()))
            .with(Arc::new(calls.clone()))
            .with(Arc::new(subscriptions.clone())),
    ));
    let admin_listener = match config.admin.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::AdminBind { addr, source })?,
        ),
        None => None,
    };
    let admin_addr = match &admin_listener {
        Some(l) => Some(l.local_addr().map_err(|source| Error::AdminBind {
            addr: config.admin.listen.unwrap_or(([0, 0, 0, 0], 0).into()),
            source,
        })?),
        None => None,
    };

    // Lamps scripts set (night mode on *28), from kv: after everything
    // that can fail start-up (its error stays the only line), before SIP
    // is served.
    dialplan.start_lamps(subscriptions.clone()).await;

    let shutdown = CancellationToken::new();
    let local = endpoint.local_addrs();
    let sweeper = tokio::spawn(
        registrar
            .clone()
            .run_sweeper(shutdown.clone().cancelled_owned()),
    );
    let qualify = config.qualify_interval.map(|interval| {
        tokio::spawn(registrar.clone().run_qualify(
            endpoint.handle(),
            interval,
            shutdown.clone().cancelled_owned(),
        ))
    });
    let presence_task = tokio::spawn(
        subscriptions
            .clone()
            .run(calls.registry(), shutdown.clone().cancelled_owned()),
    );
    // Outbound registrations start with the endpoint (and again after a
    // restart: bindings at carriers are not stored).
    office.trunks().start(
        endpoint.handle(),
        config.sip.user_agent.clone(),
        shutdown.clone(),
    );
    let mut sip_task: JoinHandle<Result<(), Error>> = tokio::spawn({
        let stop = shutdown.clone().cancelled_owned();
        async move { endpoint.run(stop).await.map_err(Error::SipRun) }
    });
    let mut admin_task: JoinHandle<Result<(), Error>> = match (admin_listener, admin_addr) {
        (Some(listener), Some(addr)) => {
            let token = admin_token
                .as_ref()
                .map_or_else(String::new, |t| t.token.clone());
            let app = admin::router(
                metrics.with_voicemail(Arc::clone(&voicemail)),
                Guard::new(token, &config.admin, addr),
                Arc::clone(dialplan.runtime()),
                Arc::clone(&office),
                calls.clone(),
                storage.clone(),
                subscriptions.clone(),
                admin::Listeners {
                    sip: local.iter().map(|(t, a)| format!("{t}:{a}")).collect(),
                    admin: format!("http://{addr}"),
                },
            );
            let stop = shutdown.clone().cancelled_owned();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .map_err(Error::AdminRun)
            })
        }
        _ => tokio::spawn({
            let stop = shutdown.clone();
            async move {
                stop.cancelled().await;
                Ok(())
            }
        }),
    };

    // These lines are a contract: tests and scripts read the ports from them.
    info!(
        "switchboard {} running with config {}",
        env!("CARGO_PKG_VERSION"),
        config.source
    );
    info!(
        "registrar: {} extensions, storage {}",
        extensions.len(),
        config.storage
    );
    drop(extensions);
    dialplan.log_started();
    log_demo_passwords(&demo, &config);
    for (transport, addr) in &local {
        info!("SIP listening on {transport}:{addr}");
    }
    let m = &config.media;
    info!(
        "media: RTP on {} ports {}-{}, SDP address {}, codecs {}, RTP timeout {}, RTP sources {}",
        m.bind,
        m.rtp_ports.start(),
        m.rtp_ports.end(),
        m.advertise.map_or_else(
            || "the one each phone reaches SIP on".to_owned(),
            |a| a.to_string()
        ),
        m.codecs
            .iter()
            .map(|c| c.encoding.as_ref())
            .collect::<Vec<_>>()
            .join(", "),
        m.rtp_timeout.map_or_else(
            || "off".to_owned(),
            |t| humantime::format_duration(t).to_string()
        ),
        if m.strict_source {
            "strict (signalling or SDP IP only)"
        } else {
            "learned (new sources after probation)"
        }
    );
    match &mailer {
        Some(m) => info!(
            "voicemail email through smtp relay {} from {}",
            m.relay(),
            m.relay().from
        ),
        None => info!("voicemail email off (no [smtp] section)"),
    }
    if let Some(token) = &admin_token {
        token.log();
    }
    match admin_addr {
        Some(addr) => info!("admin listening on http://{addr}"),
        None => info!("admin HTTP disabled (admin.enabled = false)"),
    }

    // Serve until a signal, or until a task ends on its own (an error).
    let mut sip_done = None;
    let mut admin_done = None;
    tokio::select! {
        signal = signals.recv() => info!("{signal} received, shutting down"),
        r = &mut sip_task => {
            error!("SIP endpoint stopped, shutting down");
            sip_done = Some(flatten(r, "SIP endpoint"));
        }
        r = &mut admin_task => {
            error!("admin HTTP server stopped, shutting down");
            admin_done = Some(flatten(r, "admin HTTP server"));
        }
    }
    let early = sip_done.is_some() || admin_done.is_some();
    let grace = config.shutdown_grace;
    let grace_ends = tokio::time::Instant::now() + grace;
    if !early && !drain_calls(&calls, grace, &mut signals).await {
        return Ok(());
    }
    if !early {
        // Carriers learn that we are gone while the endpoint still runs.
        office
            .trunks()
            .stop(std::time::Duration::from_secs(2))
            .await;
    }
    shutdown.cancel();
    let grace = grace_ends
        .saturating_duration_since(tokio::time::Instant::now())
        .max(std::time::Duration::from_secs(1));
    let drain = async {
        let sip = match sip_done.take() {
            Some(r) => r,
            None => flatten(sip_task.await, "SIP endpoint"),
        };
        let admin = match admin_done.take() {
            Some(r) => r,
            None => flatten(admin_task.await, "admin HTTP server"),
        };
        // The sweeper and qualify loop stop at the same signal; wait for a
        // sweep in progress. Pings in flight are simply abandoned.
        let _ = sweeper.await;
        let _ = presence_task.await;
        if let Some(qualify) = qualify {
            qualify.abort();
            let _ = qualify.await;
        }
        (sip, admin)
    };
    let (sip, admin) = tokio::select! {
        r = tokio::time::timeout(grace, drain) => match r {
            Ok(results) => results,
            Err(_) => {
                warn!(
                    "shutdown_grace ({}) elapsed with work still in progress; exiting anyway",
                    humantime::format_duration(grace)
                );
                return Ok(());
            }
        },
        signal = signals.recv() => {
            warn!("{signal} received again; exiting without waiting");
            return Ok(());
        }
    };
    let result = sip.and(admin);
    if let Some(mailer) = &mailer {
        // Voicemail emails on their way get what is left of the grace
        // (a message left by the last calls is mailed before we exit).
        let left = grace_ends.saturating_duration_since(tokio::time::Instant::now());
        let pending = mailer.flush(left).await;
        if pending > 0 {
            warn!(
                "{pending} voicemail email(s) not sent yet (smtp relay {}) are dropped at shutdown; the messages stay in their mailboxes",
                mailer.relay()
            );
        }
    }
    calls.flush_cdrs().await;
    drop(calls);
    release_storage(registrar, storage);
    match (&result, early) {
        (Ok(()), false) => info!("shutdown complete"),
        // A task that ends by itself without an error is still not normal.
        (Ok(()), true) => return Err(Error::Stopped("a server task")),
        (Err(_), _) => {}
    }
    result
}

/// Stops taking calls and waits for those in progress to end, up to
/// `grace`; then hangs up the rest (their BYEs go out while the endpoint
/// still runs). `false` if a second signal asked to exit at once.
async fn drain_calls(
    calls: &chan_sip::ChanSip,
    grace: std::time::Duration,
    signals: &mut Signals,
) -> bool {
    calls.drain();
    let active = calls.active_calls();
    if active == 0 {
        return true;
    }
    info!(
        "waiting up to {} for {active} call(s) in progress to end; new calls get 503",
        humantime::format_duration(grace)
    );
    let wait_for_calls = async {
        while calls.active_calls() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        r = tokio::time::timeout(grace, wait_for_calls) => {
            if r.is_err() {
                let left = calls.active_calls();
                warn!("shutdown_grace elapsed with {left} call(s) up; hanging them up");
                calls.hang_up_all();
                // Let the BYEs leave before the endpoint stops.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            true
        }
        signal = signals.recv() => {
            warn!("{signal} received again; exiting without waiting");
            false
        }
    }
}

/// The voicemail mailer for `[smtp]`, if the section is there; the
/// extensions' addresses come from `office` and change on reload.
fn start_mailer(
    config: &Config,
    office: &Extensions,
) -> Result<Option<Arc<mailer::Mailer>>, Error> {
    let Some(smtp) = &config.smtp else {
        return Ok(None);
    };
    let zone = match &config.dialplan.timezone {
        Some(name) => dialplan::timezone(name).unwrap_or_else(mailer::TimeZone::system),
        None => mailer::TimeZone::system(),
    };
    let options = mailer::Options {
        zone,
        ..mailer::Options::default()
    };
    let mailer = mailer::Mailer::start(smtp.clone(), office.email_map(), options)
        .map_err(Error::MailerStart)?;
    Ok(Some(Arc::new(mailer)))
}

/// The SIP channel's settings from the config.
fn chan_sip_config(config: &Config) -> chan_sip::ChanSipConfig {
    chan_sip::ChanSipConfig {
        domain: config.sip.domain.clone(),
        user_agent: config.sip.user_agent.clone(),
        t1: config.sip.t1,
        t2: config.sip.t2,
        trace_calls: config.admin.trace_calls,
        max_calls: config.net_security.max_calls,
        reject_anonymous: config.security.reject_anonymous,
        ..chan_sip::ChanSipConfig::default()
    }
}

/// Logs the demo extensions' passwords as one block, one line each.
fn log_demo_passwords(demo: &[DemoPassword], config: &Config) {
    if demo.is_empty() {
        return;
    }
    let kept = match &config.storage {
        crate::config::StorageConfig::Redb { path } => {
            format!("kept in {}; delete that file for new ones", path.display())
        }
        crate::config::StorageConfig::Memory => {
            "storage is in memory: new ones at every start".to_owned()
        }
        crate::config::StorageConfig::Postgres(pg) => {
            format!("kept in PostgreSQL {}", pg.target)
        }
    };
    let new = demo.iter().filter(|p| p.new).count();
    let origin = match new {
        0 => "stored at first start",
        n if n == demo.len() => "generated now",
        _ => "some generated now",
    };
    info!(
        "demo office: register a phone as EXTENSION@{} with its password ({origin}, {kept}):",
        config.sip.domain
    );
    for p in demo {
        info!("demo extension {} password: {}", p.id, p.password);
    }
}

/// Drops this function's references to the storage. Tasks that still hold
/// the registrar (transaction timers, lingering connections) drop theirs
/// when `main` shuts the runtime down, and the last one closes the file.
fn release_storage(registrar: Registrar, storage: Arc<dyn Storage>) {
    drop(registrar);
    let weak = Arc::downgrade(&storage);
    drop(storage);
    if weak.strong_count() > 0 {
        debug!("storage still held by running tasks; it closes when the runtime stops");
    }
}

/// A task's result, with a panic turned into an error (the panic message was already printed).
fn flatten(r: Result<Result<(), Error>, JoinError>, what: &'static str) -> Result<(), Error> {
    match r {
        Ok(result) => result,
        Err(_) => Err(Error::Stopped(what)),
    }
}

/// The channel's media settings; one port pair is leased and returned at
/// once, so a wrong `media.bind` fails start-up rather than every call.
/// The music-on-hold classes: every `NAME.wav` in `dir` (`sounds/moh/`),
/// loaded once. A file that does not load is left out with a warning (a
/// call whose class is missing passes the hold on to the other phone, as
/// without music); no directory, no music.
/// "Parked in slot N" for the parking slots 71-79: `park-parked-in.wav`
/// followed by the slot's digits (`digit-N.wav`), joined into one prompt
/// per slot. Empty (a transfer to the park is announced by NOTIFY alone)
/// when a sound is missing or of another rate.
fn park_announcements(
    sounds: &std::path::Path,
) -> std::collections::HashMap<u16, Arc<media::Prompt>> {
    let load = |name: &str| media::Prompt::load(&sounds.join(format!("{name}.wav"))).ok();
    let mut out = std::collections::HashMap::new();
    let Some(intro) = load("park-parked-in") else {
        return out;
    };
    for slot in 71..=79u16 {
        let mut samples = intro.samples().to_vec();
        for digit in slot.to_string().chars() {
            match load(&format!("digit-{digit}")) {
                Some(p) if p.sample_rate() == intro.sample_rate() => {
                    samples.extend_from_slice(p.samples());
                }
                _ => return std::collections::HashMap::new(),
            }
        }
        if let Ok(prompt) = media::Prompt::from_samples(intro.sample_rate(), samples) {
            out.insert(slot, Arc::new(prompt));
        }
    }
    out
}

fn music_on_hold(dir: &std::path::Path) -> std::collections::HashMap<String, Arc<media::Prompt>> {
    let mut classes = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        debug!(dir = %dir.display(), "no music-on-hold directory; holds are passed on");
        return classes;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wav"))
        else {
            continue;
        };
        match media::Prompt::load(&path) {
            Ok(prompt) => {
                classes.insert(name.to_owned(), Arc::new(prompt));
            }
            Err(e) => warn!(
                "music on hold {}: {e}; class {name:?} left out",
                path.display()
            ),
        }
    }
    if !classes.contains_key(chan_sip::DEFAULT_MOH) {
        warn!(
            dir = %dir.display(),
            "no {}.wav music-on-hold class; holds without a class are passed on to the other phone",
            chan_sip::DEFAULT_MOH
        );
    }
    classes
}

fn media_config(config: &Config) -> Result<chan_sip::MediaConfig, Error> {
    let m = &config.media;
    let pool = media::PortPool::new(m.rtp_ports.clone()).map_err(Error::MediaStart)?;
    drop(pool.allocate(m.bind).map_err(Error::MediaStart)?);
    let mut media = chan_sip::MediaConfig::new(pool, m.bind);
    media.advertise = m.advertise;
    media.codecs = m.codecs.clone();
    media.rtp_timeout = m.rtp_timeout;
    media.tone_zone = m.tone_zone;
    media.moh = music_on_hold(&config.dialplan.sounds.join("moh"));
    media.park_announcements = park_announcements(&config.dialplan.sounds);
    media.latching = if m.strict_source {
        media::Latching::Strict
    } else {
        media::Latching::Learn
    };
    Ok(media)
}

/// A mailbox listener that exists before what it forwards to: voicemail
/// starts before the SIP endpoint, the subscription service after it, and
/// MWI reports made in between (none in practice) are dropped.
#[derive(Default)]
struct Deferred(std::sync::OnceLock<Arc<dyn pbx::MailboxListener>>);

impl Deferred {
    fn set(&self, listener: Arc<dyn pbx::MailboxListener>) {
        let _ = self.0.set(listener);
    }
}

impl pbx::MailboxListener for Deferred {
    fn counts_changed(&self, ext: &str, counts: pbx::MailboxCounts) {
        if let Some(l) = self.0.get() {
            l.counts_changed(ext, counts);
        }
    }

    fn message_left(&self, message: &pbx::NewMessage) {
        if let Some(l) = self.0.get() {
            l.message_left(message);
        }
    }
}
