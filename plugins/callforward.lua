-- plugins/callforward.lua: unconditional call forwarding, one target per
-- extension, kept in kv (namespace "callforward", key = the extension).
--
--   *72NNNN  the caller's calls go to extension NNNN from now on
--   *73      the caller's forward is cleared
--
-- Both answer, then hang up (the confirmation is the answer itself; a tone
-- comes with the media actions). Only extensions that placed the call
-- (call.caller) can set or clear a forward, and only to an extension that
-- exists.

local M = {}

local NS = "callforward"

--- The forward target of extension `ext`, or nil.
function M.target(ext)
  return kv.get(NS, ext)
end

--- Forwards extension `ext` to extension `target`.
function M.set(ext, target)
  kv.set(NS, ext, target)
end

--- Clears the forward of `ext`; true if there was one.
function M.clear(ext)
  return kv.delete(NS, ext)
end

--- Handles the feature codes. Returns true if `dest` was one (the call has
--- then been answered or rejected), false if it is a normal number.
function M.feature(call, dest)
  local target = dest:match("^%*72(%d%d%d%d)$")
  if target == nil and dest ~= "*73" then
    return false
  end
  local ext = call.caller
  if ext == nil then
    call:reject(403, "Forbidden")
    return true
  end
  if target then
    if target == ext or pbx.extension(target) == nil then
      call:reject(404, "Not Found")
      return true
    end
    M.set(ext, target)
    log.info("call forward: " .. ext .. " now goes to " .. target)
  else
    M.clear(ext)
    log.info("call forward: " .. ext .. " cleared")
  end
  call:answer()
  call:hangup()
  return true
end

--- The extension to ring for a call to `ext`: its forward target if one is
--- set, else `ext` itself. One hop only, so two extensions forwarded to each
--- other cannot loop.
function M.resolve(ext)
  local target = M.target(ext)
  if target ~= nil and target ~= ext then
    return target
  end
  return ext
end

return M
