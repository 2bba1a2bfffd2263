//! The spec runner's simulator: a [`CallApi`] that records what a route did
//! to a call that has no sockets, a [`Host`] whose registrations, extensions
//! and `kv` are scripted by the spec, and a virtual clock that waits advance
//! at once (DESIGN.md "Dialplan (Lua)"; `switchboard test`).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pbx::{ActionError, DialOutcome, DialStatus};

use crate::call::{CallApi, DigitOptions, RecordEnd, RecordOptions, RecordResult, ScriptDial};
use crate::host::{Contact, ExtensionInfo, Host, HostError, PhoneState};
use crate::mailbox::{Greeting, VOICEMAIL_PREFIX, Voicemail, VoicemailMessage};

/// The first parking slot (`call:park{}` without a slot, in a simulation).
const PARK_FIRST_SLOT: u16 = 71;

/// How long a `dial` without `timeout` rings in the simulation (the
/// server's `ring_timeout` default).
pub(crate) const DEFAULT_RING: f64 = 60.0;

/// What a simulated phone does when it is dialled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phone {
    /// Registered; answers after `after` seconds, then talks for `talk`.
    Answers { after: f64, talk: f64 },
    /// Registered and rings until the dial's timeout.
    NeverAnswers,
    /// Registered and answers 486 Busy Here.
    Busy,
    /// Not registered.
    Unregistered,
}

impl Default for Phone {
    fn default() -> Self {
        Self::Answers {
            after: 0.0,
            talk: 0.0,
        }
    }
}

/// The simulated world of one case: the virtual clock, the phones, the
/// extensions, the kv store.
#[derive(Debug, Default)]
pub(crate) struct World {
    /// Virtual time, seconds since the Unix epoch.
    pub(crate) now: f64,
    pub(crate) phones: HashMap<String, Phone>,
    pub(crate) extensions: HashMap<String, ExtensionInfo>,
    /// Value and, if it has a time to live, when it expires (virtual time).
    pub(crate) kv: HashMap<(String, String), (Vec<u8>, Option<f64>)>,
    /// The simulated mailboxes, by extension.
    pub(crate) mailboxes: HashMap<String, Vec<VoicemailMessage>>,
    /// Recorded greetings (extension, kind) → file.
    pub(crate) greetings: HashMap<(String, &'static str), String>,
    /// How long each recording made is, by file (virtual seconds).
    pub(crate) recorded: HashMap<String, f64>,
    /// The next number in made-up names and ids.
    pub(crate) serial: u64,
    /// The call queues (`queues` module) of this case.
    pub(crate) queues: crate::Queues,
    /// The lamps `pbx.set_lamp` set: on (busy) or off.
    pub(crate) lamps: HashMap<String, bool>,
}

impl World {
    /// The script of `target`'s phone: scripted, else the default for a
    /// configured extension (answers at once), else not registered.
    pub(crate) fn phone(&self, target: &str) -> Phone {
        match self.phones.get(target) {
            Some(phone) => *phone,
            None if self.extensions.contains_key(target) => Phone::default(),
            None => Phone::Unregistered,
        }
    }
}

/// The shared world, locked for a moment at a time (never across an await).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedWorld(Arc<Mutex<World>>);

impl SharedWorld {
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // Nothing panics while holding it; a poisoned lock still has valid data.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The [`Host`] of the simulation: `kv` in memory on the virtual clock,
/// the scripted registrations and the extensions.
#[derive(Debug, Clone)]
pub(crate) struct SimHost(pub(crate) SharedWorld);

impl Host for SimHost {
    fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let mut world = self.0.lock();
        let now = world.now;
        let k = (ns.to_owned(), key.to_owned());
        match world.kv.get(&k) {
            Some((_, Some(expires))) if *expires <= now => {
                world.kv.remove(&k);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), HostError> {
        let mut world = self.0.lock();
        let expires = ttl.map(|ttl| world.now + ttl.as_secs_f64());
        world
            .kv
            .insert((ns.to_owned(), key.to_owned()), (value.to_vec(), expires));
        Ok(())
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, HostError> {
        let mut world = self.0.lock();
        Ok(world.kv.remove(&(ns.to_owned(), key.to_owned())).is_some())
    }

    fn contacts(&self, ext: &str) -> Result<Vec<Contact>, HostError> {
        let world = self.0.lock();
        Ok(match world.phone(ext) {
            Phone::Unregistered => Vec::new(),
            _ => vec![Contact {
                uri: format!("sip:{ext}@127.0.0.1:5060"),
                source: "127.0.0.1:5060".into(),
                transport: "udp".into(),
                expires: 3600,
            }],
        })
    }

    fn extension(&self, id: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self.0.lock().extensions.get(id).cloned())
    }

    fn phone_state(&self, ext: &str) -> Result<PhoneState, HostError> {
        Ok(match self.0.lock().phone(ext) {
            Phone::Busy => PhoneState::Busy,
            Phone::Unregistered => PhoneState::Unregistered,
            Phone::Answers { .. } | Phone::NeverAnswers => PhoneState::Idle,
        })
    }

    fn set_lamp(&self, name: &str, busy: bool) -> Result<(), HostError> {
        let mut world = self.0.lock();
        if world.extensions.contains_key(name) {
            return Err(HostError::new(format!(
                "{name} is an extension, whose lamp follows its calls: give the lamp a name that is no extension"
            )));
        }
        world.lamps.insert(name.to_owned(), busy);
        Ok(())
    }

    fn extension_by_did(&self, number: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self
            .0
            .lock()
            .extensions
            .values()
            .find(|e| e.did.as_deref() == Some(number))
            .cloned())
    }

    fn blocks(&self) -> bool {
        false
    }

    fn now(&self) -> Option<i64> {
        Some(self.0.lock().now.floor() as i64)
    }

    fn voicemail(&self) -> Option<&dyn Voicemail> {
        Some(self)
    }

    fn queues(&self) -> Option<crate::Queues> {
        Some(self.0.lock().queues.clone())
    }
}

/// Mailboxes in memory: a recording's length is the virtual time it took.
impl Voicemail for SimHost {
    fn scratch(&self, ext: &str) -> Result<String, HostError> {
        let mut world = self.0.lock();
        world.serial += 1;
        Ok(format!("{VOICEMAIL_PREFIX}{ext}/tmp-{}.wav", world.serial))
    }

    fn save(
        &self,
        ext: &str,
        file: &str,
        caller: &str,
    ) -> Result<Option<VoicemailMessage>, HostError> {
        let mut world = self.0.lock();
        let length = world.recorded.remove(file).unwrap_or(0.0);
        if length < 1.0 {
            return Ok(None);
        }
        world.serial += 1;
        let id = world.serial.to_string();
        let message = VoicemailMessage {
            file: format!("{VOICEMAIL_PREFIX}{ext}/{id}.wav"),
            id,
            caller: caller.to_owned(),
            received_ms: (world.now * 1000.0) as u64,
            duration_s: length,
            new: true,
        };
        world
            .mailboxes
            .entry(ext.to_owned())
            .or_default()
            .push(message.clone());
        Ok(Some(message))
    }

    fn list(&self, ext: &str) -> Result<Vec<VoicemailMessage>, HostError> {
        Ok(self
            .0
            .lock()
            .mailboxes
            .get(ext)
            .cloned()
            .unwrap_or_default())
    }

    fn mark_heard(&self, ext: &str, id: &str) -> Result<bool, HostError> {
        let mut world = self.0.lock();
        let found = world
            .mailboxes
            .get_mut(ext)
            .and_then(|list| list.iter_mut().find(|m| m.id == id));
        Ok(found.map(|m| m.new = false).is_some())
    }

    fn delete(&self, ext: &str, id: &str) -> Result<bool, HostError> {
        let mut world = self.0.lock();
        let Some(list) = world.mailboxes.get_mut(ext) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|m| m.id != id);
        Ok(list.len() != before)
    }

    fn counts(&self, ext: &str) -> Result<(u32, u32), HostError> {
        let list = Voicemail::list(self, ext)?;
        let new = list.iter().filter(|m| m.new).count() as u32;
        Ok((new, list.len() as u32 - new))
    }

    fn greeting(&self, ext: &str, kind: Greeting) -> Result<Option<String>, HostError> {
        let world = self.0.lock();
        Ok(world
            .greetings
            .get(&(ext.to_owned(), kind.as_str()))
            .cloned())
    }

    fn set_greeting(&self, ext: &str, kind: Greeting, file: &str) -> Result<bool, HostError> {
        let mut world = self.0.lock();
        if world.recorded.remove(file).unwrap_or(0.0) < 1.0 {
            return Ok(false);
        }
        let name = format!("{VOICEMAIL_PREFIX}{ext}/greeting-{}.wav", kind.as_str());
        world
            .greetings
            .insert((ext.to_owned(), kind.as_str()), name);
        Ok(true)
    }

    fn check_pin(&self, _ext: &str, _pin: &str) -> Result<Option<bool>, HostError> {
        Ok(None)
    }
}

/// One thing a route did to the simulated call, for the spec's
/// expectations (`call:actions()` in Lua).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Recorded {
    /// `ring`, `answer`, `reject`, `redirect`, `hangup`, `sleep`, `dial`,
    /// `play`, `record`, `read_digits`, `echo`.
    pub(crate) action: &'static str,
    /// Seconds since the call started (virtual time).
    pub(crate) at: f64,
    /// `dial`'s targets.
    pub(crate) targets: Vec<String>,
    /// `dial`'s ring timeout, `read_digits`' per-digit timeout, `sleep`'s
    /// seconds, `record`'s max.
    pub(crate) timeout: Option<f64>,
    /// `dial`'s caller id.
    pub(crate) caller_id: Option<String>,
    /// `dial`'s or `hold`'s music-on-hold class.
    pub(crate) moh: Option<String>,
    /// `dial`'s STIR/SHAKEN attestation override.
    pub(crate) attest: Option<String>,
    /// `play` / `record` file; `redirect` URI; the prompt of a `dial`
    /// with `confirm` (the simulated phones always confirm).
    pub(crate) file: Option<String>,
    /// `reject` code, or the code `dial` came back with.
    pub(crate) code: Option<u16>,
    /// `reject`'s reason phrase.
    pub(crate) reason: Option<String>,
    /// `dial`'s status, `record`'s reason.
    pub(crate) status: Option<&'static str>,
    /// `read_digits`' result.
    pub(crate) digits: Option<String>,
}

/// The caller's side of a simulated call: what it will do, and what the
/// route did to it.
#[derive(Debug, Default)]
pub(crate) struct CallScript {
    /// Keys the caller types, in order (type-ahead included).
    pub(crate) digits: VecDeque<char>,
    /// When the caller hangs up, seconds after the call starts.
    pub(crate) hangs_up_after: Option<f64>,
    /// Virtual time the call started at (set when the route starts).
    pub(crate) started: f64,
    /// The caller is gone (hung up, or the route ended the call).
    pub(crate) gone: bool,
    /// What the route did, in order.
    pub(crate) actions: Vec<Recorded>,
}

/// A simulated call: the [`CallApi`] the spec runner gives the real route.
#[derive(Debug, Clone)]
pub(crate) struct SimCall {
    pub(crate) world: SharedWorld,
    pub(crate) script: Arc<Mutex<CallScript>>,
    /// The sounds directory `play` checks its file in, if known.
    pub(crate) sounds: Option<PathBuf>,
}

/// Why a simulated action could not go on: the caller is gone.
struct Gone;

impl SimCall {
    fn script(&self) -> MutexGuard<'_, CallScript> {
        // Nothing panics while holding it; a poisoned lock still has valid data.
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `action` (filled in by `fill`) at the current virtual time;
    /// `Gone` if the caller has gone already.
    fn note(&self, action: &'static str, fill: impl FnOnce(&mut Recorded)) -> Result<(), Gone> {
        let now = self.world.lock().now;
        let mut script = self.script();
        let mut recorded = Recorded {
            action,
            at: now - script.started,
            ..Recorded::default()
        };
        fill(&mut recorded);
        script.actions.push(recorded);
        if script.gone
            || script
                .hangs_up_after
                .is_some_and(|t| now - script.started >= t)
        {
            script.gone = true;
            return Err(Gone);
        }
        Ok(())
    }

    /// Lets `secs` of virtual time pass; if the caller hangs up meanwhile,
    /// time stops there and the caller is gone.
    fn pass(&self, secs: f64) -> Result<(), Gone> {
        let mut world = self.world.lock();
        let mut script = self.script();
        let until = world.now + secs.max(0.0);
        match script.hangs_up_after.map(|t| script.started + t) {
            Some(hangup) if hangup <= until => {
                world.now = world.now.max(hangup);
                script.gone = true;
                Err(Gone)
            }
            _ => {
                world.now = until;
                Ok(())
            }
        }
    }

    /// The last recorded action, to fill in its result.
    fn last(&self, fill: impl FnOnce(&mut Recorded)) {
        if let Some(last) = self.script().actions.last_mut() {
            fill(last);
        }
    }

    fn end(&self) {
        self.script().gone = true;
    }

    fn dial_now(&self, targets: &[String], opts: &ScriptDial) -> DialOutcome {
        let ring = opts.timeout.map_or(DEFAULT_RING, |t| t.as_secs_f64());
        let phones: Vec<Phone> = {
            let world = self.world.lock();
            targets.iter().map(|t| world.phone(t)).collect()
        };
        // The first to answer (the first listed, on a tie).
        let answer = phones
            .iter()
            .zip(targets)
            .filter_map(|(p, target)| match p {
                Phone::Answers { after, talk } if *after < ring => Some((*after, *talk, target)),
                _ => None,
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let ringing = phones
            .iter()
            .any(|p| matches!(p, Phone::Answers { .. } | Phone::NeverAnswers));
        let result = |status, code| DialOutcome {
            status,
            code,
            answered_by: None,
        };
        if let Some((after, talk, target)) = answer {
            if self.pass(after).is_err() {
                return result(DialStatus::Cancelled, 487);
            }
            // The bridged call ends when either side hangs up.
            let _ = self.pass(talk);
            self.end();
            return DialOutcome {
                answered_by: Some(target.clone()),
                ..result(DialStatus::Answered, 200)
            };
        }
        if ringing {
            if self.pass(ring).is_err() {
                return result(DialStatus::Cancelled, 487);
            }
            return result(DialStatus::NoAnswer, 408);
        }
        if phones.contains(&Phone::Busy) {
            return result(DialStatus::Busy, 486);
        }
        result(DialStatus::Unavailable, 480)
    }

    fn read_now(&self, opts: &DigitOptions) -> Result<String, Gone> {
        let mut typed = String::new();
        while typed.chars().count() < opts.max {
            let next = self.script().digits.pop_front();
            match next {
                Some(key) if Some(key) == opts.terminator => break,
                Some(key) => typed.push(key),
                None => {
                    self.pass(opts.timeout.as_secs_f64())?;
                    break;
                }
            }
        }
        Ok(typed)
    }
}

fn ended(_: Gone) -> ActionError {
    ActionError::Ended
}

/// A simulated action failed (the route's Lua error names the action).
fn failed(message: String) -> ActionError {
    ActionError::Failed(message)
}

impl CallApi for SimCall {
    async fn ring(&self) -> Result<(), ActionError> {
        self.note("ring", |_| {}).map_err(ended)
    }

    async fn answer(&self) -> Result<(), ActionError> {
        self.note("answer", |_| {}).map_err(ended)
    }

    async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        self.note("reject", |r| {
            r.code = Some(code);
            r.reason = reason;
        })
        .map_err(ended)?;
        self.end();
        Ok(())
    }

    async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        self.note("redirect", |r| r.file = Some(uri))
            .map_err(ended)?;
        self.end();
        Ok(())
    }

    async fn hangup(&self) -> Result<(), ActionError> {
        self.note("hangup", |_| {}).map_err(ended)?;
        self.end();
        Ok(())
    }

    async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        self.note("sleep", |r| r.timeout = Some(duration.as_secs_f64()))
            .map_err(ended)?;
        self.pass(duration.as_secs_f64()).map_err(ended)
    }

    async fn dial(&self, opts: ScriptDial) -> Result<DialOutcome, ActionError> {
        self.note("dial", |r| {
            r.targets = opts.targets.clone();
            r.timeout = opts.timeout.map(|t| t.as_secs_f64());
            r.caller_id = opts.caller_id.clone();
            r.moh = opts.moh.clone();
            r.attest = opts.attest.clone();
            r.file = opts.confirm.as_ref().map(|c| c.prompt.clone());
        })
        .map_err(ended)?;
        if let (Some(sounds), Some(confirm)) = (&self.sounds, &opts.confirm)
            && !sounds.join(&confirm.prompt).is_file()
        {
            return Err(failed(format!(
                "no confirmation prompt {}",
                sounds.join(&confirm.prompt).display()
            )));
        }
        let result = self.dial_now(&opts.targets, &opts);
        self.last(|r| {
            r.status = Some(result.status.as_str());
            r.code = Some(result.code);
        });
        Ok(result)
    }

    async fn play(&self, file: String) -> Result<(), ActionError> {
        self.note("play", |r| r.file = Some(file.clone()))
            .map_err(ended)?;
        if let Some(sounds) = &self.sounds
            && !file.starts_with(VOICEMAIL_PREFIX)
            && !sounds.join(&file).is_file()
        {
            return Err(failed(format!(
                "no prompt {}",
                sounds.join(&file).display()
            )));
        }
        Ok(())
    }

    async fn record(&self, file: String, opts: RecordOptions) -> Result<RecordResult, ActionError> {
        self.note("record", |r| {
            r.file = Some(file.clone());
            r.timeout = Some(opts.max.as_secs_f64());
        })
        .map_err(ended)?;
        let start = self.world.lock().now;
        let pressed = opts.terminator.is_some_and(|t| {
            let mut script = self.script();
            let hit = script.digits.front() == Some(&t);
            if hit {
                script.digits.pop_front();
            }
            hit
        });
        let reason = if pressed {
            RecordEnd::Terminator
        } else if self.pass(opts.max.as_secs_f64()).is_err() {
            RecordEnd::Hangup
        } else {
            RecordEnd::Max
        };
        let duration = {
            let mut world = self.world.lock();
            let secs = (world.now - start).max(0.0);
            world.recorded.insert(file, secs);
            Duration::from_secs_f64(secs)
        };
        self.last(|r| r.status = Some(reason.as_str()));
        Ok(RecordResult { duration, reason })
    }

    async fn read_digits(&self, opts: DigitOptions) -> Result<String, ActionError> {
        self.note("read_digits", |r| {
            r.timeout = Some(opts.timeout.as_secs_f64())
        })
        .map_err(ended)?;
        let typed = self.read_now(&opts).map_err(ended)?;
        self.last(|r| r.digits = Some(typed.clone()));
        Ok(typed)
    }

    async fn hold(&self, class: Option<String>) -> Result<(), ActionError> {
        self.note("hold", |r| r.moh = class).map_err(ended)
    }

    async fn unhold(&self) -> Result<(), ActionError> {
        self.note("unhold", |_| {}).map_err(ended)
    }

    async fn park(
        &self,
        slot: Option<u16>,
        timeout: Duration,
        announce: bool,
        ringback: Option<String>,
    ) -> Result<u16, ActionError> {
        self.note("park", |r| {
            r.timeout = Some(timeout.as_secs_f64());
            r.code = slot;
            r.status = announce.then_some("announced");
            r.targets = ringback.into_iter().collect();
        })
        .map_err(ended)?;
        // The simulated lot is empty: the slot asked for, or the first.
        let slot = slot.unwrap_or(PARK_FIRST_SLOT);
        self.last(|r| r.code = Some(slot));
        self.end();
        Ok(slot)
    }

    async fn pickup(&self, target: Option<String>) -> Result<DialOutcome, ActionError> {
        self.note("pickup", |r| r.targets = target.into_iter().collect())
            .map_err(ended)?;
        // Nothing rings in a simulation.
        let result = DialOutcome {
            status: DialStatus::Unavailable,
            code: 404,
            answered_by: None,
        };
        self.last(|r| r.status = Some(result.status.as_str()));
        Ok(result)
    }

    async fn unpark(&self, slot: u16) -> Result<DialOutcome, ActionError> {
        self.note("unpark", |r| r.code = Some(slot))
            .map_err(ended)?;
        // Nobody is parked in a simulation.
        let result = DialOutcome {
            status: DialStatus::Unavailable,
            code: 404,
            answered_by: None,
        };
        self.last(|r| r.status = Some(result.status.as_str()));
        Ok(result)
    }

    async fn echo(&self) -> Result<(), ActionError> {
        self.note("echo", |_| {}).map_err(ended)?;
        // Echo lasts until the caller hangs up.
        let left = {
            let now = self.world.lock().now;
            let script = self.script();
            script
                .hangs_up_after
                .map_or(0.0, |t| script.started + t - now)
        };
        let _ = self.pass(left);
        self.end();
        Ok(())
    }
}
