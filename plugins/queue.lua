-- plugins/queue.lua: call queues (issue 16). Callers wait with music on
-- hold and optional announcements of their position and estimated wait;
-- agents (static members, and extensions that log in with *45) are rung
-- per the queue's strategy; the one who answers is bridged to the caller.
-- The waiting order, agents and counts live in Rust (the `queues` module)
-- so they survive a dialplan reload and feed GET /api/v1/queues; what is
-- kept here is what only Lua can hold (the exit function, prompts).
--
--   local queue = require("queue")
--   queue.define("support", { strategy = "leastrecent", members = { "1001", "1002" },
--                             wrapup = 10, max_wait = 120, exit = "voicemail:1001" })
--   ... in route: queue.enter(call, "support")   -- and *45: queue.toggle(call)

local M = {}

-- For exits written "voicemail:EXT" (loaded here, with the context, not
-- in the middle of a call; a missing voicemail plugin only matters to them).
local has_voicemail, voicemail = pcall(require, "voicemail")

-- name -> the Lua half of a queue.define: exit, moh, ring_timeout,
-- max_wait, announce_position, announce_every, members, agents.
local defs = {}

local STRATEGIES = { ringall = true, roundrobin = true, leastrecent = true, fewestcalls = true }

local function seconds(opts, key, where)
  local v = opts[key]
  if v ~= nil and (type(v) ~= "number" or v < 0 or v > 86400) then
    error(where .. ": opts." .. key .. " must be seconds from 0 to 86400, got " .. tostring(v), 3)
  end
  return v
end

local function list_of(opts, key, where)
  local v = opts[key]
  if v == nil then
    return {}
  end
  if type(v) ~= "table" then
    error(where .. ": opts." .. key .. " must be a list of extensions", 3)
  end
  local out = {}
  for _, ext in ipairs(v) do
    out[#out + 1] = tostring(ext)
  end
  return out
end

--- Defines (or, on reload, redefines) queue `name`. Call it at a context's
--- top level. opts: strategy ("ringall" | "roundrobin" | "leastrecent" |
--- "fewestcalls"), members (static agents), agents (who else may log in
--- with *45), wrapup, ring_timeout (per agent try), max_wait (seconds),
--- max_callers, leave_when_empty, exit (function(call, reason) or a
--- destination: an extension, a sip: URI, "voicemail:EXT"),
--- announce_position, announce_every, moh (a music class).
function M.define(name, opts)
  opts = opts or {}
  if type(name) ~= "string" or name == "" then
    error("queue.define: expected a queue name", 2)
  end
  if type(opts) ~= "table" then
    error("queue.define: expected an options table", 2)
  end
  if opts.strategy ~= nil and not STRATEGIES[opts.strategy] then
    error("queue.define: opts.strategy must be ringall, roundrobin, leastrecent or fewestcalls, got "
      .. tostring(opts.strategy), 2)
  end
  local exit = opts.exit
  if exit ~= nil and type(exit) ~= "function" and type(exit) ~= "string" then
    error("queue.define: opts.exit must be a function(call, reason) or a destination string", 2)
  end
  local members = list_of(opts, "members", "queue.define")
  queues.define(name, {
    strategy = opts.strategy,
    members = members,
    wrapup = seconds(opts, "wrapup", "queue.define"),
    max_callers = opts.max_callers,
    leave_when_empty = opts.leave_when_empty,
  })
  defs[name] = {
    exit = exit,
    moh = opts.moh,
    ring_timeout = seconds(opts, "ring_timeout", "queue.define") or 15,
    max_wait = seconds(opts, "max_wait", "queue.define"),
    announce_position = opts.announce_position == true,
    announce_every = seconds(opts, "announce_every", "queue.define") or 30,
    members = members,
    agents = list_of(opts, "agents", "queue.define"),
  }
end

local function say_number(call, n)
  for d in tostring(math.floor(n)):gmatch("%d") do
    call:play("digit-" .. d)
  end
end

-- The queue's exit for `reason` ("timeout", "full", "empty").
local function leave_by_exit(call, exit, reason)
  log.info("queue: the caller leaves by the exit (" .. reason .. ")")
  if type(exit) == "function" then
    return exit(call, reason)
  end
  if type(exit) == "string" then
    local box = exit:match("^voicemail:(%d+)$")
    if box then
      if not has_voicemail then
        error("queue: exit " .. exit .. " needs plugins/voicemail.lua: " .. tostring(voicemail), 2)
      end
      return voicemail.leave(call, box)
    end
    return call:dial(exit)
  end
  if call:is_up() then
    call:hangup()
  end
end

--- Puts the caller in queue `name` until an agent answers (returns the
--- dial's result after the bridged call ends), the exit takes it (max
--- wait, max callers, no agents with leave_when_empty), or it hangs up
--- (counted as abandoned). opts override the queue's for this caller.
function M.enter(call, name, opts)
  opts = opts or {}
  local def = defs[name] or {}
  local function setting(key, default)
    local v = opts[key]
    if v == nil then
      v = def[key]
    end
    if v == nil then
      v = default
    end
    return v
  end
  local exit = setting("exit", nil)
  local ticket, why = queues.join(name, call.id, call.from.uri)
  if not ticket then
    if why == "undefined" then
      error("queue.enter: no queue " .. tostring(name) .. ": call queue.define at the context's top level", 2)
    end
    return leave_by_exit(call, exit, why)
  end
  local left = false
  call:on_hangup(function()
    if not left then
      -- The caller hung up (or the route failed) while it waited.
      queues.leave(name, ticket, true)
    end
  end)
  local moh = setting("moh", nil)
  local ring_timeout = setting("ring_timeout", 15)
  local max_wait = setting("max_wait", nil)
  local announce = setting("announce_position", false)
  local every = math.max(setting("announce_every", 30), 5)
  call:answer()
  call:hold(moh)
  local announced = nil
  while true do
    local s = queues.status(name, ticket)
    if not s then
      -- Taken out of the queue behind our back: nothing left to do.
      left = true
      return { status = "failed", code = 500 }
    end
    if max_wait and s.waited >= max_wait then
      left = true
      queues.leave(name, ticket, false)
      call:unhold()
      return leave_by_exit(call, exit, "timeout")
    end
    local agents = queues.offer(name, ticket)
    if #agents > 0 then
      local timeout = ring_timeout
      if max_wait then
        timeout = math.max(1, math.min(timeout, max_wait - s.waited))
      end
      local r = call:dial(agents, { timeout = timeout, moh = moh })
      local answered = r.status == "answered"
      -- Only the agent that answered is credited (wrap-up, last call,
      -- calls taken): with ringall, the others rung are free again.
      queues.ring_done(name, ticket, answered and (r.answered_by or true))
      if answered then
        left = true
        return r
      end
      if r.status == "cancelled" or not call:is_up() then
        left = true
        queues.leave(name, ticket, true)
        return r
      end
      call:hold(moh)
      if r.status ~= "noanswer" then
        -- Busy or unreachable at once: not again this very moment.
        call:sleep(1)
      end
    elseif announce and (announced == nil or s.waited - announced >= every) then
      -- Nobody free for this caller: tell it where it stands (at once,
      -- then every `every` seconds).
      announced = s.waited
      call:play("queue-position")
      say_number(call, s.position)
      if s.estimate and s.estimate >= 60 then
        call:play("queue-wait")
        say_number(call, math.ceil(s.estimate / 60))
        call:play("queue-minutes")
      end
      call:hold(moh)
    else
      call:sleep(1)
    end
  end
end

--- Logs extension `ext` in to queue `name`; whether it was logged out.
function M.login(ext, name)
  return queues.login(ext, name)
end

--- Logs extension `ext` out of queue `name`; whether it was logged in.
function M.logout(ext, name)
  return queues.logout(ext, name)
end

local function may_serve(def, ext)
  for _, list in ipairs({ def.members, def.agents }) do
    for _, e in ipairs(list) do
      if e == ext then
        return true
      end
    end
  end
  return false
end

--- *45: logs the calling extension out of queue `name` (or, with none,
--- every queue it is a member or agent of) if it is logged in to any of
--- them, else in; says which, and hangs up. Returns true if it is now
--- logged in. Only an extension may do it (others get 403).
function M.toggle(call, name)
  local ext = call.caller
  if not ext then
    return call:reject(403)
  end
  local names = {}
  if name then
    names[1] = name
  else
    for n, def in pairs(defs) do
      if may_serve(def, ext) then
        names[#names + 1] = n
      end
    end
    table.sort(names)
  end
  call:answer()
  if #names == 0 then
    call:play("queue-not-agent")
    call:hangup()
    return false
  end
  local logged_in = false
  for _, n in ipairs(names) do
    if queues.is_logged_in(ext, n) then
      logged_in = true
    end
  end
  for _, n in ipairs(names) do
    if logged_in then
      queues.logout(ext, n)
    else
      queues.login(ext, n)
    end
  end
  log.info("queue: " .. ext .. (logged_in and " logged out of " or " logged in to ") .. table.concat(names, ", "))
  call:play(logged_in and "queue-agent-logout" or "queue-agent-login")
  call:hangup()
  return not logged_in
end

return M
