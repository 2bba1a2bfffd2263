-- plugins/followme.lua: follow-me, numbers rung after the desk phone.
--
--   local followme = require("followme")
--   followme.define("1000", {
--     numbers = { "1003", "trunk:carrier/+15557654321" },
--     ring = 20,       -- seconds the desk phone, then each number, rings
--     together = false, -- true: the numbers ring at once, not in order
--   })
--   local r = followme.dial(call, "1000")  -- {status, code} as call:dial
--
-- A call to an extension with a follow-me list rings its desk phone for
-- `ring` seconds; if it is not answered there, the numbers (extension ids
-- or `trunk:NAME/NUMBER` targets) ring one after the other (or together).
-- Extensions that are busy, unregistered or in do-not-disturb are passed
-- over. The result is that of the last dial, so the dialplan can still
-- send the caller to voicemail.
--
-- NOT YET: "press 1 to accept" on outside numbers. call:dial bridges the
-- first party that answers, and the call core cannot yet play a prompt to
-- an answering callee and read its keys before bridging; until it can, an
-- outside number (a trunk target) is rung like any other, so a mobile's
-- own voicemail may take the call. Give such numbers a short `ring`
-- (shorter than the mobile's voicemail delay).
--
-- The list is kept in the plugin (define, at a dialplan's top level), and
-- may be replaced per extension in kv (followme.set, namespace "followme",
-- value the numbers joined by commas), which wins over the defined one.

local dnd = require("dnd")

local M = {}

local NS = "followme"
local DEFAULT_RING = 20

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
    if k ~= "numbers" and k ~= "ring" and k ~= "together" then
      error("followme.define(" .. ext .. "): unknown key " .. tostring(k), 2)
    end
  end
  for i, n in ipairs(spec.numbers) do
    check_number(ext, i, n)
  end
  if spec.ring ~= nil and (type(spec.ring) ~= "number" or spec.ring <= 0) then
    error("followme.define(" .. ext .. "): ring must be seconds, more than 0", 2)
  end
  defined[ext] = {
    numbers = { table.unpack(spec.numbers) },
    ring = spec.ring or DEFAULT_RING,
    together = spec.together == true,
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
    local d = call:dial(targets, { timeout = fm.ring })
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
