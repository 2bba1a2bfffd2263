-- plugins/speeddial.lua: two-digit speed dials shared by the office, kept in
-- kv (namespace "speeddial", key = the two digits).
--
--   *74NNXXXX  sets speed dial NN to extension XXXX
--   **NN       calls what speed dial NN points at
--
-- Setting answers, then hangs up, like the call forward codes.

local M = {}

local NS = "speeddial"

--- The number speed dial `code` (two digits) points at, or nil.
function M.lookup(code)
  return kv.get(NS, code)
end

--- Handles *74NNXXXX. Returns true if `dest` was that code.
function M.feature(call, dest)
  local code, target = dest:match("^%*74(%d%d)(%d%d%d%d)$")
  if code == nil then
    return false
  end
  if call.caller == nil then
    call:reject(403, "Forbidden")
    return true
  end
  kv.set(NS, code, target)
  log.info("speed dial " .. code .. " set to " .. target .. " by " .. call.caller)
  call:answer()
  call:hangup()
  return true
end

--- For `**NN`, the number to call instead; nil for anything else, or for a
--- speed dial that is not set.
function M.expand(dest)
  local code = dest:match("^%*%*(%d%d)$")
  if code == nil then
    return nil
  end
  return M.lookup(code)
end

return M
