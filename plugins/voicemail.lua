-- plugins/voicemail.lua: voicemail on the `mailbox` module (audio under
-- dialplan.voicemail, metadata in storage; MWI and email hear of changes).
--
--   local vm = require("voicemail")
--   vm.leave(call, ext [, opts])  -- the caller leaves a message for ext
--   vm.main(call [, ext])         -- the mailbox menu (ext nil: ask for it)
--
-- Leaving: ext's recorded greeting (opts.greeting = "busy" or
-- "unavailable", default "unavailable"), else a default one that says ext's
-- recorded name or number; a key skips it, 0 goes to opts.operator if set;
-- a beep, then the message until #, hang-up, opts.silence seconds without
-- voice (default 4) or opts.max_message seconds (default 120). Messages
-- shorter than 1 s are discarded.
--
-- Listening: the PIN (voicemail_pin of the extension; 3 wrong tries and the
-- call is hung up, logged). An extension without a PIN opens its own
-- mailbox (vm.main(call, call.caller)) without one, and no other. Then the
-- new and old counts, and the main menu:
--   1 listen (new messages first), 0 mailbox options, * hang up.
-- After a message: 5 again, 4 previous, 6 next, 7 delete, 9 save,
--   3 call back, * main menu.
-- Options: 1 record the unavailable greeting, 2 the busy greeting,
--   3 the name, * main menu.
-- Every prompt stops at once when a key is pressed (barge-in).

local M = {}

local DEFAULT_MAX_MESSAGE = 120
-- A message ends after this many seconds without voice.
local DEFAULT_SILENCE = 4
local GREETING_MAX = 60
local PIN_TRIES = 3
local MENU_TIMEOUT = 10

-- How sounds/ names the keys of a phone's keypad.
local KEY_SOUND = { ["*"] = "digit-star", ["#"] = "digit-pound" }

-- Plays `file`; a key pressed stops it and is returned.
local function prompt(call, file)
  return call:play(file, { interrupt = true })
end

-- Says `text`'s digits one by one; a key stops it and is returned.
local function say_digits(call, text)
  for key in tostring(text):gmatch("[%d*#]") do
    local k = prompt(call, KEY_SOUND[key] or ("digit-" .. key))
    if k then
      return k
    end
  end
end

-- Plays each item (a file name, or a function returning a key or nil) in
-- turn until a key is pressed; returns it.
local function sequence(call, items)
  for _, item in ipairs(items) do
    local k
    if type(item) == "function" then
      k = item()
    else
      k = prompt(call, item)
    end
    if k then
      return k
    end
  end
end

-- Plays `file` and reads up to `max` keys ending with #; keys typed during
-- the prompt count.
local function ask(call, file, max, timeout)
  local key = prompt(call, file)
  if key == "#" then
    return ""
  end
  if key and max == 1 then
    return key
  end
  local rest = call:read_digits({
    max = max - (key and 1 or 0),
    timeout = timeout or 5,
    terminator = "#",
  })
  return (key or "") .. rest
end

-- Who is calling, as a message records it.
local function caller_of(call)
  local from = call.from
  if from.display and from.display ~= "" then
    return '"' .. from.display .. '" <' .. from.uri .. ">"
  end
  if from.user ~= "" then
    return from.user
  end
  return from.uri
end

-- The number to call back for a message's caller, if any.
local function callback_number(caller)
  return caller:match("<sips?:([^@>;]+)") or caller:match("^sips?:([^@;]+)") or caller:match("^[%d*#+]+$")
end

--- The caller leaves a message in `ext`'s mailbox. `opts`: `greeting`
--- ("busy" | "unavailable"), `operator` (extension for 0), `max_message`
--- (seconds). Returns the message table, or nil.
function M.leave(call, ext, opts)
  opts = opts or {}
  local kind = opts.greeting == "busy" and "busy" or "unavailable"
  call:answer()
  local key
  local recorded = mailbox.greeting(ext, kind)
  if recorded then
    key = prompt(call, recorded)
  else
    local name = mailbox.greeting(ext, "name")
    key = sequence(call, {
      name or "vm-person-at",
      function()
        if not name then
          return say_digits(call, ext)
        end
      end,
      "vm-" .. kind,
    })
  end
  if key == "0" and opts.operator then
    log.info("voicemail: caller pressed 0 at " .. ext .. "'s greeting, dialling " .. opts.operator)
    call:dial(opts.operator, { timeout = 20 })
    return nil
  end
  call:play("vm-beep")
  local file = mailbox.scratch(ext)
  local r = call:record(file, {
    max = opts.max_message or DEFAULT_MAX_MESSAGE,
    terminator = "#",
    silence = opts.silence or DEFAULT_SILENCE,
  })
  local message = mailbox.save(ext, file, caller_of(call))
  if message then
    log.info("voicemail: " .. message.caller .. " left " .. ext .. " a message of " .. message.duration .. " s")
  end
  if r.reason ~= "hangup" and call:is_up() then
    call:play("goodbye")
    call:hangup()
  end
  return message
end

-- Asks for the PIN (and for *98 the mailbox) up to 3 times. Returns the
-- mailbox, or nil after the last wrong try (logged).
local function login(call, ext)
  local own = ext
  for try = 1, PIN_TRIES do
    local box = own
    if box == nil then
      box = ask(call, "vm-mailbox", 16, MENU_TIMEOUT)
    end
    local ok
    if box ~= "" and pbx.extension(box) then
      local open = mailbox.check_pin(box, "")
      if open == nil and own ~= nil and call.caller == box then
        return box -- no PIN set: its own phone opens it
      end
      if open ~= nil then
        local pin = ask(call, "vm-password", 16, MENU_TIMEOUT)
        ok = pin ~= "" and mailbox.check_pin(box, pin)
      end
    end
    if ok then
      return box
    end
    log.warn("voicemail: wrong PIN for mailbox " .. (box ~= "" and box or "?") .. " (try " .. try .. " of " .. PIN_TRIES .. ")")
    prompt(call, "vm-incorrect")
  end
  log.warn("voicemail: " .. PIN_TRIES .. " wrong PINs, hanging up")
  return nil
end

-- "You have N new messages. You have M old messages."
local function say_counts(call, ext)
  local c = mailbox.counts(ext)
  return sequence(call, {
    "vm-you-have",
    function() return say_digits(call, c.new) end,
    "vm-new",
    "vm-messages",
    "vm-you-have",
    function() return say_digits(call, c.old) end,
    "vm-old",
    "vm-messages",
  })
end

-- The messages to go through: new ones first, then old, each oldest first.
local function in_order(ext)
  local new, old = {}, {}
  for _, m in ipairs(mailbox.list(ext)) do
    table.insert(m.new and new or old, m)
  end
  for _, m in ipairs(old) do
    table.insert(new, m)
  end
  return new
end

-- Goes through the messages. Returns "over" if the call is over.
local function listen(call, ext)
  local list = in_order(ext)
  if #list == 0 then
    prompt(call, "vm-no-more")
    return
  end
  local i = 1
  local again = true
  while true do
    local m = list[i]
    local key
    if again then
      log.info("voicemail: mailbox " .. ext .. " plays message " .. m.id)
      key = sequence(call, {
        "vm-message",
        function() return say_digits(call, i) end,
        m.file,
      })
      if m.new then
        mailbox.heard(ext, m.id)
        m.new = false
      end
    end
    again = true
    key = key or ask(call, "vm-message-menu", 1, MENU_TIMEOUT)
    if key == "5" then
      -- again
    elseif key == "4" then
      if i > 1 then
        i = i - 1
      else
        prompt(call, "vm-no-more")
      end
    elseif key == "6" or key == "9" then
      if key == "9" then
        prompt(call, "vm-saved")
      end
      if i < #list then
        i = i + 1
      else
        prompt(call, "vm-no-more")
        return
      end
    elseif key == "7" then
      mailbox.delete(ext, m.id)
      log.info("voicemail: mailbox " .. ext .. " deleted message " .. m.id)
      prompt(call, "vm-deleted")
      table.remove(list, i)
      if i > #list then
        prompt(call, "vm-no-more")
        return
      end
    elseif key == "3" then
      local number = callback_number(m.caller)
      if number and pbx.extension(number) then
        log.info("voicemail: mailbox " .. ext .. " calls back " .. number)
        call:dial(number, { timeout = 30 })
        return "over"
      end
      prompt(call, "vm-invalid")
      again = false
    elseif key == "*" or key == "" then
      return
    else
      prompt(call, "vm-invalid")
      again = false
    end
  end
end

-- Records greeting `kind` and plays it back.
local function record_greeting(call, ext, kind)
  prompt(call, "vm-record-after")
  call:play("vm-beep")
  local file = mailbox.scratch(ext)
  local r = call:record(file, { max = GREETING_MAX, terminator = "#" })
  local kept = mailbox.set_greeting(ext, kind, file)
  if r.reason == "hangup" then
    return "over"
  end
  if kept then
    log.info("voicemail: mailbox " .. ext .. " recorded its " .. kind .. " greeting")
    prompt(call, "vm-recorded")
    prompt(call, mailbox.greeting(ext, kind))
  else
    prompt(call, "vm-too-short")
  end
end

local GREETING_KEYS = { ["1"] = "unavailable", ["2"] = "busy", ["3"] = "name" }

local function options(call, ext)
  while true do
    local key = ask(call, "vm-options", 1, MENU_TIMEOUT)
    local kind = GREETING_KEYS[key]
    if kind then
      if record_greeting(call, ext, kind) == "over" then
        return "over"
      end
    elseif key == "*" or key == "" then
      return
    else
      prompt(call, "vm-invalid")
    end
  end
end

--- The mailbox menu: `ext`'s mailbox (*97), or the one the caller types
--- (*98, `ext` nil).
function M.main(call, ext)
  call:answer()
  local box = login(call, ext)
  if box == nil then
    call:play("goodbye")
    call:hangup()
    return
  end
  log.info("voicemail: mailbox " .. box .. " opened")
  local key = say_counts(call, box)
  local idle = 0
  while idle < 3 do
    key = key or ask(call, "vm-main-menu", 1, MENU_TIMEOUT)
    local over
    if key == "1" then
      over = listen(call, box)
    elseif key == "0" then
      over = options(call, box)
    elseif key == "*" then
      break
    elseif key == "" then
      idle = idle + 1
    else
      prompt(call, "vm-invalid")
    end
    if over == "over" then
      return
    end
    key = nil
  end
  call:play("goodbye")
  call:hangup()
end

return M
