-- plugins/ringgroup.lua: ring groups, several phones behind one number.
--
--   local ringgroup = require("ringgroup")
--   ringgroup.define("sales", {
--     members = { "1001", "1002", "1003" },  -- extension ids or dial
--                                           -- targets ("trunk:NAME/NUMBER")
--     strategy = "hunt",   -- ringall | hunt | memoryhunt | random
--     ring = 15,           -- seconds each step rings (default 20)
--     final = "voicemail:1001",  -- when nobody answers (see below)
--   })
--   ringgroup.ring(call, "sales")  -- returns the last dial's {status, code}
--
-- Strategies: `ringall` rings every member at once for `ring` seconds;
-- `hunt` one after the other, `ring` seconds each; `memoryhunt` the first,
-- then the first two, then the first three ... (a growing set), `ring`
-- seconds each step; `random` one at a time in a random order.
--
-- Members that are busy (on a call: pbx.state), unregistered or in
-- do-not-disturb (plugins/dnd.lua) are passed over; targets that are not
-- extensions (trunk numbers) are always rung. Anyone answering ends the
-- group: the caller is bridged, and ring returns once that call is over.
--
-- `final`, when nobody answered (or no member could be rung):
--   "voicemail:EXT"  leave a message for EXT (busy greeting if every
--                    member was busy, else the unavailable one)
--   "group:NAME"     another ring group
--   "EXT" or a target  rung for `ring` seconds
--   function(call, result)  anything else
--   nil              ring returns the last dial's result for the dialplan
--                    to act on; when nobody could be rung, 480 (or a
--                    hangup once answered)
-- A group's final destination may lead to other groups, at most 8 deep.

local dnd = require("dnd")
local vm = require("voicemail")

local M = {}

local STRATEGIES = { ringall = true, hunt = true, memoryhunt = true, random = true }
local DEFAULT_RING = 20
local MAX_DEPTH = 8

local groups = {}

--- Defines (or redefines) the group `name`; raises an error naming what is
--- wrong in `spec`.
function M.define(name, spec)
  if type(name) ~= "string" or name == "" then
    error("ringgroup.define: expected a group name string", 2)
  end
  if type(spec) ~= "table" or type(spec.members) ~= "table" or #spec.members == 0 then
    error("ringgroup.define(" .. name .. "): expected members = { \"1001\", ... }", 2)
  end
  for k in pairs(spec) do
    if k ~= "members" and k ~= "strategy" and k ~= "ring" and k ~= "final" then
      error("ringgroup.define(" .. name .. "): unknown key " .. tostring(k), 2)
    end
  end
  local strategy = spec.strategy or "ringall"
  if not STRATEGIES[strategy] then
    error(
      "ringgroup.define(" .. name .. "): strategy " .. tostring(strategy)
        .. " is not ringall, hunt, memoryhunt or random",
      2
    )
  end
  local ring = spec.ring or DEFAULT_RING
  if type(ring) ~= "number" or ring <= 0 then
    error("ringgroup.define(" .. name .. "): ring must be seconds, more than 0", 2)
  end
  local final = spec.final
  if final ~= nil and type(final) ~= "string" and type(final) ~= "function" then
    error("ringgroup.define(" .. name .. "): final must be a string or a function", 2)
  end
  local members = {}
  for i, m in ipairs(spec.members) do
    if type(m) ~= "string" or m == "" then
      error("ringgroup.define(" .. name .. "): members[" .. i .. "] is not a target string", 2)
    end
    members[i] = m
  end
  groups[name] = { name = name, members = members, strategy = strategy, ring = ring, final = final }
  return groups[name]
end

--- Why `member` cannot be rung now ("busy", "unregistered", "dnd"), or nil.
function M.unavailable(member)
  if pbx.extension(member) == nil then
    return nil -- not an extension: a trunk number or a URI, always rung
  end
  if dnd.is_on(member) then
    return "dnd"
  end
  local state = pbx.state(member)
  if state == "busy" or state == "unregistered" then
    return state
  end
  return nil
end

-- The members that can be rung, in the group's order; and whether every
-- member passed over was busy or in do-not-disturb.
local function available(group)
  local out, all_busy = {}, true
  for _, m in ipairs(group.members) do
    local why = M.unavailable(m)
    if why then
      all_busy = all_busy and why ~= "unregistered"
      log.info("ring group " .. group.name .. ": " .. m .. " passed over (" .. why .. ")")
    else
      out[#out + 1] = m
    end
  end
  return out, all_busy
end

-- The sets of targets each step rings, per the strategy.
local function steps(group, members)
  local out = {}
  if #members == 0 then
    return out
  elseif group.strategy == "ringall" then
    out[1] = members
  elseif group.strategy == "memoryhunt" then
    for i = 1, #members do
      out[i] = { table.unpack(members, 1, i) }
    end
  else
    local order = { table.unpack(members) }
    if group.strategy == "random" then
      for i = #order, 2, -1 do
        local j = math.random(i)
        order[i], order[j] = order[j], order[i]
      end
    end
    for i, m in ipairs(order) do
      out[i] = { m }
    end
  end
  return out
end

local function over(call, r)
  return r.status == "answered" or r.status == "cancelled" or call.state == "ended"
end

local ring_group

-- Nobody to ring: 480 to a caller still ringing, a hangup to one answered
-- (by a voice menu, say).
local function give_up(call)
  if call:is_up() then
    call:hangup()
  elseif call.state ~= "ended" then
    call:reject(480, "Temporarily Unavailable")
  end
end

local function final(call, group, r, all_busy, depth)
  local f = group.final
  if f == nil then
    if r == nil then
      give_up(call)
      return { status = "unavailable", code = 480 }
    end
    return r
  elseif type(f) == "function" then
    return f(call, r) or r
  end
  local box = f:match("^voicemail:(.+)$")
  local other = f:match("^group:(.+)$")
  if box and pbx.extension(box) == nil then
    log.warn("ring group " .. group.name .. ": final voicemail " .. box .. " is no extension")
    give_up(call)
    return r or { status = "unavailable", code = 480 }
  elseif box then
    vm.leave(call, box, { greeting = all_busy and "busy" or "unavailable" })
    return r or { status = "unavailable", code = 480 }
  elseif other then
    return ring_group(call, other, depth + 1)
  end
  local d = call:dial(f, { timeout = group.ring })
  return d
end

ring_group = function(call, name, depth)
  local group = groups[name]
  if group == nil then
    error("ringgroup.ring: no group " .. tostring(name) .. " (ringgroup.define it first)", 2)
  end
  if depth > MAX_DEPTH then
    error("ringgroup.ring: more than " .. MAX_DEPTH .. " groups deep (a loop of final destinations?)", 2)
  end
  local members, all_busy = available(group)
  local r
  for _, targets in ipairs(steps(group, members)) do
    r = call:dial(targets, { timeout = group.ring })
    if over(call, r) then
      return r
    end
    all_busy = all_busy and r.status == "busy"
  end
  return final(call, group, r, all_busy, depth)
end

--- Rings group `name` for `call`; returns the result of the last dial
--- made ({status, code}, as call:dial), after the final destination if it
--- came to that.
function M.ring(call, name)
  return ring_group(call, name, 1)
end

--- The group `name` as defined, or nil.
function M.get(name)
  return groups[name]
end

return M
