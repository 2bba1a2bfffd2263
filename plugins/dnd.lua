-- plugins/dnd.lua: do-not-disturb, one flag per extension, kept in kv
-- (namespace "dnd", key = the extension) so it survives restarts.
--
--   *76  toggles the caller's do-not-disturb; the caller hears
--        "Do not disturb is on" (dnd-on) or "... is off" (dnd-off)
--
--   local dnd = require("dnd")
--   dnd.is_on(ext)        -- true while ext does not want calls
--   dnd.set(ext, on)      -- sets or clears it
--   dnd.feature(call, dest) -- handles *76; true if dest was that code
--
-- What a call to an extension in do-not-disturb gets is the dialplan's
-- choice (default.lua: voicemail with the busy greeting); ring groups
-- (plugins/ringgroup.lua) pass over members in do-not-disturb.

local M = {}

local NS = "dnd"

--- Whether extension `ext` is in do-not-disturb.
function M.is_on(ext)
  return kv.get(NS, ext) ~= nil
end

--- Turns do-not-disturb of `ext` on (`on` true) or off.
function M.set(ext, on)
  if on then
    kv.set(NS, ext, "on")
  else
    kv.delete(NS, ext)
  end
end

--- Toggles do-not-disturb of `ext`; returns whether it is now on.
function M.toggle(ext)
  local on = not M.is_on(ext)
  M.set(ext, on)
  return on
end

--- Handles *76. Returns true if `dest` was that code (the call has then
--- been answered, told the new state and hung up, or rejected), false
--- otherwise.
function M.feature(call, dest)
  if dest ~= "*76" then
    return false
  end
  if call.caller == nil then
    call:reject(403, "Forbidden")
    return true
  end
  local on = M.toggle(call.caller)
  log.info("do-not-disturb of " .. call.caller .. " is now " .. (on and "on" or "off"))
  call:answer()
  call:play(on and "dnd-on" or "dnd-off")
  call:hangup()
  return true
end

return M
