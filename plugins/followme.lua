-- plugins/followme.lua: follow-me, numbers rung after the desk phone.
--
--   local followme = require("followme")
--   followme.define("1000", {
--     numbers = { "1003", "trunk:carrier/+15557654321" },
--     ring = 20,       -- seconds the desk phone, then each number, rings
--     together = false, -- true: the extensions among the numbers ring
--                       -- at once, then the outside numbers in order
--     confirm = "outside", -- who must press 1 to take the call: "outside"
--                          -- (trunk numbers, the default), "all", "none"
--     confirm_timeout = 10, -- seconds after the prompt to press it
--   })
--   local r = followme.dial(call, "1000")  -- {status, code} as call:dial
--
-- A call to an extension with a follow-me list rings its desk phone for
-- `ring` seconds; if it is not answered there, the numbers (extension ids
-- or `trunk:NAME/NUMBER` targets) ring one after the other (or together).
-- Extensions that are busy, unregistered or in do-not-disturb are passed
-- over. Whoever answers an outside number (a trunk target) hears "You
-- have a call. Press 1 to accept it." (followme-accept) and is put through
-- only after pressing 1 (call:dial's `confirm`); otherwise it is hung up
-- on and the next number rings, so a mobile's own voicemail never takes
-- the call. The result is that of the last dial, so the dialplan can
-- still send the caller to voicemail.
--
-- The list is kept in the plugin (define, at a dialplan's top level), and
-- may be replaced per extension in kv (followme.set, namespace "followme",
-- value the numbers joined by commas), which wins over the defined one.

local dnd = require("dnd")

local M = {}

local NS = "followme"
local DEFAULT_RING = 20
local CONFIRM = { outside = true, all = true, none = true }
local CONFIRM_PROMPT = "followme-accept"
local DEFAULT_CONFIRM_TIMEOUT = 10

local defined = {}

local function check_number(ext, i, n)
  if type(n) ~= "string" or not (n:match("^%d+$") or n:match("^trunk:[%w_.-]+/%+?[%d*#]+$")) then
    error("followme.define(" .. ext .. "): numbers[" .. i .. "] is not an extension id or trunk:NAME/NUMBER", 3)
  end
end

--- Gives extension `ext` a follow-me list (see above); raises an error
--- naming what is wrong.
function M.define(ext, spec)
  if type(ext) ~= "string" or ext == "" then
    error("followme.define: expected an extension id", 2)
  end
  if type(spec) ~= "table" or type(spec.numbers) ~= "table" then
    error("followme.define(" .. ext .. "): expected numbers = { ... }", 2)
  end
  for k in pairs(spec) do
    if
      k ~= "numbers"
      and k ~= "ring"
      and k ~= "together"
      and k ~= "confirm"
      and k ~= "confirm_timeout"
    then
      error("followme.define(" .. ext .. "): unknown key " .. tostring(k), 2)
    end
  end
  for i, n in ipairs(spec.numbers) do
    check_number(ext, i, n)
  end
  if spec.ring ~= nil and (type(spec.ring) ~= "number" or spec.ring <= 0) then
    error("followme.define(" .. ext .. "): ring must be seconds, more than 0", 2)
  end
  if spec.confirm ~= nil and not CONFIRM[spec.confirm] then
    error("followme.define(" .. ext .. '): confirm must be "outside", "all" or "none"', 2)
  end
  local t = spec.confirm_timeout
  if t ~= nil and (type(t) ~= "number" or t < 1 or t > 60) then
    error("followme.define(" .. ext .. "): confirm_timeout must be 1 to 60 seconds", 2)
  end
  defined[ext] = {
    numbers = { table.unpack(spec.numbers) },
    ring = spec.ring or DEFAULT_RING,
    together = spec.together == true,
    confirm = spec.confirm or "outside",
    confirm_timeout = t or DEFAULT_CONFIRM_TIMEOUT,
  }
end

--- Replaces `ext`'s numbers in kv (a list; empty or nil clears it).
function M.set(ext, numbers)
  if numbers == nil or #numbers == 0 then
    kv.delete(NS, ext)
    return
  end
  for i, n in ipairs(numbers) do
    check_number(ext, i, n)
  end
  kv.set(NS, ext, table.concat(numbers, ","))
end

--- `ext`'s follow-me settings {numbers, ring, together}, or nil.
function M.get(ext)
  local base = defined[ext]
  local stored = kv.get(NS, ext)
  if stored == nil then
    return base
  end
  local numbers = {}
  for n in stored:gmatch("[^,]+") do
    numbers[#numbers + 1] = n
  end
  return {
    numbers = numbers,
    ring = base and base.ring or DEFAULT_RING,
    together = base ~= nil and base.together,
    confirm = base and base.confirm or "outside",
    confirm_timeout = base and base.confirm_timeout or DEFAULT_CONFIRM_TIMEOUT,
  }
end

local function outside(target)
  return target:sub(1, 6) == "trunk:"
end

local function skipped(target)
  if outside(target) then
    return false
  end
  if dnd.is_on(target) then
    return true
  end
  local state = pbx.state(target)
  return state == "busy" or state == "unregistered"
end

local function over(call, r)
  return r.status == "answered" or r.status == "cancelled" or call.state == "ended"
end

--- Rings `ext`, then its follow-me numbers; returns the last dial's
--- {status, code}. Without a follow-me list, a plain dial of `ext`.
function M.dial(call, ext, opts)
  opts = opts or {}
  local fm = M.get(ext)
  local ring = fm and fm.ring or opts.timeout or DEFAULT_RING
  local r = call:dial(opts.target or ext, { timeout = ring })
  if fm == nil or over(call, r) then
    return r
  end
  local steps = {}
  local inside = {}
  for _, n in ipairs(fm.numbers) do
    if n ~= ext and not skipped(n) then
      if fm.together and not outside(n) then
        inside[#inside + 1] = n
      else
        steps[#steps + 1] = { n }
      end
    end
  end
  if #inside > 0 then
    table.insert(steps, 1, inside)
  end
  for _, targets in ipairs(steps) do
    log.info("follow-me of " .. ext .. ": ringing " .. table.concat(targets, ", "))
    local opts = { timeout = fm.ring }
    if fm.confirm == "all" or (fm.confirm == "outside" and outside(targets[1])) then
      opts.confirm = { prompt = CONFIRM_PROMPT, key = "1", timeout = fm.confirm_timeout }
    end
    local d = call:dial(targets, opts)
    if over(call, d) then
      return d
    end
    -- The desk phone's result decides what the caller gets next
    -- (busy greeting or unavailable), unless a number was busy too.
    if r.status ~= "busy" then
      r = d
    end
  end
  return r
end

return M
