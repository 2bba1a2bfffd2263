-- plugins/ivr.lua: voice menus ("press 1 for sales").
--
--   local ivr = require("ivr")
--   ivr.menu(call, {
--     prompt = "reception-menu",       -- played first (a key stops it)
--     options = {
--       ["1"] = "400",                 -- a number: handed to `go`
--       ["2"] = function(call) ... end, -- anything
--       ["9"] = { prompt = "...", options = { ... } },  -- a nested menu
--       ["*"] = "back",                -- (in a nested menu) the menu above
--     },
--     go = function(call, number) ... end,  -- how a number is reached
--                                  -- (default.lua: its own routing);
--                                  -- nested menus inherit it
--     direct = "^1%d%d%d$",        -- numbers callers may type instead
--                                  -- of a choice (extensions; nil: none)
--     invalid = "ivr-invalid",     -- after a key that means nothing
--     timeout_prompt = "no-input", -- after no key within `timeout` s
--     timeout = 5,
--     retries = 3,                 -- prompts before giving up
--     fail = "1000",               -- then: a number for `go`, a
--                                  -- function(call), or nil (goodbye,
--                                  -- hang up)
--   })
--
-- The call is answered first. A key typed during the prompt stops it.
-- With `direct`, a key that could start such a number waits
-- `direct_timeout` seconds (default 2) for more keys: "1" alone is the
-- choice 1, "1002" is extension 1002 (when pbx.extension knows it;
-- otherwise invalid). `#` ends a typed number at once. Returns what the
-- destination returned ("back" when a nested menu was left with "back").

local M = {}

local DEFAULTS = {
  invalid = "ivr-invalid",
  timeout_prompt = "no-input",
  timeout = 5,
  retries = 3,
  direct_timeout = 2,
}

local KEYS = {
  prompt = true, options = true, go = true, direct = true, invalid = true,
  timeout_prompt = true, timeout = true, retries = true, fail = true,
  direct_timeout = true,
}

local function check(menu, where)
  if type(menu) ~= "table" then
    error("ivr.menu: expected a menu table" .. where, 3)
  end
  for k in pairs(menu) do
    if not KEYS[k] then
      error("ivr.menu: unknown key " .. tostring(k) .. where, 3)
    end
  end
  if type(menu.prompt) ~= "string" then
    error("ivr.menu: prompt must be a sound name" .. where, 3)
  end
  if type(menu.options) ~= "table" then
    error("ivr.menu: options must be a table of key = destination" .. where, 3)
  end
  for key, dest in pairs(menu.options) do
    if type(key) ~= "string" or not key:match("^[0-9*#]$") then
      error("ivr.menu: option " .. tostring(key) .. " is not one key (0-9, *, #)" .. where, 3)
    end
    local t = type(dest)
    if t ~= "string" and t ~= "function" and t ~= "table" then
      error("ivr.menu: option " .. key .. " must be a number, a function or a menu" .. where, 3)
    end
  end
end

-- A nested menu takes the settings it does not give from its parent.
local function inherit(child, parent)
  local out = {}
  for k, v in pairs(child) do
    out[k] = v
  end
  for _, k in ipairs({ "go", "direct", "invalid", "timeout_prompt", "timeout", "retries", "direct_timeout" }) do
    if out[k] == nil then
      out[k] = parent[k]
    end
  end
  return out
end

local function setting(menu, k)
  if menu[k] ~= nil then
    return menu[k]
  end
  return DEFAULTS[k]
end

local function go(call, menu, number)
  if type(menu.go) ~= "function" then
    error("ivr.menu: destination " .. number .. " needs a go = function(call, number)", 3)
  end
  log.info("ivr: to " .. number)
  return menu.go(call, number)
end

local run

-- Takes the destination `dest` chosen in `menu`.
local function take(call, menu, dest, depth)
  if type(dest) == "function" then
    return dest(call)
  elseif type(dest) == "table" then
    local sub = inherit(dest, menu)
    check(sub, " (a nested menu)")
    local r = run(call, sub, depth + 1)
    if r == "back" then
      return run(call, menu, depth)
    end
    return r
  elseif dest == "back" then
    return "back"
  end
  return go(call, menu, dest)
end

-- What the caller typed: one key, or a number when `direct` allows it;
-- "" for nothing.
local function listen(call, menu)
  local key = call:play(menu.prompt, { interrupt = true })
  if key == nil then
    key = call:read_digits({ max = 1, timeout = setting(menu, "timeout"), terminator = "" })
  end
  if key == "" or menu.direct == nil or not key:match("%d") then
    return key
  end
  -- Could it start a number the caller may dial? ("1" for "^1%d%d%d$")
  local longest = 8
  local rest = call:read_digits({
    max = longest,
    timeout = setting(menu, "direct_timeout"),
    terminator = "#",
  })
  return key .. rest
end

run = function(call, menu, depth)
  if depth > 16 then
    error("ivr.menu: menus nested more than 16 deep", 2)
  end
  for _ = 1, setting(menu, "retries") do
    local typed = listen(call, menu)
    if typed == "" then
      call:play(setting(menu, "timeout_prompt"))
    elseif #typed == 1 and menu.options[typed] ~= nil then
      return take(call, menu, menu.options[typed], depth)
    elseif #typed > 1 and typed:match(menu.direct) and pbx.extension(typed) then
      return go(call, menu, typed)
    else
      log.info("ivr: invalid choice " .. typed)
      call:play(setting(menu, "invalid"))
    end
  end
  log.info("ivr: no valid choice after " .. setting(menu, "retries") .. " tries")
  if type(menu.fail) == "function" then
    return menu.fail(call)
  elseif type(menu.fail) == "string" then
    return go(call, menu, menu.fail)
  end
  call:play("goodbye")
  call:hangup()
  return nil
end

--- Runs `menu` (see above) for `call`; returns what the chosen
--- destination returned.
function M.menu(call, menu)
  check(menu, "")
  call:answer()
  return run(call, menu, 1)
end

return M
