//! Running `route(call)`: the Lua `call` object and `log` module, and the
//! outcome of a route, Lua failures included (DESIGN.md "Dialplan (Lua)",
//! the call object and the rules).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use mlua::{AnyUserData, Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value};
use tracing::Instrument;

use pbx::{ActionError, CallDetails, DialOutcome, DialStatus};

use crate::call::{CallApi, RecordEnd, ScriptDial};
use crate::media::{digit_args, play_args, record_args, record_table};
use crate::runtime::{CallState, SharedState};
use crate::sandbox::{Scope, Slot};
use crate::tables;

/// The longest `call:sleep` (one day); longer is a script bug.
const MAX_SLEEP_SECS: f64 = 86_400.0;

/// The longest URI `call:redirect` takes, in bytes.
const MAX_REDIRECT_URI: usize = 2048;

/// The most `on_hangup` handlers one call may register.
const MAX_HANGUP_HANDLERS: usize = 64;

/// What stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// A Lua error (`error()`, a nil index, a bad argument, …).
    Error,
    /// The state ran out of its memory limit.
    MemoryLimit,
    /// The script ran more instructions than its budget between yields.
    InstructionBudget,
    /// The script ran longer than its wall-clock limit between two call
    /// actions, or held its Lua state too long where it could not be
    /// paused.
    TimeLimit,
    /// A host call failed for now (the storage is out of reach) and the
    /// script did not catch it: the caller gets 503, not 500.
    Unavailable,
}

impl FailureKind {
    /// The kind as a metric label: `error`, `memory`, `budget`, `time`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::MemoryLimit => "memory",
            Self::InstructionBudget => "budget",
            Self::TimeLimit => "time",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A route that failed: where, and why. The caller gets 500 (or a hangup
/// once answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaFailure {
    /// What stopped the script.
    pub kind: FailureKind,
    /// The chunk the error is in (`dialplans/default.lua`), or the context's
    /// file when Lua gave no place.
    pub file: String,
    /// The line, when known.
    pub line: Option<u32>,
    /// The message without its `file:line:` prefix.
    pub message: String,
    /// The Lua traceback, when there is one (logged at debug).
    pub traceback: Option<String>,
}

impl fmt::Display for LuaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// How a route ended, for the call model to finish the call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteOutcome {
    /// `route` returned without answering or ending the call: it gets 404.
    NotAnswered,
    /// `route` returned after answering and left the call up: hang it up.
    Answered,
    /// `route` rejected the call with this status code.
    Rejected {
        /// The final status sent.
        code: u16,
    },
    /// `route` redirected the call (302 with this Contact).
    Redirected {
        /// The Contact URI sent.
        uri: String,
    },
    /// `route` hung the call up.
    HungUp,
    /// A `dial` was answered and the bridged call has ended.
    Bridged,
    /// The caller went away while the route waited on an action.
    CallerGone,
    /// `route` parked the call (it waits in a slot, no longer this
    /// route's).
    Parked,
    /// The script failed; `answered` says whether to send 500 or hang up.
    Failed {
        /// Where and why.
        failure: LuaFailure,
        /// Whether the call had been answered.
        answered: bool,
    },
}

impl RouteOutcome {
    /// A short name of the outcome, as `on_hangup` handlers get it:
    /// `not_answered`, `answered`, `rejected`, `redirected`, `hung_up`,
    /// `bridged`, `caller_gone`, `parked`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotAnswered => "not_answered",
            Self::Answered => "answered",
            Self::Rejected { .. } => "rejected",
            Self::Redirected { .. } => "redirected",
            Self::HungUp => "hung_up",
            Self::Bridged => "bridged",
            Self::CallerGone => "caller_gone",
            Self::Parked => "parked",
            Self::Failed { .. } => "failed",
        }
    }
}

/// Where the call stands, as the actions have left it.
#[derive(Debug, Default, Clone)]
struct Progress {
    answered: bool,
    ended: Option<Ended>,
    /// `route` is over (the `on_hangup` handlers run): no more actions.
    closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Rejected(u16),
    Redirected(String),
    HungUp,
    Bridged,
    CallerGone,
    Parked,
}

type Shared = Arc<Mutex<Progress>>;

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    // Nothing panics while holding it; a poisoned lock still has valid data.
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The methods of the `call` object, for hints on a misspelt one (the
/// annotation check asserts it lists exactly what `add_methods` installs).
pub(crate) const CALL_METHODS: &[&str] = &[
    "answer",
    "dial",
    "echo",
    "hangup",
    "header",
    "hold",
    "is_up",
    "on_hangup",
    "park",
    "pickup",
    "play",
    "read_digits",
    "record",
    "redirect",
    "reject",
    "ring",
    "sleep",
    "unhold",
    "unpark",
];

/// The Lua `call` object.
pub(crate) struct CallObject<A> {
    api: Arc<A>,
    /// The caller's runtime, where the actions run (`None`: where the Lua
    /// runs).
    main: Option<tokio::runtime::Handle>,
    info: CallDetails,
    progress: Shared,
    scope: Arc<Scope>,
    /// The `on_hangup` handlers, in the order registered.
    handlers: Arc<Mutex<Vec<Function>>>,
}

/// What an action needs after the userdata borrow is released.
struct Action<A> {
    api: Arc<A>,
    main: Option<tokio::runtime::Handle>,
    progress: Shared,
    scope: Arc<Scope>,
}

impl<A: CallApi> CallObject<A> {
    /// Tells the call (its trace) that `call:NAME(ARGS)` is about to run,
    /// with the calling script's `file:line`.
    fn step(&self, lua: &Lua, name: &str, args: &[&Value]) {
        // Most calls are not traced (only the last N are kept): reading the
        // stack and formatting the arguments is then wasted.
        if !self.api.is_traced() {
            return;
        }
        // The first script frame up the stack: an async method runs
        // under mlua's own polling function.
        let location = (1..8)
            .map_while(|level| {
                lua.inspect_stack(level, |d| {
                    let source = d.source();
                    let file = source.short_src.map(|s| s.into_owned());
                    (file, d.current_line(), source.what)
                })
            })
            .find_map(|(file, line, what)| {
                let file = file.filter(|f| what != "C" && !f.starts_with("__mlua"))?;
                Some(format!("{file}:{}", line?))
            });
        let args: Vec<String> = args
            .iter()
            .filter(|v| !v.is_nil())
            .map(|v| repr(v, 2))
            .collect();
        self.api
            .step(location, format!("call:{name}({})", args.join(", ")));
    }

    /// `call.state`: `"ended"` once the call is over (hung up, rejected,
    /// redirected, a dial's bridged call over, the caller gone), else
    /// `"answered"` once answered, else `"routing"`.
    fn state(&self) -> &'static str {
        let progress = lock(&self.progress);
        if progress.ended.is_some() || progress.closed || self.api.is_ended() {
            "ended"
        } else if progress.answered {
            "answered"
        } else {
            "routing"
        }
    }

    /// Checks the call is not over and takes what the action needs.
    fn begin(&self) -> mlua::Result<Action<A>> {
        let progress = lock(&self.progress);
        if progress.ended.is_some() || progress.closed {
            return Err(mlua::Error::runtime("call has ended"));
        }
        Ok(Action {
            api: Arc::clone(&self.api),
            main: self.main.clone(),
            progress: Arc::clone(&self.progress),
            scope: Arc::clone(&self.scope),
        })
    }
}

/// A call action that did not succeed: which one (the Lua error names it),
/// and `pbx`'s reason.
struct Failed {
    action: &'static str,
    error: ActionError,
}

impl<A: CallApi> Action<A> {
    /// Runs the action `name` (`f` of the call's [`CallApi`]) on the
    /// caller's runtime, where the call lives, while the Lua thread waits
    /// for it; if the route is dropped meanwhile, the action is aborted.
    ///
    /// Not an `async fn`: the action is handed to the caller's runtime at
    /// once, so the future the Lua thread keeps while a `dial` is up only
    /// waits for it (an `async fn` would keep room for the action too).
    fn run<T, F>(
        &self,
        name: &'static str,
        f: impl FnOnce(Arc<A>) -> F,
    ) -> Pin<Box<dyn Future<Output = Result<T, Failed>> + Send>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ActionError>> + Send + 'static,
    {
        let action = f(Arc::clone(&self.api));
        match &self.main {
            Some(main) => {
                let task = crate::pool::AbortOnDrop(main.spawn(action.in_current_span()));
                Box::pin(async move {
                    task.await
                        .unwrap_or_else(|e| Err(ActionError::Failed(e.to_string())))
                        .map_err(|error| Failed {
                            action: name,
                            error,
                        })
                })
            }
            None => Box::pin(async move {
                action.await.map_err(|error| Failed {
                    action: name,
                    error,
                })
            }),
        }
    }

    /// A `dial`-like action came back (`dial`, `pickup`, `unpark`):
    /// answered means the caller was bridged and that bridge has ended.
    /// The result as Lua sees it.
    fn finish_dial(&self, lua: &Lua, result: Result<DialOutcome, Failed>) -> mlua::Result<Table> {
        let result = self.finish(result, |p, r| {
            if r.status == DialStatus::Answered {
                p.answered = true;
                p.ended = Some(Ended::Bridged);
            }
        })?;
        crate::tables::dial(lua, &result)
    }

    /// The action came back: restart the budget, record the call's new
    /// state, and turn the call model's error into a Lua error.
    fn finish<T>(
        &self,
        result: Result<T, Failed>,
        update: impl FnOnce(&mut Progress, &T),
    ) -> mlua::Result<T> {
        self.scope.budget.reset();
        let mut progress = lock(&self.progress);
        match result {
            Ok(value) => {
                update(&mut progress, &value);
                Ok(value)
            }
            Err(Failed {
                error: ActionError::Ended,
                ..
            }) => {
                progress.ended.get_or_insert(Ended::CallerGone);
                Err(mlua::Error::runtime("call has ended"))
            }
            Err(Failed { action, error }) => {
                Err(mlua::Error::runtime(format!("{action} failed: {error}")))
            }
        }
    }
}

pub(crate) fn type_error(function: &str, expected: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{function}: expected {expected}, got {}",
        lua_type(got)
    ))
}

/// The type as Lua's `type()` names it (`number` for integers too).
pub(crate) fn lua_type(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) | Value::Number(_) => "number",
        other => other.type_name(),
    }
}

pub(crate) fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn reject_args(code: &Value, reason: &Value) -> mlua::Result<(u16, Option<String>)> {
    let code = match code {
        Value::Integer(i) => u16::try_from(*i).ok(),
        Value::Number(n) if n.fract() == 0.0 && (0.0..=65535.0).contains(n) => Some(*n as u16),
        _ => None,
    }
    .filter(|c| (400..=699).contains(c))
    .ok_or_else(|| type_error("reject", "a status code 400-699", code))?;
    let reason = match reason {
        Value::Nil => None,
        Value::String(s) => Some(s.to_str()?.to_owned()),
        other => return Err(type_error("reject", "a reason string or nil", other)),
    };
    Ok((code, reason))
}

fn redirect_arg(value: &Value) -> mlua::Result<String> {
    let expected = "a sip:, sips: or tel: URI string";
    let Value::String(s) = value else {
        return Err(type_error("redirect", expected, value));
    };
    let uri = s.to_str()?.to_owned();
    let scheme = uri
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) || uri.len() < 5 {
        return Err(mlua::Error::runtime(format!(
            "redirect: expected {expected}, got {uri:?}"
        )));
    }
    if uri.len() > MAX_REDIRECT_URI
        || uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    {
        return Err(mlua::Error::runtime(format!(
            "redirect: the URI must be at most {MAX_REDIRECT_URI} bytes, without spaces, control characters, quotes or angle brackets"
        )));
    }
    Ok(uri)
}

fn header_arg(value: &Value) -> mlua::Result<String> {
    match value {
        Value::String(s) => Ok(s.to_str()?.to_owned()),
        other => Err(type_error("header", "a header name string", other)),
    }
}

fn sleep_arg(value: &Value) -> mlua::Result<Duration> {
    number(value)
        .filter(|s| s.is_finite() && (0.0..=MAX_SLEEP_SECS).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| type_error("sleep", "seconds (0 to 86400)", value))
}

/// How long a parked call waits before it rings back the parker when
/// `call:park` names no timeout (Asterisk's `parkingtime` default).
const PARK_TIMEOUT_SECS: f64 = 45.0;

/// What `call:park{}` asks for: slot, timeout, announce, ringback.
type ParkArgs = (Option<u16>, Duration, bool, Option<String>);

/// `call:park{slot = n, timeout = s, announce = true, ringback = "1002"}`:
/// all optional.
fn park_args(opts: &Value) -> mlua::Result<ParkArgs> {
    let mut slot = None;
    let mut announce = false;
    let mut ringback = None;
    let mut timeout = Duration::from_secs_f64(PARK_TIMEOUT_SECS);
    match opts {
        Value::Nil => {}
        Value::Table(opts) => {
            let value: Value = opts.get("slot")?;
            if !value.is_nil() {
                let n = number(&value)
                    .filter(|n| n.fract() == 0.0 && (1.0..=65535.0).contains(n))
                    .ok_or_else(|| type_error("park", "opts.slot as a slot number", &value))?;
                slot = Some(n as u16);
            }
            let value: Value = opts.get("timeout")?;
            if !value.is_nil() {
                timeout = number(&value)
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_SLEEP_SECS)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| type_error("park", "opts.timeout in seconds", &value))?;
            }
            match opts.get::<Value>("announce")? {
                Value::Nil => {}
                Value::Boolean(b) => announce = b,
                other => return Err(type_error("park", "opts.announce as a boolean", &other)),
            }
            match opts.get::<Value>("ringback")? {
                Value::Nil => {}
                Value::String(s) => ringback = Some(s.to_str()?.to_owned()),
                other => {
                    return Err(type_error(
                        "park",
                        "opts.ringback as an extension id",
                        &other,
                    ));
                }
            }
        }
        other => return Err(type_error("park", "an options table or nil", other)),
    }
    Ok((slot, timeout, announce, ringback))
}

/// `call:unpark(slot)`.
fn unpark_arg(value: &Value) -> mlua::Result<u16> {
    number(value)
        .filter(|n| n.fract() == 0.0 && (1.0..=65535.0).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| type_error("unpark", "a slot number", value))
}

fn dial_args(targets: &Value, opts: &Value) -> mlua::Result<ScriptDial> {
    let expected = "a target string or a list of target strings";
    let targets = match targets {
        Value::String(s) => vec![s.to_str()?.to_owned()],
        Value::Table(list) => {
            let mut out = Vec::new();
            for target in list.sequence_values::<Value>() {
                match target? {
                    Value::String(s) => out.push(s.to_str()?.to_owned()),
                    other => return Err(type_error("dial", expected, &other)),
                }
            }
            out
        }
        other => return Err(type_error("dial", expected, other)),
    };
    if targets.is_empty() {
        return Err(mlua::Error::runtime("dial: no targets"));
    }
    let mut options = ScriptDial {
        targets,
        ..ScriptDial::default()
    };
    match opts {
        Value::Nil => {}
        Value::Table(opts) => {
            let timeout: Value = opts.get("timeout")?;
            if !timeout.is_nil() {
                let secs = number(&timeout)
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_SLEEP_SECS)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| type_error("dial", "opts.timeout in seconds", &timeout))?;
                options.timeout = Some(secs);
            }
            match opts.get::<Value>("caller_id")? {
                Value::Nil => {}
                Value::String(s) => options.caller_id = Some(s.to_str()?.to_owned()),
                other => return Err(type_error("dial", "opts.caller_id as a string", &other)),
            }
            match opts.get::<Value>("attest")? {
                Value::Nil => {}
                Value::String(s) if matches!(s.to_str()?.as_ref(), "A" | "B" | "C") => {
                    options.attest = Some(s.to_str()?.to_owned());
                }
                other => {
                    return Err(type_error(
                        "dial",
                        "opts.attest as \"A\", \"B\" or \"C\"",
                        &other,
                    ));
                }
            }
            match opts.get::<Value>("moh")? {
                Value::Nil => {}
                Value::String(s) => options.moh = Some(moh_class("dial", &s.to_str()?)?),
                other => return Err(type_error("dial", "opts.moh as a string", &other)),
            }
            options.confirm = crate::media::confirm_arg(&opts.get::<Value>("confirm")?)?;
            match opts.get::<Value>("headers")? {
                Value::Nil => {}
                Value::Table(headers) => {
                    for pair in headers.pairs::<Value, Value>() {
                        let (name, value) = pair?;
                        match (&name, &value) {
                            (Value::String(n), Value::String(v)) => {
                                let (n, v) = (n.to_str()?.to_owned(), v.to_str()?.to_owned());
                                check_header(&n, &v)?;
                                options.headers.push((n, v));
                            }
                            _ => {
                                return Err(type_error(
                                    "dial",
                                    "opts.headers as {name = value} strings",
                                    &value,
                                ));
                            }
                        }
                    }
                    options.headers.sort();
                }
                other => return Err(type_error("dial", "opts.headers as a table", &other)),
            }
        }
        other => return Err(type_error("dial", "an options table or nil", other)),
    }
    Ok(options)
}

/// A music-on-hold class name: a file stem in `sounds/moh/` (`A-Z a-z 0-9
/// _ -`, 1 to 64 bytes), so it can never name a path.
fn moh_class(what: &str, name: &str) -> mlua::Result<String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(mlua::Error::runtime(format!(
            "{what}: music-on-hold class {name:?} must be 1-64 letters, digits, _ or - (a file sounds/moh/NAME.wav)"
        )))
    }
}

/// A header for an outbound INVITE: the name a SIP token (RFC 3261 §25.1),
/// the value without line breaks or other control characters, so a script
/// cannot smuggle extra header lines.
fn check_header(name: &str, value: &str) -> mlua::Result<()> {
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(mlua::Error::runtime(format!(
            "dial: opts.headers: {name:?} is not a header name (letters, digits, -.!%*_+`'~)"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(mlua::Error::runtime(format!(
            "dial: opts.headers: the value of {name} must not contain line breaks or control characters"
        )));
    }
    Ok(())
}

/// A short Lua-like rendering of an action's argument for traces:
/// strings quoted, tables to `depth` levels, at most 80 characters.
fn repr(value: &Value, depth: usize) -> String {
    let mut out = match value {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Nil => "nil".to_owned(),
        Value::Table(t) if depth > 0 => {
            let mut parts = Vec::new();
            for pair in t.clone().pairs::<Value, Value>().take(8) {
                let Ok((k, v)) = pair else { break };
                match k {
                    Value::Integer(_) => parts.push(repr(&v, depth - 1)),
                    Value::String(k) => {
                        parts.push(format!("{} = {}", k.to_string_lossy(), repr(&v, depth - 1)))
                    }
                    _ => {}
                }
            }
            format!("{{{}}}", parts.join(", "))
        }
        Value::Table(_) => "{…}".to_owned(),
        other => other.type_name().to_owned(),
    };
    if out.chars().count() > 80 {
        out = out.chars().take(79).collect::<String>() + "…";
    }
    out
}

impl<A: CallApi> UserData for CallObject<A> {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.info.id.clone()));
        fields.add_field_method_get("from", |lua, this| tables::uri(lua, &this.info.from));
        fields.add_field_method_get("to", |lua, this| tables::uri(lua, &this.info.to));
        fields.add_field_method_get("request_uri", |lua, this| {
            tables::uri(lua, &this.info.request_uri)
        });
        fields.add_field_method_get("source", |lua, this| tables::source(lua, &this.info));
        fields.add_field_method_get("caller", |_, this| Ok(this.info.caller.clone()));
        fields.add_field_method_get("context", |_, this| Ok(this.info.context.clone()));
        // `{by = "1002", target = "1003"}` when a blind transfer brought
        // the call here (the target is the call's To); in
        // `on_transfer_failed`, also `status = "busy"` (how the target's
        // dial ended).
        fields.add_field_method_get("transfer", |lua, this| match &this.info.transferred_by {
            Some(by) => {
                let t = lua.create_table()?;
                t.raw_set("by", by.as_str())?;
                t.raw_set("target", this.info.to.user.as_str())?;
                t.raw_set("status", this.info.transfer_failed.map(DialStatus::as_str))?;
                Ok(Some(t))
            }
            None => Ok(None),
        });
        fields.add_field_method_get("trunk", |_, this| Ok(this.info.trunk.clone()));
        fields.add_field_method_get("did", |_, this| Ok(this.info.did.clone()));
        // `{verified = true|false, attest = "A"|"B"|"C", reason = "..."}`
        // for a trunk call whose Identity was checked (STIR/SHAKEN).
        fields.add_field_method_get("identity", |lua, this| match &this.info.identity {
            Some(id) => {
                let t = lua.create_table()?;
                t.raw_set("verified", id.verified)?;
                t.raw_set("attest", id.attest.clone())?;
                t.raw_set("reason", id.reason.clone())?;
                Ok(Some(t))
            }
            None => Ok(None),
        });
        fields.add_field_method_get("state", |_, this| Ok(this.state()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("is_up", |_, this, ()| Ok(this.state() == "answered"));
        methods.add_method("header", |_, this, name: Value| {
            let name = header_arg(&name)?;
            Ok(this.info.headers.get(&name).map(str::to_owned))
        });
        methods.add_method("on_hangup", |_, this, handler: Value| {
            let Value::Function(handler) = handler else {
                return Err(type_error("on_hangup", "a function", &handler));
            };
            let mut handlers = this.handlers.lock().unwrap_or_else(PoisonError::into_inner);
            if handlers.len() >= MAX_HANGUP_HANDLERS {
                return Err(mlua::Error::runtime(format!(
                    "on_hangup: at most {MAX_HANGUP_HANDLERS} handlers per call"
                )));
            }
            handlers.push(handler);
            Ok(())
        });
        // Each async method's future is boxed: mlua's wrapper keeps room
        // for the future it is given twice (as given and as awaited), and a
        // `dial` waits as long as its call is up.
        methods.add_async_method("redirect", |lua, this, uri: Value| {
            this.step(&lua, "redirect", &[&uri]);
            let started = redirect_arg(&uri).and_then(|uri| Ok((this.begin()?, uri)));
            Box::pin(async move {
                let (action, uri) = started?;
                let result = action
                    .run("redirect", |api| {
                        let uri = uri.clone();
                        async move { api.redirect(uri).await }
                    })
                    .await;
                action.finish(result, |p, _| p.ended = Some(Ended::Redirected(uri)))
            })
        });
        methods.add_async_method("ring", |lua, this, ()| {
            this.step(&lua, "ring", &[]);
            let action = this.begin();
            Box::pin(async move {
                let action = action?;
                let result = action
                    .run("ring", |api| async move { api.ring().await })
                    .await;
                action.finish(result, |_, _| {})
            })
        });
        methods.add_async_method("answer", |lua, this, ()| {
            this.step(&lua, "answer", &[]);
            let action = this.begin();
            Box::pin(async move {
                let action = action?;
                let result = action
                    .run("answer", |api| async move { api.answer().await })
                    .await;
                action.finish(result, |p, _| p.answered = true)
            })
        });
        methods.add_async_method("reject", |lua, this, (code, reason): (Value, Value)| {
            this.step(&lua, "reject", &[&code, &reason]);
            let started = reject_args(&code, &reason).and_then(|args| Ok((this.begin()?, args)));
            Box::pin(async move {
                let (action, (code, reason)) = started?;
                let result = action
                    .run(
                        "reject",
                        |api| async move { api.reject(code, reason).await },
                    )
                    .await;
                action.finish(result, |p, _| p.ended = Some(Ended::Rejected(code)))
            })
        });
        methods.add_async_method("hangup", |lua, this, ()| {
            this.step(&lua, "hangup", &[]);
            let action = this.begin();
            Box::pin(async move {
                let action = action?;
                let result = action
                    .run("hangup", |api| async move { api.hangup().await })
                    .await;
                action.finish(result, |p, _| p.ended = Some(Ended::HungUp))
            })
        });
        methods.add_async_method("sleep", |lua, this, secs: Value| {
            this.step(&lua, "sleep", &[&secs]);
            let started = sleep_arg(&secs).and_then(|d| Ok((this.begin()?, d)));
            Box::pin(async move {
                let (action, duration) = started?;
                let result = action
                    .run("sleep", |api| async move { api.sleep(duration).await })
                    .await;
                action.finish(result, |_, _| {})
            })
        });
        methods.add_async_method("dial", |lua, this, (targets, opts): (Value, Value)| {
            this.step(&lua, "dial", &[&targets, &opts]);
            let started = dial_args(&targets, &opts).and_then(|args| Ok((this.begin()?, args)));
            Box::pin(async move {
                let (action, request) = started?;
                // Boxed: the action's task keeps what its future captures
                // for as long as the dial lasts.
                let request = Box::new(request);
                let result = action
                    .run("dial", |api| async move { api.dial(*request).await })
                    .await;
                action.finish_dial(&lua, result)
            })
        });
        methods.add_async_method("play", |lua, this, (file, opts): (Value, Value)| {
            if opts.is_nil() {
                this.step(&lua, "play", &[&file]);
            } else {
                this.step(&lua, "play", &[&file, &opts]);
            }
            let started = play_args(&file, &opts).and_then(|f| Ok((this.begin()?, f)));
            Box::pin(async move {
                let (action, (file, interrupt)) = started?;
                if !interrupt {
                    let result = action
                        .run("play", |api| async move { api.play(file).await })
                        .await;
                    return action.finish(result, |_, _| {}).map(|()| None);
                }
                let result = action
                    .run(
                        "play",
                        |api| async move { api.play_interruptible(file).await },
                    )
                    .await;
                action
                    .finish(result, |_, _| {})
                    .map(|key| key.map(String::from))
            })
        });
        methods.add_async_method("record", |lua, this, (file, opts): (Value, Value)| {
            this.step(&lua, "record", &[&file, &opts]);
            let started = record_args(&file, &opts).and_then(|args| Ok((this.begin()?, args)));
            Box::pin(async move {
                let (action, (file, opts)) = started?;
                let result = action
                    .run("record", |api| async move { api.record(file, opts).await })
                    .await;
                let result = action.finish(result, |p, r| {
                    if r.reason == RecordEnd::Hangup {
                        p.ended.get_or_insert(Ended::CallerGone);
                    }
                })?;
                record_table(&lua, &result)
            })
        });
        methods.add_async_method("read_digits", |lua, this, opts: Value| {
            this.step(&lua, "read_digits", &[&opts]);
            let started = digit_args(&opts).and_then(|opts| Ok((this.begin()?, opts)));
            Box::pin(async move {
                let (action, opts) = started?;
                let result = action
                    .run(
                        "read_digits",
                        |api| async move { api.read_digits(opts).await },
                    )
                    .await;
                action.finish(result, |_, _| {})
            })
        });
        methods.add_async_method("hold", |lua, this, class: Value| {
            this.step(&lua, "hold", &[&class]);
            let class = match &class {
                Value::Nil => Ok(None),
                Value::String(s) => s.to_str().and_then(|s| moh_class("hold", &s).map(Some)),
                other => Err(type_error(
                    "hold",
                    "a music-on-hold class name or nil",
                    other,
                )),
            };
            let started = class.and_then(|c| Ok((this.begin()?, c)));
            Box::pin(async move {
                let (action, class) = started?;
                let result = action
                    .run("hold", |api| async move { api.hold(class).await })
                    .await;
                action.finish(result, |_, _| {})
            })
        });
        methods.add_async_method("park", |lua, this, opts: Value| {
            this.step(&lua, "park", &[&opts]);
            let started = park_args(&opts).and_then(|args| Ok((this.begin()?, args)));
            Box::pin(async move {
                let (action, (slot, timeout, announce, ringback)) = started?;
                let result = action
                    .run("park", |api| async move {
                        api.park(slot, timeout, announce, ringback).await
                    })
                    .await;
                action.finish(result, |p, _| {
                    p.answered = true;
                    p.ended = Some(Ended::Parked);
                })
            })
        });
        methods.add_async_method("pickup", |lua, this, target: Value| {
            this.step(&lua, "pickup", &[&target]);
            let target = match &target {
                Value::Nil => Ok(None),
                Value::String(s) => s.to_str().map(|s| Some(s.to_owned())),
                other => Err(type_error("pickup", "an extension id or nil", other)),
            };
            let started = target.and_then(|t| Ok((this.begin()?, t)));
            Box::pin(async move {
                let (action, target) = started?;
                let result = action
                    .run("pickup", |api| async move { api.pickup(target).await })
                    .await;
                action.finish_dial(&lua, result)
            })
        });
        methods.add_async_method("unpark", |lua, this, slot: Value| {
            this.step(&lua, "unpark", &[&slot]);
            let started = unpark_arg(&slot).and_then(|slot| Ok((this.begin()?, slot)));
            Box::pin(async move {
                let (action, slot) = started?;
                let result = action
                    .run("unpark", |api| async move { api.unpark(slot).await })
                    .await;
                action.finish_dial(&lua, result)
            })
        });
        methods.add_async_method("unhold", |lua, this, ()| {
            this.step(&lua, "unhold", &[]);
            let action = this.begin();
            Box::pin(async move {
                let action = action?;
                let result = action
                    .run("unhold", |api| async move { api.unhold().await })
                    .await;
                action.finish(result, |_, _| {})
            })
        });
        methods.add_async_method("echo", |lua, this, ()| {
            this.step(&lua, "echo", &[]);
            let action = this.begin();
            Box::pin(async move {
                let action = action?;
                let result = action
                    .run("echo", |api| async move { api.echo().await })
                    .await;
                // Echo lasts until the call ends: whatever came back, it is over.
                action.finish(result, |p, _| {
                    p.ended.get_or_insert(Ended::CallerGone);
                })
            })
        });
    }
}

/// Installs `log.debug/info/warn/error`: arguments joined by spaces, logged
/// with the running call's id and context and the script's `file:line`.
pub(crate) fn install_log(lua: &Lua, slot: &Arc<Slot>) -> mlua::Result<()> {
    let log = lua.create_table()?;
    for level in ["debug", "info", "warn", "error"] {
        let slot = Arc::clone(slot);
        let f = lua.create_function(move |lua, args: mlua::MultiValue| {
            // The Call-ID comes with the call's span (the route future is
            // instrumented with it), not as a field of its own.
            let scope = slot.running();
            let context = &scope.context;
            let mut text = String::new();
            for (i, value) in args.iter().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                match value {
                    Value::String(s) => text.push_str(&s.to_string_lossy()),
                    other => text.push_str(&other.to_string()?),
                }
            }
            let place = lua
                .inspect_stack(1, |d| {
                    let file = d.source().short_src.map(|s| s.into_owned());
                    (file, d.current_line())
                })
                .and_then(|(file, line)| Some(format!("{}:{}", file?, line?)))
                .unwrap_or_default();
            match level {
                "debug" => {
                    tracing::debug!(target: "dialplan", context = %context, "{place}: {text}")
                }
                "info" => tracing::info!(target: "dialplan", context = %context, "{place}: {text}"),
                "warn" => tracing::warn!(target: "dialplan", context = %context, "{place}: {text}"),
                _ => tracing::error!(target: "dialplan", context = %context, "{place}: {text}"),
            }
            Ok(())
        })?;
        log.raw_set(level, f)?;
    }
    lua.globals().raw_set("log", log)
}

/// Stops a call's Lua that the runtime stopped (over its instruction
/// budget or its time limit): the hook suspended the coroutine (see
/// `sandbox.rs`), and instead of resuming it this ends with the error. The
/// suspended coroutine is dropped with its stack intact. (A coroutine the
/// hook only paused for other calls' turn is not stopped: it is resumed.)
pub(crate) struct Budgeted<'a, F> {
    scope: &'a Scope,
    inner: Pin<Box<F>>,
}

impl<'a, F> Budgeted<'a, F> {
    pub(crate) fn new(scope: &'a Scope, inner: F) -> Self {
        Self {
            scope,
            inner: Box::pin(inner),
        }
    }
}

impl<T, F: Future<Output = mlua::Result<T>>> Future for Budgeted<'_, F> {
    type Output = mlua::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.as_mut().poll(cx) {
            // Suspended by the hook, or finished although it was stopped
            // (a script that caught the error): either way, stopped.
            Poll::Pending | Poll::Ready(Ok(_)) if self.scope.budget.stopped().is_some() => {
                let budget = &self.scope.budget;
                let error = match budget.stopped() {
                    Some(why) => budget.stop_error(why),
                    None => mlua::Error::runtime(""),
                };
                Poll::Ready(Err(error))
            }
            other => other,
        }
    }
}

impl CallState {
    /// Runs the call's context: its top level, then `route(call)` as an
    /// async coroutine whose call actions go to `api`. Whatever the script
    /// does — errors, endless loops, memory bombs — ends in an outcome, and
    /// a failure is logged once with context, `file:line`, message and
    /// Call-ID (traceback at debug).
    ///
    /// Before it returns, the `call:on_hangup` handlers run (in order, each
    /// as `handler(call, outcome)` with [`RouteOutcome::as_str`] and a fresh
    /// instruction budget; actions raise "call has ended"; an error is
    /// logged with `file:line` and the next handler still runs). So when
    /// this returns, the script is completely done with the call and the
    /// call model finishes it (404, 500, BYE) as the outcome says.
    ///
    /// The Lua runs on the Lua thread pool (`pool.rs`), the actions on the
    /// runtime this is awaited on; dropping the returned future stops the
    /// route.
    pub async fn run_route<A: CallApi>(self, api: Arc<A>, info: CallDetails) -> RouteOutcome {
        self.start_route(api, info).await
    }

    /// [`run_route`](Self::run_route), with the route started on the Lua
    /// thread pool now: the future returned only waits for its outcome,
    /// so it is small (it lives as long as the call does). Must be called
    /// inside a tokio runtime for the pool to be used; else the route runs
    /// wherever the future is polled.
    pub fn start_route<A: CallApi>(
        self,
        api: Arc<A>,
        info: CallDetails,
    ) -> Pin<Box<dyn Future<Output = RouteOutcome> + Send + 'static>> {
        let main = tokio::runtime::Handle::try_current().ok();
        let Some(pool) = crate::pool::handle().filter(|_| main.is_some()) else {
            return Box::pin(self.run_route_here(api, Box::new(info), main));
        };
        // What the failure of the task itself needs, boxed together.
        let names = Box::new((format!("dialplans/{}.lua", info.context), info.id.clone()));
        // The call's span goes with the route to the Lua thread (its log
        // lines and actions carry the Call-ID).
        let task = crate::pool::AbortOnDrop(
            pool.spawn(
                self.run_route_here(api, Box::new(info), main)
                    .in_current_span(),
            ),
        );
        Box::pin(async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(e) => {
                    let (context_file, call_id) = *names;
                    let failure = LuaFailure {
                        kind: FailureKind::Error,
                        file: context_file,
                        line: None,
                        message: format!("the route's Lua task failed: {e}"),
                        traceback: None,
                    };
                    tracing::error!(target: "dialplan", "dialplan {failure} — call {call_id} gets 500");
                    RouteOutcome::Failed {
                        failure,
                        answered: false,
                    }
                }
            }
        })
    }

    /// [`CallState::run_route`] on the thread this is polled on.
    async fn run_route_here<A: CallApi>(
        self,
        api: Arc<A>,
        // Boxed: the future would keep room for it twice.
        info: Box<CallDetails>,
        main: Option<tokio::runtime::Handle>,
    ) -> RouteOutcome {
        let progress: Shared = Arc::default();
        let context_file = format!("dialplans/{}.lua", info.context);
        let call_id = info.id.clone();
        let context = info.context.clone();
        let scope = Arc::new(Scope::new(&self.limits, &call_id, &context));
        let handlers: Arc<Mutex<Vec<Function>>> = Arc::default();
        let Some(state) = self.live.state(&context) else {
            let e = mlua::Error::runtime(format!(
                "dialplans/{context}.lua:0: no such context in generation {}",
                self.live.generation.number
            ));
            let outcome = self.outcome(
                Err(e),
                Progress::default(),
                &scope,
                &context_file,
                &call_id,
                &context,
            );
            return outcome;
        };
        // A failed transfer's call goes to the context's
        // `on_transfer_failed`, when it has one, instead of `route`.
        let entry = match (info.transfer_failed, &state.on_transfer_failed) {
            (Some(_), Some(hook)) => hook.clone(),
            _ => state.route.clone(),
        };
        let call = CallObject {
            api,
            main,
            info: *info,
            progress: Arc::clone(&progress),
            scope: Arc::clone(&scope),
            handlers: Arc::clone(&handlers),
        };
        let create = async { state.lua.create_userdata(call) };
        let (call, result) = match Scoped::new(state, &scope, create).await {
            Ok(call) => {
                let run = async {
                    let thread = state.coroutine(entry)?;
                    scope
                        .main
                        .store(thread.to_pointer() as usize, Ordering::Relaxed);
                    let result = thread.clone().into_async::<()>(call.clone())?.await;
                    state.finished(thread);
                    result
                };
                let result = Scoped::new(state, &scope, Budgeted::new(&scope, run)).await;
                (Some(call), result)
            }
            Err(e) => (None, Err(e)),
        };
        if result.as_ref().is_err_and(is_memory_error) {
            // Give the memory back now, before the next call in this state
            // needs it.
            let collect = async { state.lua.gc_collect() };
            let _ = Scoped::new(state, &scope, collect).await;
        }
        let progress = {
            let mut shared = lock(&progress);
            shared.closed = true;
            shared.clone()
        };
        let outcome = self.outcome(result, progress, &scope, &context_file, &call_id, &context);
        let handlers =
            std::mem::take(&mut *handlers.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(call) = call {
            // Boxed: the route's future (kept for the whole call) would
            // otherwise have room for the handlers' state all along.
            Box::pin(self.run_hangup_handlers(
                state,
                &scope,
                call,
                handlers,
                &outcome,
                &context_file,
            ))
            .await;
        }
        outcome
    }

    /// What `route`'s result and the call's progress add up to; a failure
    /// is logged and counted here.
    fn outcome(
        &self,
        result: mlua::Result<()>,
        progress: Progress,
        scope: &Scope,
        context_file: &str,
        call_id: &str,
        context: &str,
    ) -> RouteOutcome {
        match result {
            Ok(()) => match progress.ended {
                Some(Ended::Rejected(code)) => RouteOutcome::Rejected { code },
                Some(Ended::Redirected(uri)) => RouteOutcome::Redirected { uri },
                Some(Ended::HungUp) => RouteOutcome::HungUp,
                Some(Ended::Bridged) => RouteOutcome::Bridged,
                Some(Ended::CallerGone) => RouteOutcome::CallerGone,
                Some(Ended::Parked) => RouteOutcome::Parked,
                None if progress.answered => RouteOutcome::Answered,
                None => RouteOutcome::NotAnswered,
            },
            Err(_) if progress.ended == Some(Ended::CallerGone) => RouteOutcome::CallerGone,
            Err(e) => {
                let failure = failure(&e, scope, context_file);
                metrics::counter!("dialplan_lua_errors_total", "kind" => failure.kind.as_str())
                    .increment(1);
                tracing::error!(
                    target: "dialplan",
                    context = %context,
                    generation = self.live.generation.number,
                    "dialplan {failure} — call {call_id} gets {}",
                    if progress.answered { "a hangup" } else { "500" }
                );
                if let Some(traceback) = &failure.traceback {
                    tracing::debug!(target: "dialplan", "{traceback}");
                }
                RouteOutcome::Failed {
                    failure,
                    answered: progress.answered,
                }
            }
        }
    }

    /// Runs the `on_hangup` handlers in the order they were registered, each
    /// as `handler(call, outcome)` with a fresh instruction budget. Call
    /// actions raise "call has ended"; an error in one is logged (and
    /// counted) and the next still runs.
    async fn run_hangup_handlers(
        &self,
        state: &SharedState,
        scope: &Arc<Scope>,
        call: AnyUserData,
        handlers: Vec<Function>,
        outcome: &RouteOutcome,
        context_file: &str,
    ) {
        for (i, handler) in handlers.into_iter().enumerate() {
            scope.budget.restart();
            let run = async {
                let thread = state.lua.create_thread(handler)?;
                scope
                    .main
                    .store(thread.to_pointer() as usize, Ordering::Relaxed);
                thread
                    .into_async::<()>((call.clone(), outcome.as_str()))?
                    .await
            };
            let result = Scoped::new(state, scope, Budgeted::new(scope, run)).await;
            if let Err(e) = result {
                let failure = failure(&e, scope, context_file);
                metrics::counter!("dialplan_lua_errors_total", "kind" => failure.kind.as_str())
                    .increment(1);
                tracing::error!(
                    target: "dialplan",
                    context = %scope.context,
                    generation = self.live.generation.number,
                    "dialplan {failure} — in on_hangup handler {} of call {}; the other handlers still run",
                    i + 1,
                    scope.call_id
                );
                if let Some(traceback) = &failure.traceback {
                    tracing::debug!(target: "dialplan", "{traceback}");
                }
            }
        }
        // Dropping Lua values takes the state's lock inside mlua: do it
        // while this call holds the state.
        let drop_call = async move { drop(call) };
        Scoped::new(state, scope, drop_call).await;
    }
}

impl CallState {
    /// Runs the global hook `name` of `context` (a function the context
    /// defines beside `route`, such as `on_subscribe(ext, event, target)`)
    /// with string arguments, under the same instruction budget and time
    /// limit as a route. `Ok(None)` if the context (or the hook) is not
    /// defined; `Ok(Some(v))` with whether it returned a truthy value; a
    /// failure (error, budget, time) is logged with `file:line` and
    /// returned.
    pub async fn run_hook(
        self,
        context: String,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<Option<bool>, LuaFailure> {
        let main = tokio::runtime::Handle::try_current().ok();
        match crate::pool::handle().filter(|_| main.is_some()) {
            Some(pool) => {
                let task = pool.spawn(self.run_hook_here(context, name, args).in_current_span());
                match crate::pool::AbortOnDrop(task).await {
                    Ok(result) => result,
                    Err(e) => Err(LuaFailure {
                        kind: FailureKind::Error,
                        file: String::new(),
                        line: None,
                        message: format!("the {name} hook's Lua task failed: {e}"),
                        traceback: None,
                    }),
                }
            }
            None => self.run_hook_here(context, name, args).await,
        }
    }

    async fn run_hook_here(
        self,
        context: String,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<Option<bool>, LuaFailure> {
        let Some(state) = self.live.state(&context) else {
            return Ok(None);
        };
        let context_file = format!("dialplans/{context}.lua");
        let scope = Arc::new(Scope::new(&self.limits, name, &context));
        let run = async {
            let hook = match state.lua.globals().get::<Value>(name)? {
                Value::Function(f) => f,
                _ => return Ok(None),
            };
            let thread = state.lua.create_thread(hook)?;
            scope
                .main
                .store(thread.to_pointer() as usize, Ordering::Relaxed);
            let args = mlua::MultiValue::from_iter(
                args.iter()
                    .map(|a| state.lua.create_string(a).map(Value::String))
                    .collect::<mlua::Result<Vec<_>>>()?,
            );
            let value: Value = thread.into_async::<Value>(args)?.await?;
            Ok(Some(!matches!(value, Value::Nil | Value::Boolean(false))))
        };
        match Scoped::new(state, &scope, Budgeted::new(&scope, run)).await {
            Ok(v) => Ok(v),
            Err(e) => {
                let f = failure(&e, &scope, &context_file);
                tracing::error!(target: "dialplan", context = %context, "dialplan {f} — in {name}");
                Err(f)
            }
        }
    }
}

/// Waiting for a state's lock.
type Acquiring = Pin<Box<dyn Future<Output = tokio::sync::OwnedMutexGuard<()>> + Send>>;

/// A call's Lua running in a shared state: each poll takes the state's
/// lock (a fair, FIFO wait: no spinning, and a call paused for others'
/// turn queues behind them) and marks the call as the one running (for the
/// instruction budget, the time slice and `log`), never across a wait, so
/// other calls' coroutines run in between.
pub(crate) struct Scoped<'a, F> {
    slot: &'a Slot,
    scope: &'a Arc<Scope>,
    inner: Pin<Box<F>>,
    acquiring: Option<Acquiring>,
}

impl<'a, F: Future> Scoped<'a, F> {
    pub(crate) fn new(state: &'a SharedState, scope: &'a Arc<Scope>, inner: F) -> Self {
        Self {
            slot: &state.slot,
            scope,
            inner: Box::pin(inner),
            acquiring: None,
        }
    }
}

impl<F: Future> Future for Scoped<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _guard = match this.acquiring.take() {
            Some(mut acquiring) => match acquiring.as_mut().poll(cx) {
                Poll::Ready(guard) => guard,
                Poll::Pending => {
                    this.acquiring = Some(acquiring);
                    return Poll::Pending;
                }
            },
            // Free: take it (no one is queued, or it would not be free).
            None => match Arc::clone(&this.slot.lock).try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    // Another call's Lua runs in this state: queue for it.
                    let mut acquiring: Acquiring =
                        Box::pin(Arc::clone(&this.slot.lock).lock_owned());
                    match acquiring.as_mut().poll(cx) {
                        Poll::Ready(guard) => guard,
                        Poll::Pending => {
                            this.acquiring = Some(acquiring);
                            return Poll::Pending;
                        }
                    }
                }
            },
        };
        this.slot.mark_held();
        this.slot.current.store(Some(Arc::clone(this.scope)));
        let result = this.inner.as_mut().poll(cx);
        this.slot.current.store(None);
        result
    }
}

/// The failure `error` was, for the call with `scope`.
pub(crate) fn failure(error: &mlua::Error, scope: &Scope, context_file: &str) -> LuaFailure {
    let kind = match scope.budget.stopped() {
        Some(crate::sandbox::Stop::Budget) => FailureKind::InstructionBudget,
        Some(_) => FailureKind::TimeLimit,
        None => FailureKind::Error,
    };
    let kind = if kind != FailureKind::Error {
        kind
    } else if is_memory_error(error) {
        FailureKind::MemoryLimit
    } else if is_retry_later(error) {
        FailureKind::Unavailable
    } else {
        FailureKind::Error
    };
    let located = locate(error);
    let (file, line, message, traceback) = match located.place {
        Some((file, line)) => (file, Some(line), located.message, located.traceback),
        None => (
            context_file.to_owned(),
            None,
            located.message,
            located.traceback,
        ),
    };
    let message = match kind {
        FailureKind::MemoryLimit => format!("memory limit reached ({message})"),
        _ => message,
    };
    LuaFailure {
        kind,
        file,
        line: line.filter(|l| *l > 0),
        message,
        traceback,
    }
}

fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// Whether `error` is a host call's temporary failure ([`RetryLater`]).
fn is_retry_later(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::ExternalError(e) => e.downcast_ref::<crate::host::RetryLater>().is_some(),
        mlua::Error::CallbackError { cause, .. } => is_retry_later(cause),
        mlua::Error::WithContext { cause, .. } => is_retry_later(cause),
        _ => false,
    }
}

/// A Lua error taken apart: where (if Lua said), what, and the traceback.
pub(crate) struct Located {
    /// The chunk and line, from the message or else the traceback's first
    /// script frame.
    pub(crate) place: Option<(String, u32)>,
    /// The message without its `file:line:` prefix.
    pub(crate) message: String,
    /// The traceback, if any.
    pub(crate) traceback: Option<String>,
}

/// Takes a Lua error apart into [`Located`].
pub(crate) fn locate(error: &mlua::Error) -> Located {
    let text = innermost_message(error);
    let (message, mut traceback) = split_traceback(&text);
    if traceback.is_none() {
        traceback = callback_traceback(error);
    }
    match split_location(message) {
        Some((file, line, rest)) => Located {
            place: Some((file.to_owned(), line)),
            message: rest.to_owned(),
            traceback,
        },
        None => Located {
            place: traceback.as_deref().and_then(first_script_frame),
            message: message.to_owned(),
            traceback,
        },
    }
}

/// The message of the error that started it all, through callback layers.
fn innermost_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => innermost_message(cause),
        mlua::Error::WithContext { cause, .. } => innermost_message(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn callback_traceback(error: &mlua::Error) -> Option<String> {
    match error {
        mlua::Error::CallbackError { traceback, cause } => {
            callback_traceback(cause).or_else(|| Some(traceback.clone()))
        }
        mlua::Error::WithContext { cause, .. } => callback_traceback(cause),
        _ => None,
    }
}

/// Splits `message\nstack traceback:\n...` into its two parts.
fn split_traceback(text: &str) -> (&str, Option<String>) {
    match text.find("\nstack traceback:") {
        Some(i) => (&text[..i], Some(text[i + 1..].to_owned())),
        None => (text, None),
    }
}

/// `file.lua:12: rest` → (`file.lua`, 12, `rest`).
fn split_location(message: &str) -> Option<(&str, u32, &str)> {
    for (i, _) in message.match_indices(':') {
        let file = &message[..i];
        let rest = &message[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with(':') {
            continue;
        }
        if !file.ends_with(".lua") || file.contains(char::is_whitespace) {
            return None;
        }
        let line = rest[..digits].parse().ok()?;
        return Some((file, line, rest[digits + 1..].trim_start()));
    }
    None
}

/// The first frame of a traceback that is in a script file.
fn first_script_frame(traceback: &str) -> Option<(String, u32)> {
    traceback.lines().find_map(|line| {
        let (file, line, _) = split_location(line.trim_start())?;
        Some((file.to_owned(), line))
    })
}
