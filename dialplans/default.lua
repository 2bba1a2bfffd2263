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

local RING_SECONDS = 20
-- The extension a caller reaches by pressing 0 during a voicemail greeting
-- (nil: 0 just skips the greeting), e.g. "1000".
local OPERATOR = nil

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

---@param call Call
function route(call)
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
  elseif dest == "70" then
    call:park({ timeout = PARK_SECONDS, announce = true })
  elseif dest:match("^7[1-9]$") then
    unpark(call, tonumber(dest))
  else
    call:reject(404, "Not Found")
  end
end
