//! Call queues' state (issue 16, the `queue` plugin): callers waiting in
//! order, agents (static and logged in) with their last call, calls taken,
//! wrap-up and in-call flag, and answered/abandoned counts. It lives in the
//! [`Host`](crate::Host), outside any generation, so a route still running
//! in an old generation and new calls in the new one see the same queue
//! after a reload; the admin API and the metrics read [`Queues::snapshot`].
//! `plugins/queue.lua` drives it through the `queues` Lua module installed
//! here; the waiting, music and ringing are the plugin's call actions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mlua::{Lua, Table, Value};

use crate::host::SharedHost;
use crate::modules::text_arg;

/// Longest queue name, in bytes.
const MAX_NAME: usize = 64;
/// Longest extension id, in bytes.
const MAX_EXT: usize = 64;
/// The most queues one host keeps.
const MAX_QUEUES: usize = 256;
/// The most agents (static and logged in) one queue keeps.
const MAX_AGENTS: usize = 1024;
/// A waiting caller whose route has not looked at the queue for this long
/// (it polls every second or so while it waits) is gone: its route was
/// stopped without leaving. It counts as abandoned.
const STALE_MS: u64 = 30_000;

/// How a queue picks the agents to ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Every free agent at once.
    #[default]
    RingAll,
    /// One agent at a time, taking turns.
    RoundRobin,
    /// The free agent whose last queue call ended longest ago.
    LeastRecent,
    /// The free agent that took the fewest calls.
    FewestCalls,
}

impl Strategy {
    /// The strategy named as in `queue.define` (`"ringall"`, …).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ringall" => Some(Self::RingAll),
            "roundrobin" => Some(Self::RoundRobin),
            "leastrecent" => Some(Self::LeastRecent),
            "fewestcalls" => Some(Self::FewestCalls),
            _ => None,
        }
    }

    /// Its name, as `queue.define` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RingAll => "ringall",
            Self::RoundRobin => "roundrobin",
            Self::LeastRecent => "leastrecent",
            Self::FewestCalls => "fewestcalls",
        }
    }
}

/// A queue's settings (`queue.define(name, opts)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How agents are picked.
    pub strategy: Strategy,
    /// The static members (always agents unless logged out with `*45`).
    pub members: Vec<String>,
    /// How long after a queue call an agent is not offered another.
    pub wrapup: Duration,
    /// How many callers may wait at once (`None`: no limit).
    pub max_callers: Option<usize>,
    /// Whether a caller who arrives when no agent is logged in is refused
    /// (the exit runs) instead of waiting.
    pub leave_when_empty: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::RingAll,
            members: Vec::new(),
            wrapup: Duration::ZERO,
            max_callers: None,
            leave_when_empty: false,
        }
    }
}

/// Why a caller could not join a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No `queue.define` made it.
    #[error("no such queue: define it with queue.define at a context's top level")]
    NoSuchQueue,
    /// `max_callers` are waiting already.
    #[error("the queue is full")]
    Full,
    /// Nobody is logged in and the queue refuses callers then.
    #[error("no agent is logged in")]
    Empty,
}

impl JoinError {
    /// The reason the exit gets (`"full"`, `"empty"`, `"undefined"`).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoSuchQueue => "undefined",
            Self::Full => "full",
            Self::Empty => "empty",
        }
    }
}

#[derive(Debug, Clone)]
struct Caller {
    ticket: u64,
    call_id: String,
    from: String,
    entered_ms: u64,
    seen_ms: u64,
    /// The agents ringing for it now (empty: waiting).
    ringing: Vec<String>,
    /// Agents tried this round (not rung again until every free one was).
    tried: Vec<String>,
    /// When the agents ringing now were offered it: the end of its wait
    /// if one of them answers (the dial returns only when that call
    /// ends, so its end is no measure of the wait).
    offered_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Agent {
    is_static: bool,
    logged_in: bool,
    last_call_ms: Option<u64>,
    calls_taken: u64,
    wrapup_until_ms: u64,
    in_call: bool,
}

#[derive(Debug, Clone, Default)]
struct Queue {
    config: QueueConfig,
    callers: Vec<Caller>,
    agents: BTreeMap<String, Agent>,
    answered: u64,
    abandoned: u64,
    /// The agent rung last (round robin goes on after it).
    last_rung: Option<String>,
    /// Sum of the waits of answered callers, for the estimate.
    answered_wait_ms: u64,
}

impl Queue {
    fn position(&self, ticket: u64) -> Option<usize> {
        self.callers.iter().position(|c| c.ticket == ticket)
    }

    fn agent_free(&self, ext: &str, now_ms: u64) -> bool {
        self.agents
            .get(ext)
            .is_some_and(|a| a.logged_in && !a.in_call && a.wrapup_until_ms <= now_ms)
    }

    fn logged_in(&self) -> usize {
        self.agents.values().filter(|a| a.logged_in).count()
    }

    /// Callers gone silent (see [`STALE_MS`]) leave as abandoned.
    fn reap(&mut self, now_ms: u64) {
        let before = self.callers.len();
        // A caller being rung for is in a dial, which may last a whole
        // conversation: it is not stale.
        self.callers
            .retain(|c| now_ms.saturating_sub(c.seen_ms) <= STALE_MS || !c.ringing.is_empty());
        self.abandoned += (before - self.callers.len()) as u64;
    }

    /// The agents to ring for the caller at `index`, per strategy.
    fn pick(&mut self, index: usize, now_ms: u64) -> Vec<String> {
        let free: Vec<String> = self
            .agents
            .keys()
            .filter(|ext| self.agent_free(ext, now_ms))
            .cloned()
            .collect();
        if free.is_empty() {
            return Vec::new();
        }
        let caller = &mut self.callers[index];
        if free.iter().all(|ext| caller.tried.contains(ext)) {
            caller.tried.clear();
        }
        let untried: Vec<String> = free
            .into_iter()
            .filter(|ext| !caller.tried.contains(ext))
            .collect();
        let chosen = match self.config.strategy {
            Strategy::RingAll => return untried,
            Strategy::RoundRobin => {
                let after = self.last_rung.clone();
                untried
                    .iter()
                    .find(|ext| after.as_ref().is_none_or(|last| *ext > last))
                    .or_else(|| untried.first())
                    .cloned()
            }
            Strategy::LeastRecent => untried
                .iter()
                .min_by_key(|ext| self.agents.get(*ext).and_then(|a| a.last_call_ms))
                .cloned(),
            Strategy::FewestCalls => untried
                .iter()
                .min_by_key(|ext| self.agents.get(*ext).map_or(0, |a| a.calls_taken))
                .cloned(),
        };
        chosen.into_iter().collect()
    }
}

/// What a waiting caller is told (`queues.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerStatus {
    /// 1 for the next caller to be served.
    pub position: usize,
    /// How long it has waited.
    pub waited: Duration,
    /// The estimated wait left (average wait of answered callers times
    /// the position), if any caller was answered yet.
    pub estimate: Option<Duration>,
}

/// A caller in [`QueueSnapshot`]: waiting, or being connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerSnapshot {
    /// 1 for the next caller to be served (0 for one being connected).
    pub position: usize,
    /// The call's id.
    pub call_id: String,
    /// Who is calling (the From URI).
    pub from: String,
    /// When it entered the queue (Unix ms).
    pub entered_ms: u64,
    /// How long it has waited, in seconds.
    pub wait_seconds: u64,
    /// The agents rung for it, or talking to it (empty while it waits).
    pub agents: Vec<String>,
}

/// An agent in [`QueueSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    /// The extension.
    pub ext: String,
    /// A static member (`members` of `queue.define`), else logged in by `*45`.
    pub is_static: bool,
    /// `"available"`, `"in_call"` (rung by the queue or talking),
    /// `"wrapup"`, `"logged_out"`.
    pub state: &'static str,
    /// When its last queue call ended (Unix ms).
    pub last_call_ms: Option<u64>,
    /// Queue calls it took.
    pub calls_taken: u64,
    /// Until when it is in wrap-up (Unix ms), if it is.
    pub wrapup_until_ms: Option<u64>,
}

/// One queue as the admin API shows it (`GET /api/v1/queues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The queue's name.
    pub name: String,
    /// Its strategy.
    pub strategy: &'static str,
    /// Callers waiting, in order.
    pub callers: Vec<CallerSnapshot>,
    /// Callers whose agents are being rung, or who talk to one (the
    /// queue learns that the call is over, not that it was answered).
    pub connecting: Vec<CallerSnapshot>,
    /// Agents by extension.
    pub agents: Vec<AgentSnapshot>,
    /// The longest wait of a caller now waiting, in seconds.
    pub longest_wait_seconds: u64,
    /// Callers answered by an agent.
    pub answered: u64,
    /// Callers who hung up while waiting.
    pub abandoned: u64,
}

/// The queues of one server (see the module docs). Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Queues(Arc<Mutex<Board>>);

#[derive(Debug, Default)]
struct Board {
    queues: BTreeMap<String, Queue>,
    next_ticket: u64,
}

impl Queues {
    /// No queues yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // Nothing panics while holding it; a poisoned lock still has valid data.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates queue `name` or updates its settings (a reload runs the
    /// same `define` again): waiting callers, logged-in agents and
    /// members' logins stay; members no longer listed are dropped.
    pub fn define(&self, name: &str, config: QueueConfig) -> Result<(), String> {
        let mut board = self.lock();
        if !board.queues.contains_key(name) && board.queues.len() >= MAX_QUEUES {
            return Err(format!("at most {MAX_QUEUES} queues"));
        }
        if config.members.len() > MAX_AGENTS {
            return Err(format!("at most {MAX_AGENTS} members"));
        }
        let queue = board.queues.entry(name.to_owned()).or_default();
        for (ext, agent) in &mut queue.agents {
            if agent.is_static && !config.members.contains(ext) {
                // A member no longer: out (once its queue call, if any, ends).
                agent.is_static = false;
                agent.logged_in = false;
            }
        }
        for ext in &config.members {
            let agent = queue.agents.entry(ext.clone()).or_insert_with(|| Agent {
                logged_in: true,
                ..Agent::default()
            });
            agent.is_static = true;
        }
        queue
            .agents
            .retain(|_, a| a.is_static || a.logged_in || a.in_call);
        queue.config = config;
        Ok(())
    }

    /// The same queues as defined, with nobody waiting, no dynamic
    /// agents and no counts (the spec runner's fresh case).
    pub(crate) fn defined_only(&self) -> Queues {
        let board = self.lock();
        let fresh = Queues::new();
        for (name, queue) in &board.queues {
            // Cannot fail: the same number of queues and members.
            let _ = fresh.define(name, queue.config.clone());
        }
        fresh
    }

    /// Whether queue `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.lock().queues.contains_key(name)
    }

    /// Puts a caller at the end of queue `name`; its ticket.
    pub fn join(
        &self,
        name: &str,
        call_id: &str,
        from: &str,
        now_ms: u64,
    ) -> Result<u64, JoinError> {
        let mut board = self.lock();
        board.next_ticket += 1;
        let ticket = board.next_ticket;
        let queue = board.queues.get_mut(name).ok_or(JoinError::NoSuchQueue)?;
        queue.reap(now_ms);
        if queue
            .config
            .max_callers
            .is_some_and(|max| queue.callers.len() >= max)
        {
            return Err(JoinError::Full);
        }
        if queue.config.leave_when_empty && queue.logged_in() == 0 {
            return Err(JoinError::Empty);
        }
        queue.callers.push(Caller {
            ticket,
            call_id: call_id.to_owned(),
            from: from.to_owned(),
            entered_ms: now_ms,
            seen_ms: now_ms,
            ringing: Vec::new(),
            tried: Vec::new(),
            offered_ms: 0,
        });
        Ok(ticket)
    }

    /// Where caller `ticket` stands (and that it is still there: a caller
    /// that stops asking is dropped after a while); `None` if it left.
    pub fn status(&self, name: &str, ticket: u64, now_ms: u64) -> Option<CallerStatus> {
        let mut board = self.lock();
        let queue = board.queues.get_mut(name)?;
        queue.reap(now_ms);
        let index = queue.position(ticket)?;
        // Callers being rung for are no longer ahead of anyone.
        let position = 1 + queue.callers[..index]
            .iter()
            .filter(|c| c.ringing.is_empty())
            .count();
        let caller = &mut queue.callers[index];
        caller.seen_ms = now_ms;
        let waited = Duration::from_millis(now_ms.saturating_sub(caller.entered_ms));
        let estimate = (queue.answered > 0).then(|| {
            let average = queue.answered_wait_ms / queue.answered;
            Duration::from_millis(average.saturating_mul(position as u64))
        });
        Some(CallerStatus {
            position,
            waited,
            estimate,
        })
    }

    /// The agents to ring now for caller `ticket` (marked in call), or
    /// none: not its turn (a caller ahead of it waits for an agent), or
    /// no agent free.
    pub fn offer(&self, name: &str, ticket: u64, now_ms: u64) -> Vec<String> {
        let mut board = self.lock();
        let Some(queue) = board.queues.get_mut(name) else {
            return Vec::new();
        };
        let Some(index) = queue.position(ticket) else {
            return Vec::new();
        };
        queue.callers[index].seen_ms = now_ms;
        // Callers ahead that are not being rung for go first.
        if queue.callers[..index].iter().any(|c| c.ringing.is_empty()) {
            return Vec::new();
        }
        let agents = queue.pick(index, now_ms);
        for ext in &agents {
            if let Some(agent) = queue.agents.get_mut(ext) {
                agent.in_call = true;
            }
        }
        if let Some(last) = agents.last() {
            queue.last_rung = Some(last.clone());
        }
        let caller = &mut queue.callers[index];
        caller.tried.extend(agents.iter().cloned());
        caller.ringing.clone_from(&agents);
        if !agents.is_empty() {
            caller.offered_ms = now_ms;
        }
        agents
    }

    /// The dial of an offer came back. Answered: the caller leaves the
    /// queue (answered) and its call is over; the agent that answered
    /// (`by`, the dial result's `answered_by`) is credited: wrap-up, last
    /// call, calls taken; the others rung with it are free again. Without
    /// `by` (not known), each agent rung starts wrap-up and, if only one
    /// was rung, it took the call. Not answered: the agents are free again
    /// and the caller waits on.
    pub fn ring_done(
        &self,
        name: &str,
        ticket: u64,
        answered: bool,
        by: Option<&str>,
        now_ms: u64,
    ) {
        let mut board = self.lock();
        let Some(queue) = board.queues.get_mut(name) else {
            return;
        };
        let Some(index) = queue.position(ticket) else {
            return;
        };
        let rung = std::mem::take(&mut queue.callers[index].ringing);
        queue.callers[index].seen_ms = now_ms;
        let wrapup = u64::try_from(queue.config.wrapup.as_millis()).unwrap_or(u64::MAX);
        for ext in &rung {
            if let Some(agent) = queue.agents.get_mut(ext) {
                agent.in_call = false;
                let took_it = match by {
                    Some(by) => by == ext.as_str(),
                    None => rung.len() == 1,
                };
                if answered && (took_it || by.is_none()) {
                    agent.last_call_ms = Some(now_ms);
                    agent.wrapup_until_ms = now_ms.saturating_add(wrapup);
                }
                if answered && took_it {
                    agent.calls_taken += 1;
                }
            }
        }
        if answered {
            let caller = queue.callers.remove(index);
            queue.answered += 1;
            // Waited until the agent who took it was rung, not until the
            // call with that agent ended.
            let until = if caller.offered_ms > 0 {
                caller.offered_ms
            } else {
                now_ms
            };
            queue.answered_wait_ms += until.saturating_sub(caller.entered_ms);
        }
        queue
            .agents
            .retain(|_, a| a.is_static || a.logged_in || a.in_call);
    }

    /// Caller `ticket` leaves without an agent: `abandoned` when it hung
    /// up. Does nothing if it already left.
    pub fn leave(&self, name: &str, ticket: u64, abandoned: bool) {
        let mut board = self.lock();
        let Some(queue) = board.queues.get_mut(name) else {
            return;
        };
        let Some(index) = queue.position(ticket) else {
            return;
        };
        let caller = queue.callers.remove(index);
        for ext in &caller.ringing {
            if let Some(agent) = queue.agents.get_mut(ext) {
                agent.in_call = false;
            }
        }
        if abandoned {
            queue.abandoned += 1;
        }
    }

    /// Logs `ext` in to queue `name` (or out); whether that changed
    /// anything. `Err` if there is no such queue.
    pub fn set_logged_in(&self, ext: &str, name: &str, logged_in: bool) -> Result<bool, JoinError> {
        let mut board = self.lock();
        let queue = board.queues.get_mut(name).ok_or(JoinError::NoSuchQueue)?;
        if logged_in && !queue.agents.contains_key(ext) && queue.agents.len() >= MAX_AGENTS {
            return Ok(false);
        }
        let agent = queue.agents.entry(ext.to_owned()).or_default();
        let changed = agent.logged_in != logged_in;
        agent.logged_in = logged_in;
        queue
            .agents
            .retain(|_, a| a.is_static || a.logged_in || a.in_call);
        Ok(changed)
    }

    /// Whether `ext` is logged in to queue `name`.
    pub fn is_logged_in(&self, ext: &str, name: &str) -> bool {
        self.lock()
            .queues
            .get(name)
            .and_then(|q| q.agents.get(ext))
            .is_some_and(|a| a.logged_in)
    }

    /// Every queue, for the admin API and the metrics.
    pub fn snapshot(&self, now_ms: u64) -> Vec<QueueSnapshot> {
        let mut board = self.lock();
        board
            .queues
            .iter_mut()
            .map(|(name, queue)| {
                queue.reap(now_ms);
                let snap = |position, c: &Caller| CallerSnapshot {
                    position,
                    call_id: c.call_id.clone(),
                    from: c.from.clone(),
                    entered_ms: c.entered_ms,
                    wait_seconds: now_ms.saturating_sub(c.entered_ms) / 1000,
                    agents: c.ringing.clone(),
                };
                let callers: Vec<CallerSnapshot> = queue
                    .callers
                    .iter()
                    .filter(|c| c.ringing.is_empty())
                    .enumerate()
                    .map(|(i, c)| snap(i + 1, c))
                    .collect();
                let connecting: Vec<CallerSnapshot> = queue
                    .callers
                    .iter()
                    .filter(|c| !c.ringing.is_empty())
                    .map(|c| snap(0, c))
                    .collect();
                let agents = queue
                    .agents
                    .iter()
                    .map(|(ext, a)| AgentSnapshot {
                        ext: ext.clone(),
                        is_static: a.is_static,
                        state: if !a.logged_in {
                            "logged_out"
                        } else if a.in_call {
                            "in_call"
                        } else if a.wrapup_until_ms > now_ms {
                            "wrapup"
                        } else {
                            "available"
                        },
                        last_call_ms: a.last_call_ms,
                        calls_taken: a.calls_taken,
                        wrapup_until_ms: (a.wrapup_until_ms > now_ms).then_some(a.wrapup_until_ms),
                    })
                    .collect();
                QueueSnapshot {
                    name: name.clone(),
                    strategy: queue.config.strategy.as_str(),
                    longest_wait_seconds: callers.iter().map(|c| c.wait_seconds).max().unwrap_or(0),
                    callers,
                    connecting,
                    agents,
                    answered: queue.answered,
                    abandoned: queue.abandoned,
                }
            })
            .collect()
    }
}

/// Now, in Unix ms: the host's clock (the spec runner's virtual one) or
/// the real one.
fn now_ms(host: &SharedHost) -> u64 {
    match host.0.now() {
        Some(secs) => u64::try_from(secs).unwrap_or(0).saturating_mul(1000),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn queues_of(host: &SharedHost, function: &str) -> mlua::Result<Queues> {
    host.0
        .queues()
        .ok_or_else(|| mlua::Error::runtime(format!("{function}: this server keeps no queues")))
}

fn seconds_opt(function: &str, opts: &Table, key: &str) -> mlua::Result<Option<Duration>> {
    match opts.raw_get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::Integer(n) if (0..=86_400).contains(&n) => {
            Ok(Some(Duration::from_secs(u64::try_from(n).unwrap_or(0))))
        }
        Value::Number(n) if (0.0..=86_400.0).contains(&n) => Ok(Some(Duration::from_secs_f64(n))),
        other => Err(mlua::Error::runtime(format!(
            "{function}: opts.{key} must be seconds from 0 to 86400, got {}",
            crate::route::lua_type(&other)
        ))),
    }
}

/// `queues.define(name, opts)`'s options.
fn config_arg(opts: &Value) -> mlua::Result<QueueConfig> {
    const F: &str = "queues.define";
    let mut config = QueueConfig::default();
    let opts = match opts {
        Value::Nil => return Ok(config),
        Value::Table(t) => t,
        other => {
            return Err(mlua::Error::runtime(format!(
                "{F}: expected an options table, got {}",
                crate::route::lua_type(other)
            )));
        }
    };
    match opts.raw_get::<Value>("strategy")? {
        Value::Nil => {}
        v => {
            let name = text_arg(F, "opts.strategy", &v, 32)?;
            config.strategy = Strategy::parse(&name).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "{F}: opts.strategy must be \"ringall\", \"roundrobin\", \"leastrecent\" or \"fewestcalls\", got {name:?}"
                ))
            })?;
        }
    }
    match opts.raw_get::<Value>("members")? {
        Value::Nil => {}
        Value::Table(list) => {
            for v in list.sequence_values::<Value>() {
                let ext = text_arg(F, "a member", &v?, MAX_EXT)?;
                if !config.members.contains(&ext) {
                    config.members.push(ext);
                }
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "{F}: opts.members must be a list of extensions, got {}",
                crate::route::lua_type(&other)
            )));
        }
    }
    config.wrapup = seconds_opt(F, opts, "wrapup")?.unwrap_or_default();
    config.max_callers = match opts.raw_get::<Value>("max_callers")? {
        Value::Nil => None,
        Value::Integer(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        other => {
            return Err(mlua::Error::runtime(format!(
                "{F}: opts.max_callers must be a whole number of 1 or more, got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    config.leave_when_empty = match opts.raw_get::<Value>("leave_when_empty")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => {
            return Err(mlua::Error::runtime(format!(
                "{F}: opts.leave_when_empty must be a boolean, got {}",
                crate::route::lua_type(&other)
            )));
        }
    };
    Ok(config)
}

fn ticket_arg(function: &str, value: &Value) -> mlua::Result<u64> {
    match value {
        Value::Integer(n) if *n > 0 => Ok(u64::try_from(*n).unwrap_or(0)),
        other => Err(mlua::Error::runtime(format!(
            "{function}: expected a ticket from queues.join, got {}",
            crate::route::lua_type(other)
        ))),
    }
}

/// Installs the `queues` module (the state behind `plugins/queue.lua`).
pub(crate) fn install(lua: &Lua, host: &SharedHost) -> mlua::Result<()> {
    let m = lua.create_table()?;

    let h = host.clone();
    m.raw_set(
        "define",
        lua.create_function(move |_, (name, opts): (Value, Value)| {
            let name = text_arg("queues.define", "name", &name, MAX_NAME)?;
            let config = config_arg(&opts)?;
            queues_of(&h, "queues.define")?
                .define(&name, config)
                .map_err(|e| mlua::Error::runtime(format!("queues.define: {e}")))
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "join",
        lua.create_function(move |_, (name, id, from): (Value, Value, Value)| {
            let name = text_arg("queues.join", "name", &name, MAX_NAME)?;
            let id = text_arg("queues.join", "call id", &id, 1024)?;
            let from = match &from {
                Value::Nil => String::new(),
                v => text_arg("queues.join", "from", v, 1024)?,
            };
            let queues = queues_of(&h, "queues.join")?;
            Ok(match queues.join(&name, &id, &from, now_ms(&h)) {
                Ok(ticket) => (Some(ticket), None),
                Err(e) => (None, Some(e.reason())),
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "status",
        lua.create_function(move |lua, (name, ticket): (Value, Value)| {
            let name = text_arg("queues.status", "name", &name, MAX_NAME)?;
            let ticket = ticket_arg("queues.status", &ticket)?;
            let queues = queues_of(&h, "queues.status")?;
            let Some(s) = queues.status(&name, ticket, now_ms(&h)) else {
                return Ok(Value::Nil);
            };
            let t = lua.create_table_with_capacity(0, 3)?;
            t.raw_set("position", s.position)?;
            t.raw_set("waited", s.waited.as_secs_f64())?;
            t.raw_set("estimate", s.estimate.map(|d| d.as_secs_f64()))?;
            Ok(Value::Table(t))
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "offer",
        lua.create_function(move |_, (name, ticket): (Value, Value)| {
            let name = text_arg("queues.offer", "name", &name, MAX_NAME)?;
            let ticket = ticket_arg("queues.offer", &ticket)?;
            Ok(queues_of(&h, "queues.offer")?.offer(&name, ticket, now_ms(&h)))
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "ring_done",
        lua.create_function(move |_, (name, ticket, answered): (Value, Value, Value)| {
            let name = text_arg("queues.ring_done", "name", &name, MAX_NAME)?;
            let ticket = ticket_arg("queues.ring_done", &ticket)?;
            // true (answered, by whom not known), the agent that answered
            // (the dial result's answered_by), or false / nil.
            let (answered, by) = match &answered {
                Value::Boolean(b) => (*b, None),
                Value::Nil => (false, None),
                Value::String(_) => (
                    true,
                    Some(text_arg("queues.ring_done", "answered", &answered, MAX_NAME)?),
                ),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "queues.ring_done: expected answered as a boolean or the agent that answered, got {}",
                        crate::route::lua_type(other)
                    )));
                }
            };
            queues_of(&h, "queues.ring_done")?.ring_done(
                &name,
                ticket,
                answered,
                by.as_deref(),
                now_ms(&h),
            );
            Ok(())
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "leave",
        lua.create_function(move |_, (name, ticket, abandoned): (Value, Value, Value)| {
            let name = text_arg("queues.leave", "name", &name, MAX_NAME)?;
            let ticket = ticket_arg("queues.leave", &ticket)?;
            let abandoned = matches!(abandoned, Value::Boolean(true));
            queues_of(&h, "queues.leave")?.leave(&name, ticket, abandoned);
            Ok(())
        })?,
    )?;

    for (function, logged_in) in [("login", true), ("logout", false)] {
        let h = host.clone();
        let full = if logged_in {
            "queues.login"
        } else {
            "queues.logout"
        };
        m.raw_set(
            function,
            lua.create_function(move |_, (ext, name): (Value, Value)| {
                let ext = text_arg(full, "ext", &ext, MAX_EXT)?;
                let name = text_arg(full, "name", &name, MAX_NAME)?;
                queues_of(&h, full)?
                    .set_logged_in(&ext, &name, logged_in)
                    .map_err(|e| mlua::Error::runtime(format!("{full}: {e}")))
            })?,
        )?;
    }

    let h = host.clone();
    m.raw_set(
        "is_logged_in",
        lua.create_function(move |_, (ext, name): (Value, Value)| {
            let ext = text_arg("queues.is_logged_in", "ext", &ext, MAX_EXT)?;
            let name = text_arg("queues.is_logged_in", "name", &name, MAX_NAME)?;
            Ok(queues_of(&h, "queues.is_logged_in")?.is_logged_in(&ext, &name))
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "info",
        lua.create_function(move |lua, name: Value| {
            let name = text_arg("queues.info", "name", &name, MAX_NAME)?;
            let queues = queues_of(&h, "queues.info")?;
            let Some(q) = queues
                .snapshot(now_ms(&h))
                .into_iter()
                .find(|q| q.name == name)
            else {
                return Ok(Value::Nil);
            };
            let t = lua.create_table_with_capacity(0, 6)?;
            t.raw_set("strategy", q.strategy)?;
            t.raw_set("waiting", q.callers.len())?;
            t.raw_set("answered", q.answered)?;
            t.raw_set("abandoned", q.abandoned)?;
            t.raw_set("longest_wait", q.longest_wait_seconds)?;
            let agents = lua.create_table()?;
            for a in q.agents {
                agents.raw_set(a.ext, a.state)?;
            }
            t.raw_set("agents", agents)?;
            Ok(Value::Table(t))
        })?,
    )?;

    lua.globals().raw_set("queues", m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_agents(strategy: Strategy, wrapup: u64) -> Queues {
        let q = Queues::new();
        q.define(
            "support",
            QueueConfig {
                strategy,
                members: vec!["1001".into(), "1002".into()],
                wrapup: Duration::from_secs(wrapup),
                ..QueueConfig::default()
            },
        )
        .unwrap();
        q
    }

    #[test]
    fn callers_are_served_in_order_and_agents_rest_in_wrapup() {
        let q = two_agents(Strategy::RoundRobin, 10);
        let a = q.join("support", "a", "", 0).unwrap();
        let b = q.join("support", "b", "", 0).unwrap();
        let c = q.join("support", "c", "", 0).unwrap();
        // b may not jump a.
        assert!(q.offer("support", b, 1).is_empty());
        assert_eq!(q.offer("support", a, 1), vec!["1001"]);
        assert_eq!(q.offer("support", b, 1), vec!["1002"]);
        assert!(q.offer("support", c, 1).is_empty());
        q.ring_done("support", a, true, None, 5_000);
        // 1001 is in wrap-up until 15 s.
        assert!(q.offer("support", c, 6_000).is_empty());
        // b is being connected: c is next.
        assert_eq!(q.status("support", c, 6_000).unwrap().position, 1);
        assert_eq!(q.snapshot(6_000)[0].callers[0].call_id, "c");
        assert_eq!(q.offer("support", c, 15_000), vec!["1001"]);
        let s = &q.snapshot(15_000)[0];
        assert_eq!(s.answered, 1);
        // b talks to 1002, c is being rung for: nobody waits.
        assert!(s.callers.is_empty());
        assert_eq!(s.connecting.len(), 2);
        assert_eq!(s.connecting[0].agents, vec!["1002"]);
    }

    #[test]
    fn an_agent_that_does_not_answer_is_skipped() {
        let q = two_agents(Strategy::LeastRecent, 0);
        let a = q.join("support", "a", "", 0).unwrap();
        let first = q.offer("support", a, 0);
        q.ring_done("support", a, false, None, 15_000);
        let second = q.offer("support", a, 15_000);
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
    }

    #[test]
    fn ringall_credits_only_the_agent_that_answered() {
        let q = two_agents(Strategy::RingAll, 10);
        let a = q.join("support", "a", "", 0).unwrap();
        let b = q.join("support", "b", "", 0).unwrap();
        assert_eq!(q.offer("support", a, 1), vec!["1001", "1002"]);
        q.ring_done("support", a, true, Some("1002"), 5_000);
        let agents = &q.snapshot(5_000)[0].agents;
        let agent = |ext: &str| agents.iter().find(|x| x.ext == ext).unwrap();
        assert_eq!(agent("1002").calls_taken, 1);
        assert_eq!(agent("1002").last_call_ms, Some(5_000));
        assert_eq!(agent("1002").state, "wrapup");
        assert_eq!(agent("1001").calls_taken, 0);
        assert_eq!(agent("1001").last_call_ms, None);
        assert_eq!(agent("1001").state, "available");
        // 1001 did not take the call: it rings for the next caller at once.
        assert_eq!(q.offer("support", b, 6_000), vec!["1001"]);
    }

    #[test]
    fn the_estimate_counts_the_wait_until_an_agent_was_rung_not_the_talk() {
        let q = two_agents(Strategy::RingAll, 0);
        let a = q.join("support", "a", "", 0).unwrap();
        let b = q.join("support", "b", "", 0).unwrap();
        assert!(q.status("support", b, 25_000).is_some());
        // a waits 30 s, is put through, and talks for 20 s.
        assert_eq!(q.offer("support", a, 30_000), vec!["1001", "1002"]);
        q.ring_done("support", a, true, Some("1001"), 50_000);
        // b is first now: its estimate is a's 30 s wait, not 50 s.
        let status = q.status("support", b, 50_000).unwrap();
        assert_eq!(status.position, 1);
        assert_eq!(status.estimate, Some(Duration::from_secs(30)));
    }

    #[test]
    fn abandoned_callers_leave_and_count() {
        let q = two_agents(Strategy::RingAll, 0);
        let a = q.join("support", "a", "", 0).unwrap();
        let b = q.join("support", "b", "", 0).unwrap();
        q.leave("support", a, true);
        q.leave("support", a, true);
        assert_eq!(q.status("support", b, 1).unwrap().position, 1);
        assert_eq!(q.offer("support", b, 1), vec!["1001", "1002"]);
        assert_eq!(q.snapshot(1)[0].abandoned, 1);
    }

    #[test]
    fn max_callers_empty_queues_and_logins() {
        let q = Queues::new();
        q.define(
            "sales",
            QueueConfig {
                max_callers: Some(1),
                leave_when_empty: true,
                ..QueueConfig::default()
            },
        )
        .unwrap();
        assert_eq!(q.join("sales", "a", "", 0), Err(JoinError::Empty));
        assert_eq!(q.set_logged_in("1003", "sales", true), Ok(true));
        assert!(q.is_logged_in("1003", "sales"));
        q.join("sales", "a", "", 0).unwrap();
        assert_eq!(q.join("sales", "b", "", 0), Err(JoinError::Full));
        assert_eq!(q.join("nope", "b", "", 0), Err(JoinError::NoSuchQueue));
        assert_eq!(q.set_logged_in("1003", "sales", false), Ok(true));
        assert!(q.snapshot(0)[0].agents.is_empty());
    }

    #[test]
    fn a_redefinition_keeps_logins_and_drops_members_no_longer_listed() {
        let q = two_agents(Strategy::RingAll, 0);
        q.set_logged_in("1001", "support", false).unwrap();
        q.set_logged_in("1003", "support", true).unwrap();
        let a = q.join("support", "a", "", 0).unwrap();
        q.define(
            "support",
            QueueConfig {
                members: vec!["1001".into()],
                ..QueueConfig::default()
            },
        )
        .unwrap();
        // 1001 stays logged out, 1002 is gone, 1003 stays in; a waits on.
        assert!(!q.is_logged_in("1001", "support"));
        assert!(!q.is_logged_in("1002", "support"));
        assert!(q.is_logged_in("1003", "support"));
        assert_eq!(q.offer("support", a, 1), vec!["1003"]);
        let agents: Vec<String> = q.snapshot(1)[0]
            .agents
            .iter()
            .map(|a| a.ext.clone())
            .collect();
        assert_eq!(agents, vec!["1001", "1003"]);
    }

    #[test]
    fn a_caller_whose_route_stopped_is_reaped_as_abandoned() {
        let q = two_agents(Strategy::RingAll, 0);
        let a = q.join("support", "a", "", 0).unwrap();
        assert!(q.status("support", a, STALE_MS + 1).is_none());
        assert_eq!(q.snapshot(STALE_MS + 1)[0].abandoned, 1);
    }
}
