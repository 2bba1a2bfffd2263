-- dialplans/default.lua: the demo office.
--
--   0        reception: a voice menu at any hour (1 sales, 2 support, 0 the
--            operator, or dial an extension); after hours only its prompt
--            changes
--   400      sales: a ring group, hunting 1001, 1002, 1003
--   401      support: a call queue with music (plugins/queue.lua); *45 logs
--            an agent in or out
--   1000-1999  the extensions that exist in the configuration: ring 20 s;
--            busy, in do-not-disturb -> voicemail (busy greeting); no
--            answer or not registered -> voicemail (unavailable greeting)
--   *76      do-not-disturb on/off for the caller's extension
--   *28      night mode on/off: the office counts as closed until toggled
--   *97, *98 the caller's own mailbox, any mailbox (plugins/voicemail.lua)
--   *72NNNN, *73  call forward set / clear; *74NNXXXX, **NN speed dials
--   600      echo test; 700 reads back up to four digits (end with #)
--   70       park the call ("parked in slot 7N", then music); 71-79 take it
--   *8       pick up a call ringing in the caller's pickup group; **NNNN
--            one ringing extension NNNN
--   9...     outside lines through the trunks (toll-fraud default deny)
-- Anything else is 404. Reception's desk phone (1000) follows on to 1003
-- when it is not answered (plugins/followme.lua). The plugins are
-- documented in dialplans/README.md.

local callforward = require("callforward")
local dnd = require("dnd")
local followme = require("followme")
local ivr = require("ivr")
local ringgroup = require("ringgroup")
local speeddial = require("speeddial")
local tc = require("timeconditions")
local vm = require("voicemail")
local queue = require("queue")

-- Office hours (local time: [dialplan] timezone in the config), holidays
-- closed; *28 forces night mode.
local OFFICE = tc.hours("office", {
  "mon-fri 09:00-17:30",
  except = { "12-25", "12-26", "01-01" },
  lamp = "*28", -- a BLF key on *28 shows night mode
})

-- Sales, 400: the first free phone of the three, 15 s each, then
-- reception's voicemail.
ringgroup.define("sales", {
  members = { "1001", "1002", "1003" },
  strategy = "hunt",
  ring = 15,
  final = "voicemail:1000",
})

-- Reception's calls go on to the back office when nobody answers the desk.
followme.define("1000", { numbers = { "1003" }, ring = 20 })

local RING_SECONDS = 20
-- The extension a caller reaches by pressing 0 during a voicemail greeting
-- (nil: 0 just skips the greeting), e.g. "1000".
local OPERATOR = nil

-- 401: the support queue (plugins/queue.lua). 1001 and 1002 answer it;
-- *45 logs the calling extension out of (or back in to) the queues it
-- serves. A caller waits with music at most two minutes, then may leave a
-- message for 1001.
queue.define("support", {
  strategy = "leastrecent",
  members = { "1001", "1002" },
  agents = { "1003" },
  wrapup = 10,
  ring_timeout = 15,
  max_wait = 120,
  announce_position = true,
  announce_every = 45,
  exit = "voicemail:1001",
})

local function call_extension(call, ext)
  if dnd.is_on(ext) and call.transfer == nil then
    log.info(ext .. " is in do-not-disturb")
    vm.leave(call, ext, { greeting = "busy", operator = OPERATOR })
    return
  end
  local target = callforward.resolve(ext)
  if target ~= ext then
    log.info(ext .. " is forwarded to " .. target)
  end
  local r
  if followme.get(target) then
    r = followme.dial(call, target)
  else
    r = call:dial(target, { timeout = RING_SECONDS })
  end
  if r.status == "answered" or r.status == "cancelled" then
    return -- the call is over (bridged and hung up, or the caller gave up)
  elseif call.transfer ~= nil then
    -- A blind transfer whose target did not answer, after the transferor
    -- hung up (had it stayed, the call would be back with it already):
    -- ring the transferor back.
    call:dial(call.transfer.by, { timeout = RING_SECONDS })
  elseif r.status == "busy" then
    vm.leave(call, ext, { greeting = "busy", operator = OPERATOR })
  elseif r.status == "noanswer" or r.status == "unavailable" then
    vm.leave(call, ext, { greeting = "unavailable", operator = OPERATOR })
  else
    log.warn("dial " .. target .. " failed with " .. tostring(r.code))
    call:reject(503, "Service Unavailable")
  end
end

-- Outside lines ([[trunk]] in switchboard.toml; dialplans/README.md "Trunks"):
-- 9 + a number calls out through TRUNKS, in order (the next one when a
-- carrier cannot take the call). Toll-fraud default deny: only extensions
-- with `outbound = true` may call out, national numbers only;
-- international and premium-rate numbers need `international = true`.
-- Emergency numbers are always allowed. A call from a trunk rings the
-- extension whose `did` is the dialled number, else RECEPTION.

-- The [[trunk]] names outside calls go through, in failover order.
local TRUNKS = { "carrier" }
-- Our country code: a national number is written after it in E.164.
local COUNTRY = "1"
-- Numbers of our country that cost the caller extra (E.164 prefixes).
local PREMIUM = { "+1900", "+1976" }
-- Always dialled, by any extension (as dialled after the 9).
local EMERGENCY = { ["911"] = true, ["112"] = true }
-- Where a call from a trunk goes when its number is no extension's did
-- (nil: 404).
local RECEPTION = "1000"

-- How sounds/ names the keys of a phone's keypad.
local KEY_SOUND = { ["*"] = "digit-star", ["#"] = "digit-pound" }

local function read_back(call)
  call:answer()
  call:play("hello")
  local digits = call:read_digits({ max = 4, timeout = 5, terminator = "#" })
  log.info("caller typed " .. (digits == "" and "nothing" or digits))
  if digits == "" then
    call:play("no-input")
  else
    call:play("you-entered")
    for key in digits:gmatch(".") do
      call:play(KEY_SOUND[key] or ("digit-" .. key))
    end
  end
  call:play("goodbye")
  call:hangup()
end

-- How long a parked call waits before it rings back whoever parked it.
local PARK_SECONDS = 45

local function unpark(call, slot)
  local r = call:unpark(slot)
  if r.status == "unavailable" then
    call:answer()
    call:play("park-empty")
    call:hangup()
  end
end

-- *8 picks up a call ringing a phone of the caller's pickup group,
-- **NNNN one ringing extension NNNN.
local function pickup(call, ext)
  local r = call:pickup(ext)
  if r.status == "unavailable" then
    call:reject(404, "Nothing To Pick Up")
  end
end

-- The number dialled after the 9 as E.164: +CC... or 011/00 + CC...
-- (international), 1 + 10 digits or 10 digits (national). nil when it is
-- neither.
local function e164(number)
  if number:match("^%+%d+$") then
    return number
  elseif number:match("^011%d+$") then
    return "+" .. number:sub(4)
  elseif number:match("^00%d+$") then
    return "+" .. number:sub(3)
  elseif number:match("^" .. COUNTRY .. "%d%d%d%d%d%d%d%d%d%d$") then
    return "+" .. number
  elseif number:match("^%d%d%d%d%d%d%d%d%d%d$") then
    return "+" .. COUNTRY .. number
  end
  return nil
end

-- Why extension `ext` may not call `number` (E.164), or nil when it may.
local function refused(ext, number)
  if ext == nil or not ext.outbound then
    return "is not allowed to call out (outbound = true)"
  end
  local international = number:sub(1, #COUNTRY + 1) ~= "+" .. COUNTRY
  for _, prefix in ipairs(PREMIUM) do
    if number:sub(1, #prefix) == prefix then
      international = true
    end
  end
  if international and not ext.international then
    return "is not allowed to call international or premium numbers (international = true)"
  end
  return nil
end

local function call_out(call, dialled)
  local number = EMERGENCY[dialled] and dialled or e164(dialled)
  if number == nil then
    call:reject(484, "Address Incomplete")
    return
  end
  if not EMERGENCY[dialled] then
    local why = refused(call.caller and pbx.extension(call.caller), number)
    if why then
      log.warn(tostring(call.caller) .. " " .. why .. ": " .. number .. " refused")
      call:reject(403, "Forbidden")
      return
    end
  end
  local targets = {}
  for _, trunk in ipairs(TRUNKS) do
    targets[#targets + 1] = "trunk:" .. trunk .. "/" .. number
  end
  local r = call:dial(targets, { timeout = 60 })
  if r.status ~= "answered" and r.status ~= "cancelled" and call.state ~= "ended" then
    call:reject(r.code >= 400 and r.code or 503)
  end
end

-- A call from a carrier: the extension whose did was dialled, else reception.
local function from_trunk(call)
  local ext = call.did and pbx.extension(call.did)
  if ext then
    call_extension(call, ext.id)
  elseif RECEPTION and pbx.extension(RECEPTION) then
    call_extension(call, RECEPTION)
  else
    call:reject(404, "Not Found")
  end
end

-- What each number reaches: exact numbers, then patterns (in order; a
-- handler returning false passes the number on).
local ROUTES = {}
local PATTERNS = {}

-- Hands `dest` to its route; false if no route takes it.
local function dispatch(call, dest)
  local exact = ROUTES[dest]
  if exact then
    exact(call, dest)
    return true
  end
  for _, p in ipairs(PATTERNS) do
    if dest:match(p[1]) and p[2](call, dest) ~= false then
      return true
    end
  end
  return false
end

-- Reception, 0: the same menu at any hour; after hours (or in night mode)
-- it opens with the closed prompt.
local RECEPTION_MENU = {
  ["1"] = "400", -- sales
  ["2"] = "401", -- support
  ["0"] = RECEPTION, -- the operator
}

local function reception(call)
  local open = tc.is_open(OFFICE)
  ivr.menu(call, {
    prompt = open and "reception-menu" or "reception-closed",
    options = RECEPTION_MENU,
    direct = "^1%d%d%d$",
    fail = RECEPTION,
    go = function(c, number)
      if not dispatch(c, number) then
        c:play("ivr-invalid")
        c:hangup()
      end
    end,
  })
end

ROUTES["0"] = reception
ROUTES["400"] = function(call)
  ringgroup.ring(call, "sales")
end
ROUTES["401"] = function(call)
  queue.enter(call, "support")
end
ROUTES["*45"] = function(call)
  queue.toggle(call)
end
ROUTES["600"] = function(call)
  call:answer()
  call:echo()
end
ROUTES["700"] = read_back
ROUTES["*97"] = function(call)
  if call.caller == nil then
    call:reject(403, "Forbidden")
  else
    vm.main(call, call.caller)
  end
end
ROUTES["*98"] = function(call)
  vm.main(call)
end
ROUTES["*8"] = function(call)
  pickup(call, nil)
end
ROUTES["70"] = function(call)
  if call.transfer ~= nil then
    -- A blind transfer to the park: the transferor hears the slot and is
    -- rung back on timeout.
    call:park({ timeout = PARK_SECONDS, ringback = call.transfer.by })
  else
    call:park({ timeout = PARK_SECONDS, announce = true })
  end
end

PATTERNS[#PATTERNS + 1] = {
  "^1%d%d%d$",
  function(call, dest)
    if pbx.extension(dest) == nil then
      return false
    end
    call_extension(call, dest)
  end,
}
PATTERNS[#PATTERNS + 1] = {
  "^%*%*%d%d%d%d$",
  function(call, dest)
    pickup(call, dest:sub(3))
  end,
}
PATTERNS[#PATTERNS + 1] = {
  "^7[1-9]$",
  function(call, dest)
    unpark(call, tonumber(dest))
  end,
}
PATTERNS[#PATTERNS + 1] = {
  "^9",
  function(call, dest)
    local number = dest:sub(2)
    if call.caller == nil or not (EMERGENCY[number] or e164(number)) then
      return false
    end
    call_out(call, number)
  end,
}

---@param call Call
function route(call)
  if call.trunk then
    from_trunk(call)
    return
  end
  local dest = call.request_uri.user
  if
    callforward.feature(call, dest)
    or speeddial.feature(call, dest)
    or dnd.feature(call, dest)
    or tc.feature(call, dest, OFFICE)
  then
    return
  end
  dest = speeddial.expand(dest) or dest
  if not dispatch(call, dest) then
    call:reject(404, "Not Found")
  end
end
