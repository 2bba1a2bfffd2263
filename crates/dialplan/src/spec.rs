//! The dialplan spec runner behind `switchboard test`: Lua spec files
//! (`*_spec.lua`) run against the real runtime (the generation, contexts,
//! plugins and call API of [`Runtime`]) with simulated calls (`sim.rs`):
//! no sockets, a virtual clock, scripted phones and `kv`.
//!
//! A spec file holds cases (`it("name", function() ... end)`, each after
//! the `before_each` functions, in a fresh simulation); a file with none is
//! one case. Each spec file gets its own Lua state with `sim`, `expect`,
//! `it` and `before_each` (from `spec.lua`); `os.time()`/`os.date()` read
//! the virtual clock there and in the dialplan. The spec's own Lua has the
//! live dialplan's limits (`spec_limits.rs`): a case over them fails, and
//! the runner goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{AnyUserData, Function, Lua, Table, UserData, Value};
use pbx::{CallDetails, CallIdentity, Party};

use crate::error::Error;
use crate::host::ExtensionInfo;
use crate::route::{RouteOutcome, locate};
use crate::runtime::{Limits, Runtime};
use crate::sim::{Phone, Recorded, SharedWorld, SimCall, SimHost, World};
use crate::spec_limits::SpecLimits;

/// The Lua side of the runner: `it`, `before_each`, `expect`, `sim`.
pub(crate) const SPEC_LUA: &str = include_str!("spec.lua");

/// The domain the simulated calls' URIs name.
const SIM_DOMAIN: &str = "switchboard.test";

/// What the spec runner needs to know of the installation.
#[derive(Debug, Clone)]
pub struct SpecSettings {
    /// The contexts (`dialplan.dir`).
    pub dialplans: PathBuf,
    /// The plugins (`dialplan.plugins`).
    pub plugins: PathBuf,
    /// The prompts (`dialplan.sounds`): `call:play` of a file that is not
    /// there fails, as it would on a live call. `None`: not checked.
    pub sounds: Option<PathBuf>,
    /// The runtime's limits.
    pub limits: Limits,
    /// The configured extensions (`pbx.extension`), registered unless a
    /// spec says otherwise; specs add more with `sim.extension`.
    pub extensions: Vec<ExtensionInfo>,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The spec file, as given.
    pub file: String,
    /// The case's name (`it("name", ...)`), or the file's when it has no
    /// cases.
    pub name: String,
    /// Why it failed (`file:line: message`), or `None` if it passed.
    pub failure: Option<String>,
}

/// Every case run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The cases, in the order run.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// The `*_spec.lua` files directly in `dir`, sorted by name.
pub fn spec_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let spec = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_spec.lua"));
        if spec && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The runtime loaded once with the simulator as its host, running spec
/// files one after another.
#[derive(Debug)]
pub struct SpecRunner {
    runtime: Arc<Runtime>,
    world: SharedWorld,
    settings: SpecSettings,
    calls: Arc<AtomicU64>,
}

impl SpecRunner {
    /// Loads the dialplans and plugins (a bad file is the same
    /// [`Error::Reload`] as at start-up).
    pub fn new(settings: SpecSettings) -> Result<Self, Error> {
        let world = SharedWorld::default();
        let runtime = Runtime::new(&settings.dialplans, &settings.plugins, settings.limits)?
            .with_host(Arc::new(SimHost(world.clone())));
        Ok(Self {
            runtime: Arc::new(runtime),
            world,
            settings,
            calls: Arc::default(),
        })
    }

    /// Runs `files` (cases whose `file name` contains `filter`, if given),
    /// writing each file, each case's `ok`/`FAIL` line with the failure's
    /// `file:line: message`, and the `N passed, M failed` summary to `out`.
    pub async fn run(
        &self,
        files: &[PathBuf],
        filter: Option<&str>,
        out: &mut dyn Write,
    ) -> std::io::Result<Report> {
        let mut report = Report::default();
        for file in files {
            let cases = self.run_file(file, filter).await;
            if cases.is_empty() {
                continue;
            }
            writeln!(out, "{}", file.display())?;
            for case in &cases {
                match &case.failure {
                    None => writeln!(out, "  ok    {}", case.name)?,
                    Some(why) => {
                        writeln!(out, "  FAIL  {}", case.name)?;
                        for line in why.lines() {
                            writeln!(out, "        {line}")?;
                        }
                    }
                }
            }
            report.cases.extend(cases);
        }
        writeln!(out, "{}", report.summary())?;
        Ok(report)
    }

    /// The cases of one spec file.
    pub async fn run_file(&self, path: &Path, filter: Option<&str>) -> Vec<CaseReport> {
        let file = path.display().to_string();
        let wanted = |name: &str| filter.is_none_or(|f| format!("{file} {name}").contains(f));
        let whole = |failure| {
            vec![CaseReport {
                file: file.clone(),
                name: file_stem(path),
                failure,
            }]
        };
        let source = match std::fs::read(path) {
            Ok(source) => source,
            Err(e) => return whole(Some(format!("{file}: cannot read: {e}"))),
        };
        let (lua, harness) = match self.spec_state() {
            Ok(state) => state,
            Err(e) => return whole(Some(format!("{file}: cannot start the spec: {e}"))),
        };
        let chunk = match lua
            .load(&source[..])
            .set_name(format!("@{file}"))
            .into_function()
        {
            Ok(chunk) => chunk,
            Err(e) => return whole(Some(describe(&e))),
        };
        let run_case: Function = match harness.get("run_case") {
            Ok(f) => f,
            Err(e) => return whole(Some(describe(&e))),
        };
        self.reset();
        let top = run(&lua, &run_case, chunk).await;
        let cases: Vec<(String, Function)> = harness
            .get::<Table>("cases")
            .and_then(|cases| {
                cases
                    .sequence_values::<Table>()
                    .map(|c| {
                        let c = c?;
                        Ok((c.get("name")?, c.get("fn")?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if cases.is_empty() {
            if !wanted(&file_stem(path)) {
                return Vec::new();
            }
            return whole(top.err());
        }
        let mut reports = Vec::new();
        if let Err(why) = top {
            reports.push(CaseReport {
                file: file.clone(),
                name: "(top level)".into(),
                failure: Some(why),
            });
        }
        for (name, f) in cases {
            if !wanted(&name) {
                continue;
            }
            self.reset();
            let failure = run(&lua, &run_case, f).await.err();
            reports.push(CaseReport {
                file: file.clone(),
                name,
                failure,
            });
        }
        reports
    }

    /// A fresh simulation: the real time, the configured extensions all
    /// registered, no scripted phones, an empty `kv`.
    fn reset(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        let mut world = self.world.lock();
        // The queues the contexts defined when they loaded, none waiting.
        let queues = world.queues.defined_only();
        *world = World {
            now,
            queues,
            extensions: self
                .settings
                .extensions
                .iter()
                .map(|e| (e.id.clone(), e.clone()))
                .collect(),
            ..World::default()
        };
    }

    /// A Lua state for one spec file: the standard library (with `os.time`
    /// and `os.date` on the virtual clock, no `os.exit`), the runtime's
    /// limits (its [`SpecLimits`] in the state's app data), and the harness.
    pub(crate) fn spec_state(&self) -> mlua::Result<(Lua, Table)> {
        let lua = Lua::new();
        let os: Table = lua.globals().get("os")?;
        for name in ["exit", "execute", "remove", "rename", "tmpname"] {
            os.raw_set(name, Value::Nil)?;
        }
        let native = self.native(&lua)?;
        let harness: Table = lua.load(SPEC_LUA).set_name("=spec.lua").call(native)?;
        // After the harness took the plain `pcall` (the checked one is a
        // Lua function: one stack level more for its `error(..., 3)`).
        let limits = SpecLimits::install(&lua, &self.settings.limits)?;
        limits.restart();
        lua.set_app_data(limits);
        // After the harness took Lua's own os.time for sim.clock:set.
        crate::modules::install_clock(
            &lua,
            &crate::host::SharedHost(Arc::new(SimHost(self.world.clone()))),
        )?;
        Ok((lua, harness))
    }

    /// The native functions `spec.lua` builds `sim` on.
    fn native(&self, lua: &Lua) -> mlua::Result<Table> {
        let native = lua.create_table()?;

        let world = self.world.clone();
        let sounds = self.settings.sounds.clone();
        let calls = Arc::clone(&self.calls);
        native.raw_set(
            "new_call",
            lua.create_function(move |_, spec: Table| {
                let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
                let info = call_info(&spec, &world.lock(), n)?;
                Ok(CallHandle {
                    info,
                    sim: SimCall {
                        world: world.clone(),
                        script: Arc::default(),
                        sounds: sounds.clone(),
                    },
                    outcome: Arc::default(),
                })
            })?,
        )?;
        native.raw_set(
            "digits",
            lua.create_function(|_, (call, keys): (AnyUserData, String)| {
                let call = call.borrow::<CallHandle>()?;
                if let Some(bad) = keys.chars().find(|c| !is_dtmf(*c)) {
                    return Err(mlua::Error::runtime(format!(
                        "sends_digits: {bad:?} is not a DTMF key (0-9, *, #, A-D)"
                    )));
                }
                lock(&call.sim.script).digits.extend(keys.chars());
                Ok(())
            })?,
        )?;
        native.raw_set(
            "hangs_up_after",
            lua.create_function(|_, (call, secs): (AnyUserData, f64)| {
                let call = call.borrow::<CallHandle>()?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(mlua::Error::runtime(
                        "hangs_up_after: expected seconds (0 or more)",
                    ));
                }
                lock(&call.sim.script).hangs_up_after = Some(secs);
                Ok(())
            })?,
        )?;
        let runtime = Arc::clone(&self.runtime);
        let world = self.world.clone();
        native.raw_set(
            "run",
            lua.create_async_function(move |lua, call: AnyUserData| {
                let call = call.borrow::<CallHandle>().map(|c| c.clone());
                let runtime = Arc::clone(&runtime);
                let world = world.clone();
                let limits = lua.app_data_ref::<SpecLimits>().map(|l| l.clone());
                async move {
                    let call = call?;
                    if lock(&call.outcome).is_some() {
                        return Ok(());
                    }
                    lock(&call.sim.script).started = world.lock().now;
                    let state = runtime
                        .call_state()
                        .map_err(|e| mlua::Error::runtime(e.to_string()))?;
                    let outcome = state
                        .run_route(Arc::new(call.sim.clone()), call.info.clone())
                        .await;
                    *lock(&call.outcome) = Some(outcome);
                    if let Some(limits) = limits {
                        limits.route_ran();
                    }
                    Ok(())
                }
            })?,
        )?;
        native.raw_set(
            "result",
            lua.create_function(|lua, call: AnyUserData| {
                let call = call.borrow::<CallHandle>()?;
                result_table(lua, &call)
            })?,
        )?;

        let world = self.world.clone();
        native.raw_set(
            "phone",
            lua.create_function(move |_, (ext, what, secs): (String, String, Option<f64>)| {
                let secs = secs.unwrap_or(0.0);
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(mlua::Error::runtime(format!(
                        "{what}: expected seconds (0 or more)"
                    )));
                }
                let mut world = world.lock();
                let current = world.phone(&ext);
                let phone = match (what.as_str(), current) {
                    ("answers", Phone::Answers { talk, .. }) => {
                        Phone::Answers { after: secs, talk }
                    }
                    ("answers", _) => Phone::Answers {
                        after: secs,
                        talk: 0.0,
                    },
                    ("talks", Phone::Answers { after, .. }) => Phone::Answers { after, talk: secs },
                    ("talks", _) => Phone::Answers {
                        after: 0.0,
                        talk: secs,
                    },
                    ("never", _) => Phone::NeverAnswers,
                    ("busy", _) => Phone::Busy,
                    _ => Phone::Unregistered,
                };
                world.phones.insert(ext, phone);
                Ok(())
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "extension",
            lua.create_function(
                move |_, (id, name, context, did, outbound, international): SimExtension| {
                    world.lock().extensions.insert(
                        id.clone(),
                        ExtensionInfo {
                            id,
                            name,
                            context,
                            did,
                            outbound,
                            international,
                        },
                    );
                    Ok(())
                },
            )?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "kv_get",
            lua.create_function(move |lua, (ns, key): (String, String)| {
                let host = SimHost(world.clone());
                match crate::host::Host::kv_get(&host, &ns, &key) {
                    Ok(Some(v)) => Ok(Value::String(lua.create_string(v)?)),
                    _ => Ok(Value::Nil),
                }
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "kv_set",
            lua.create_function(
                move |_, (ns, key, value, ttl): (String, String, mlua::LuaString, Option<f64>)| {
                    let ttl = ttl
                        .filter(|t| t.is_finite() && *t > 0.0)
                        .map(std::time::Duration::from_secs_f64);
                    let host = SimHost(world.clone());
                    crate::host::Host::kv_set(&host, &ns, &key, &value.as_bytes(), ttl)
                        .map_err(|e| mlua::Error::runtime(e.to_string()))
                },
            )?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "lamp",
            lua.create_function(move |_, name: String| {
                Ok(world
                    .lock()
                    .lamps
                    .get(&name)
                    .map(|on| if *on { "busy" } else { "idle" }))
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "kv_delete",
            lua.create_function(move |_, (ns, key): (String, String)| {
                let host = SimHost(world.clone());
                crate::host::Host::kv_delete(&host, &ns, &key)
                    .map_err(|e| mlua::Error::runtime(e.to_string()))
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "clock_set",
            lua.create_function(move |_, t: f64| {
                world.lock().now = t;
                Ok(())
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "clock_advance",
            lua.create_function(move |_, secs: f64| {
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(mlua::Error::runtime(
                        "sim.clock:advance: expected seconds (0 or more)",
                    ));
                }
                world.lock().now += secs;
                Ok(())
            })?,
        )?;
        let world = self.world.clone();
        native.raw_set(
            "clock_now",
            lua.create_function(move |_, ()| Ok(world.lock().now.floor() as i64))?,
        )?;
        Ok(native)
    }
}

/// A simulated call as the spec holds it.
#[derive(Debug, Clone)]
struct CallHandle {
    info: CallDetails,
    sim: SimCall,
    outcome: Arc<Mutex<Option<RouteOutcome>>>,
}

impl UserData for CallHandle {}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned lock still has valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn file_stem(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `sim.extension`'s fields: id, name, context, did, outbound, international.
type SimExtension = (String, Option<String>, String, Option<String>, bool, bool);

fn uri(user: &str) -> Party {
    Party {
        user: user.to_owned(),
        host: SIM_DOMAIN.to_owned(),
        display: None,
        uri: format!("sip:{user}@{SIM_DOMAIN}"),
    }
}

/// The call `sim.call{from = ..., to = ..., context = ..., caller = ...,
/// headers = {...}}` describes.
fn call_info(spec: &Table, world: &World, n: u64) -> mlua::Result<CallDetails> {
    for pair in spec.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let known = matches!(&key, Value::String(k)
            if matches!(k.to_str()?.as_ref(), "from" | "to" | "context" | "caller" | "headers" | "trunk" | "did" | "identity"));
        if !known {
            return Err(mlua::Error::runtime(format!(
                "sim.call: unknown key {} (from, to, context, caller, headers, trunk, did, identity)",
                key.to_string()?
            )));
        }
    }
    let text = |key: &str| -> mlua::Result<Option<String>> {
        match spec.get::<Value>(key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_str()?.to_owned())),
            Value::Integer(i) => Ok(Some(i.to_string())),
            other => Err(mlua::Error::runtime(format!(
                "sim.call: {key} must be a string, got {}",
                crate::route::lua_type(&other)
            ))),
        }
    };
    let from = text("from")?.unwrap_or_else(|| "anonymous".into());
    let to = text("to")?
        .ok_or_else(|| mlua::Error::runtime("sim.call: `to` (the number dialled) is required"))?;
    let trunk = text("trunk")?;
    // A call from a trunk: no caller; its DID is `did`, else `to` when it is E.164.
    let did = match text("did")? {
        Some(d) => Some(d),
        None if trunk.is_some() && to.starts_with('+') => Some(to.clone()),
        None => None,
    };
    let caller = match spec.get::<Value>("caller")? {
        _ if trunk.is_some() => None,
        Value::Boolean(false) => None,
        Value::Nil => world.extensions.contains_key(&from).then(|| from.clone()),
        _ => text("caller")?,
    };
    let context = match text("context")? {
        Some(c) => c,
        None => world
            .extensions
            .get(&from)
            .map_or_else(|| "default".to_owned(), |e| e.context.clone()),
    };
    let mut headers = Vec::new();
    if let Some(table) = spec.get::<Option<Table>>("headers")? {
        for pair in table.pairs::<String, String>() {
            headers.push(pair?);
        }
        headers.sort();
    }
    let identity = match spec.get::<Value>("identity")? {
        Value::Nil => None,
        Value::Table(t) => Some(sim_identity(&t)?),
        other => {
            return Err(mlua::Error::runtime(format!(
                "sim.call: identity must be a table {{verified =, attest =, reason =}}, got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    Ok(CallDetails {
        id: format!("sim-{n}@{SIM_DOMAIN}"),
        from: uri(&from),
        to: uri(&to),
        request_uri: uri(&to),
        source_ip: "127.0.0.1".into(),
        source_port: 5060,
        transport: "udp".into(),
        caller,
        context,
        trunk,
        did,
        headers: headers.into_iter().collect(),
        transferred_by: None,
        transfer_failed: None,
        identity,
    })
}

/// `sim.call{identity = {verified = true, attest = "A", reason = nil}}`:
/// what STIR/SHAKEN verification found, as `call.identity` shows it.
fn sim_identity(t: &Table) -> mlua::Result<CallIdentity> {
    let verified = match t.get::<Value>("verified")? {
        Value::Boolean(b) => b,
        Value::Nil => false,
        other => {
            return Err(mlua::Error::runtime(format!(
                "sim.call: identity.verified must be a boolean, got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    let attest = match t.get::<Value>("attest")? {
        Value::Nil => None,
        Value::String(s) if matches!(s.to_str()?.as_ref(), "A" | "B" | "C") => {
            Some(s.to_str()?.to_owned())
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "sim.call: identity.attest must be \"A\", \"B\" or \"C\", got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    let reason = match t.get::<Value>("reason")? {
        Value::Nil => None,
        Value::String(s) => Some(s.to_str()?.to_owned()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "sim.call: identity.reason must be a string, got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    Ok(CallIdentity {
        verified,
        attest,
        reason,
    })
}

/// `{outcome =, code =, answered =, failure =, actions = {...}}`.
fn result_table(lua: &Lua, call: &CallHandle) -> mlua::Result<Table> {
    let outcome = lock(&call.outcome).clone();
    let script = lock(&call.sim.script);
    let t = lua.create_table()?;
    let answered = script.actions.iter().any(|a| {
        matches!(
            a.action,
            "answer" | "play" | "record" | "read_digits" | "echo" | "hold" | "park"
        ) || a.status == Some("answered")
    });
    let code = match &outcome {
        Some(RouteOutcome::Rejected { code }) => Some(*code),
        Some(RouteOutcome::Redirected { .. }) => Some(302),
        Some(RouteOutcome::NotAnswered) => Some(404),
        Some(RouteOutcome::Failed {
            answered: false, ..
        }) => Some(500),
        Some(RouteOutcome::CallerGone) | None => None,
        Some(_) => answered.then_some(200),
    };
    t.raw_set(
        "outcome",
        outcome.as_ref().map_or("not_run", |o| o.as_str()),
    )?;
    t.raw_set("code", code)?;
    t.raw_set("answered", answered)?;
    if let Some(RouteOutcome::Failed { failure, .. }) = &outcome {
        t.raw_set("failure", with_hint(failure.to_string()))?;
    }
    let actions = lua.create_table()?;
    for a in &script.actions {
        actions.raw_push(action_table(lua, a)?)?;
    }
    t.raw_set("actions", actions)?;
    Ok(t)
}

fn action_table(lua: &Lua, a: &Recorded) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("action", a.action)?;
    t.raw_set("at", a.at)?;
    if a.action == "dial" {
        t.raw_set("targets", lua.create_sequence_from(a.targets.clone())?)?;
    }
    t.raw_set("timeout", a.timeout)?;
    t.raw_set("caller_id", a.caller_id.clone())?;
    t.raw_set("moh", a.moh.clone())?;
    t.raw_set("attest", a.attest.clone())?;
    t.raw_set("file", a.file.clone())?;
    t.raw_set("code", a.code)?;
    t.raw_set("reason", a.reason.clone())?;
    t.raw_set("status", a.status)?;
    t.raw_set("digits", a.digits.clone())?;
    Ok(t)
}

/// A route failure with a hint when it called a `call` method that does
/// not exist: `... (method 'anwser') — the call object has no method
/// 'anwser'; did you mean 'answer'?`.
fn with_hint(failure: String) -> String {
    let Some(name) = failure
        .split("(method '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    else {
        return failure;
    };
    if crate::route::CALL_METHODS.contains(&name) {
        return failure;
    }
    let closest = crate::route::CALL_METHODS
        .iter()
        .map(|m| (distance(m, name), *m))
        .min()
        .filter(|(d, _)| *d <= 2);
    match closest {
        Some((_, m)) => {
            format!("{failure} — the call object has no method '{name}'; did you mean '{m}'?")
        }
        None => format!("{failure} — the call object has no method '{name}'"),
    }
}

/// Levenshtein distance between two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Runs `f` through the harness's `run_case` as a coroutine, with a fresh
/// budget; the failure as `file:line: message`.
async fn run(lua: &Lua, run_case: &Function, f: Function) -> Result<(), String> {
    if let Some(limits) = lua.app_data_ref::<SpecLimits>() {
        limits.restart();
    }
    let thread = lua
        .create_thread(run_case.clone())
        .map_err(|e| describe(&e))?;
    match thread.into_async::<()>(f) {
        Ok(running) => running.await.map_err(|e| describe(&e)),
        Err(e) => Err(describe(&e)),
    }
}

/// A Lua error as `file:line: message`.
fn describe(e: &mlua::Error) -> String {
    let located = locate(e);
    match located.place {
        Some((file, line)) => format!("{file}:{line}: {}", located.message),
        None => located.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_call_methods_get_a_hint() {
        let f = "dialplans/x.lua:3: attempt to call a nil value (method 'anwser')".to_owned();
        assert!(with_hint(f).ends_with("did you mean 'answer'?"));
        let f = "dialplans/x.lua:3: attempt to call a nil value (method 'frobnicate')".to_owned();
        assert!(with_hint(f).ends_with("the call object has no method 'frobnicate'"));
        let f = "dialplans/x.lua:3: boom".to_owned();
        assert_eq!(with_hint(f.clone()), f);
        assert_eq!(distance("anwser", "answer"), 2);
        assert_eq!(distance("dial", "dial"), 0);
    }
}
