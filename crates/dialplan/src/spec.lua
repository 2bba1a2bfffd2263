-- The spec runner's Lua side (spec.rs loads it into each spec file's state):
-- `it`, `before_each`, `expect` and the `sim` module over the simulator's
-- native functions. Errors are raised at level 2 so they name the spec's
-- own file:line.
local native_functions = ...
-- The plain pcall: the spec's own is wrapped (spec_limits.rs) after this
-- loads, and the levels `error` counts below must not see the wrapper.
local pcall = pcall

-- The native functions, raising their errors at the spec's line (the
-- caller of the spec.lua function that called them) rather than here.
local native = setmetatable({}, {
  __index = function(_, name)
    local f = native_functions[name]
    return function(...)
      local ok, result = pcall(f, ...)
      if not ok then
        local message = tostring(result):gsub("\nstack traceback:.*$", "")
        message = message:gsub("^runtime error: ", "")
        error(message, 3)
      end
      return result
    end
  end,
})

local cases, befores = {}, {}

function it(name, fn)
  if type(name) ~= "string" then
    error("it: expected a case name string, got " .. type(name), 2)
  end
  if type(fn) ~= "function" then
    error("it: expected a function, got " .. type(fn), 2)
  end
  cases[#cases + 1] = { name = name, fn = fn }
end

function before_each(fn)
  if type(fn) ~= "function" then
    error("before_each: expected a function, got " .. type(fn), 2)
  end
  befores[#befores + 1] = fn
end

-- The simulated call ---------------------------------------------------------

local SimCall = {}
SimCall.__index = SimCall

function SimCall:sends_digits(keys)
  native.digits(self.handle, keys)
  return self
end

function SimCall:hangs_up_after(seconds)
  native.hangs_up_after(self.handle, seconds)
  return self
end

function SimCall:run()
  native.run(self.handle)
  return self
end

function SimCall:actions()
  native.run(self.handle)
  return native.result(self.handle).actions
end

function SimCall:result()
  native.run(self.handle)
  return native.result(self.handle)
end

local function is_call(value)
  return getmetatable(value) == SimCall
end

-- Phones ------------------------------------------------------------------------

local Phone = {}
Phone.__index = Phone

function Phone:answers_after(seconds)
  native.phone(self.ext, "answers", seconds)
  return self
end

function Phone:talks_for(seconds)
  native.phone(self.ext, "talks", seconds)
  return self
end

function Phone:never_answers()
  native.phone(self.ext, "never")
  return self
end

function Phone:is_busy()
  native.phone(self.ext, "busy")
  return self
end

function Phone:is_unregistered()
  native.phone(self.ext, "unregistered")
  return self
end

-- The virtual clock ---------------------------------------------------------------

local Clock = {}
Clock.__index = Clock

-- Lua's own os.time, to read "YYYY-MM-DD HH:MM[:SS]" as local time.
local lua_time = os.time

function Clock:set(when)
  if type(when) == "number" then
    native.clock_set(when)
    return self
  end
  if type(when) ~= "string" then
    error("sim.clock:set: expected \"YYYY-MM-DD HH:MM[:SS]\" or seconds since the epoch, got " .. type(when), 2)
  end
  local y, mo, d, h, mi, s = when:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[ T](%d%d):(%d%d):?(%d*)$")
  if y == nil then
    y, mo, d = when:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
    h, mi, s = "0", "0", ""
  end
  if y == nil then
    error("sim.clock:set: expected \"YYYY-MM-DD HH:MM[:SS]\", got " .. string.format("%q", when), 2)
  end
  native.clock_set(lua_time({
    year = tonumber(y), month = tonumber(mo), day = tonumber(d),
    hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) or 0,
  }))
  return self
end

function Clock:advance(seconds)
  native.clock_advance(seconds)
  return self
end

function Clock:now()
  return native.clock_now()
end

-- sim ---------------------------------------------------------------------------------

sim = {
  clock = setmetatable({}, Clock),
  kv = {
    get = native.kv_get,
    set = native.kv_set,
    delete = native.kv_delete,
  },
}

-- The calls the running case made, to run the routes no expectation ran.
local made = {}

function sim.call(spec)
  if type(spec) ~= "table" then
    error("sim.call: expected a table {from = ..., to = ...}, got " .. type(spec), 2)
  end
  -- "file:line: " of the spec line that made the call.
  local _, where = pcall(error, "", 3)
  local call = setmetatable({ handle = native.new_call(spec), where = where }, SimCall)
  made[#made + 1] = call
  return call
end

function sim.lamp(name)
  if type(name) ~= "string" then
    error("sim.lamp: expected a lamp name string, got " .. type(name), 2)
  end
  return native.lamp(name)
end

function sim.phone(ext)
  if type(ext) ~= "string" then
    error("sim.phone: expected an extension string, got " .. type(ext), 2)
  end
  return setmetatable({ ext = ext }, Phone)
end

function sim.extension(ext)
  if type(ext) == "string" then
    ext = { id = ext }
  end
  if type(ext) ~= "table" or type(ext.id) ~= "string" then
    error("sim.extension: expected an id string or {id = ..., name = ..., context = ..., did = ..., outbound = ..., international = ...}", 2)
  end
  native.extension(ext.id, ext.name, ext.context or "default", ext.did, ext.outbound == true,
    ext.international == true)
end

-- Expectations -----------------------------------------------------------------------------

local Expectation = {}
Expectation.__index = Expectation

function expect(value)
  return setmetatable({ value = value }, Expectation)
end

-- "dial 1002 (timeout 20) -> busy 486, reject 486 Busy Here"
local function describe(actions)
  local parts = {}
  for _, a in ipairs(actions) do
    local text = a.action
    if a.action == "dial" then
      text = text .. " " .. table.concat(a.targets, ",")
      if a.timeout then text = text .. " (timeout " .. string.format("%g", a.timeout) .. ")" end
      if a.status then text = text .. " -> " .. a.status .. " " .. tostring(a.code) end
    elseif a.action == "reject" then
      text = text .. " " .. a.code .. (a.reason and (" " .. a.reason) or "")
    elseif a.file then
      text = text .. " " .. a.file
    elseif a.digits then
      text = text .. " -> \"" .. a.digits .. "\""
    end
    parts[#parts + 1] = text
  end
  if #parts == 0 then
    return "the route did nothing"
  end
  return "the route did: " .. table.concat(parts, ", ")
end

-- The call's result, after running its route; raises (at the spec's line)
-- when the value is not a call, or when the route failed.
local function call_result(self, allow_failure)
  if not is_call(self.value) then
    error("expected a call from sim.call{...}, got " .. type(self.value), 3)
  end
  native.run(self.value.handle)
  local r = native.result(self.value.handle)
  if r.outcome == "failed" and not allow_failure then
    error("the route failed: " .. r.failure, 3)
  end
  return r
end

local function wav(file)
  if type(file) ~= "string" then
    return file
  end
  if file:match("%.[%w]+$") then
    return file
  end
  return file .. ".wav"
end

local function dial_matches(a, target, opts)
  if a.action ~= "dial" then
    return false
  end
  local found = false
  for _, t in ipairs(a.targets) do
    if t == target then found = true end
  end
  if not found then
    return false
  end
  for key, want in pairs(opts or {}) do
    if a[key] ~= want then
      return false
    end
  end
  return true
end

local function options_text(opts)
  local keys = {}
  for key, value in pairs(opts or {}) do
    keys[#keys + 1] = key .. " = " .. tostring(value)
  end
  table.sort(keys)
  if #keys == 0 then
    return ""
  end
  return " with " .. table.concat(keys, ", ")
end

function Expectation:dialled(target, opts)
  local r = call_result(self)
  for _, a in ipairs(r.actions) do
    if dial_matches(a, target, opts) then
      return self
    end
  end
  error("expected a dial of " .. tostring(target) .. options_text(opts) .. "; " .. describe(r.actions), 2)
end

function Expectation:not_dialled(target)
  local r = call_result(self)
  for _, a in ipairs(r.actions) do
    if dial_matches(a, target) then
      error("expected no dial of " .. tostring(target) .. "; " .. describe(r.actions), 2)
    end
  end
  return self
end

function Expectation:played(file)
  local r = call_result(self)
  for _, a in ipairs(r.actions) do
    if a.action == "play" and a.file == wav(file) then
      return self
    end
  end
  error("expected " .. tostring(wav(file)) .. " to be played; " .. describe(r.actions), 2)
end

function Expectation:answered()
  local r = call_result(self)
  if r.answered then
    return self
  end
  error("expected the call to be answered; " .. describe(r.actions), 2)
end

function Expectation:rejected(code)
  local r = call_result(self)
  if r.code == code and code ~= 200 and code ~= nil then
    return self
  end
  local got = r.code and ("the caller got " .. r.code) or "the caller got no rejection"
  error("expected a rejection with " .. tostring(code) .. ", " .. got .. " (" .. r.outcome .. "); " .. describe(r.actions), 2)
end

function Expectation:redirected(uri)
  local r = call_result(self)
  for _, a in ipairs(r.actions) do
    if a.action == "redirect" and (uri == nil or a.file == uri) then
      return self
    end
  end
  error("expected a redirect" .. (uri and (" to " .. uri) or "") .. "; " .. describe(r.actions), 2)
end

function Expectation:hung_up()
  local r = call_result(self)
  for _, a in ipairs(r.actions) do
    if a.action == "hangup" then
      return self
    end
  end
  error("expected the route to hang up; " .. describe(r.actions), 2)
end

function Expectation:ended_with(what)
  local r = call_result(self)
  local last_dial
  for _, a in ipairs(r.actions) do
    if a.action == "dial" then last_dial = a end
  end
  if r.outcome == what or (last_dial and last_dial.status == what) then
    return self
  end
  local got = r.outcome
  if last_dial then
    got = got .. ", last dial " .. tostring(last_dial.status)
  end
  error("expected the call to end with " .. tostring(what) .. ", it ended " .. got .. "; " .. describe(r.actions), 2)
end

function Expectation:failed(pattern)
  local r = call_result(self, true)
  self.value.failure_expected = true
  if r.outcome ~= "failed" then
    error("expected the route to fail, it ended " .. r.outcome .. "; " .. describe(r.actions), 2)
  end
  if pattern ~= nil and not r.failure:find(pattern, 1, true) then
    error("expected the route to fail with " .. string.format("%q", pattern) .. ", it failed with: " .. r.failure, 2)
  end
  return self
end

function Expectation:equals(want)
  if self.value ~= want then
    error("expected " .. string.format("%q", tostring(want)) .. ", got " .. string.format("%q", tostring(self.value)), 2)
  end
  return self
end

function Expectation:is_nil()
  if self.value ~= nil then
    error("expected nil, got " .. string.format("%q", tostring(self.value)), 2)
  end
  return self
end

-- Runs one case (or a file's top level): the before_each functions, the
-- case, then the route of every call it made that no expectation ran; a
-- route that failed where no `expect(call):failed()` said it would fails
-- the case, naming the spec line that made the call.
local function run_case(fn)
  made = {}
  for _, before in ipairs(befores) do
    before()
  end
  fn()
  for _, call in ipairs(made) do
    native.run(call.handle)
    local r = native.result(call.handle)
    if r.outcome == "failed" and not call.failure_expected then
      error(call.where .. "the route of this call failed: " .. r.failure, 0)
    end
  end
end

return {
  run_case = run_case,
  cases = cases,
  befores = befores,
  classes = { SimCall = SimCall, Phone = Phone, Clock = Clock, Expectation = Expectation },
}
