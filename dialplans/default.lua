-- dialplans/default.lua: the demo office.
--
-- Extensions 1000-1999 that exist in the configuration call each other; a
-- call rings for 20 s. Busy -> voicemail at once (busy greeting); no
-- answer within 20 s or not registered -> voicemail (unavailable
-- greeting); anything else -> 503. *97 opens the caller's own mailbox, *98
-- any mailbox (with its PIN); see plugins/voicemail.lua.
-- Call forwarding (*72NNNN / *73) and speed dials (*74NNXXXX / **NN) come
-- from plugins/. 600 is an echo test (you hear yourself); 700 plays a
-- prompt, reads up to four digits (end with #) and says them back. 70
-- parks the call (the caller hears "parked in slot 7N", then music); 71-79
-- pick up the call parked in that slot. *8 picks up a call ringing in the
-- caller's pickup group, **NNNN a call ringing extension NNNN. Anything
-- else is 404.

local callforward = require("callforward")
local speeddial = require("speeddial")
local vm = require("voicemail")
local queue = require("queue")

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
  local target = callforward.resolve(ext)
  if target ~= ext then
    log.info(ext .. " is forwarded to " .. target)
  end
  local r = call:dial(target, { timeout = RING_SECONDS })
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

---@param call Call
function route(call)
  if call.trunk then
    from_trunk(call)
    return
  end
  local dest = call.request_uri.user
  if callforward.feature(call, dest) or speeddial.feature(call, dest) then
    return
  end
  dest = speeddial.expand(dest) or dest
  if dest:match("^1%d%d%d$") and pbx.extension(dest) ~= nil then
    call_extension(call, dest)
  elseif dest == "*97" then
    if call.caller == nil then
      call:reject(403, "Forbidden")
    else
      vm.main(call, call.caller)
    end
  elseif dest == "*98" then
    vm.main(call)
  elseif dest == "600" then
    call:answer()
    call:echo()
  elseif dest == "700" then
    read_back(call)
  elseif dest == "*8" then
    pickup(call, nil)
  elseif dest:match("^%*%*%d%d%d%d$") then
    pickup(call, dest:sub(3))
  elseif dest == "70" and call.transfer ~= nil then
    -- A blind transfer to the park: the transferor hears the slot and is
    -- rung back on timeout.
    call:park({ timeout = PARK_SECONDS, ringback = call.transfer.by })
  elseif dest == "70" then
    call:park({ timeout = PARK_SECONDS, announce = true })
  elseif dest:match("^7[1-9]$") then
    unpark(call, tonumber(dest))
  elseif dest == "401" then
    queue.enter(call, "support")
  elseif dest == "*45" then
    queue.toggle(call)
  elseif call.caller and dest:match("^9") and (EMERGENCY[dest:sub(2)] or e164(dest:sub(2))) then
    call_out(call, dest:sub(2))
  else
    call:reject(404, "Not Found")
  end
end
