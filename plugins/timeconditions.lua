-- plugins/timeconditions.lua: office hours, holidays and a night-mode
-- switch.
--
--   local tc = require("timeconditions")
--   local OFFICE = tc.hours("office", {
--     "mon-fri 09:00-17:30",
--     "sat 10:00-12:00",
--     except = { "2026-12-25", "01-01" },  -- a date, or MM-DD every year
--     lamp = "*28",                          -- optional: night mode's busy lamp
--   })
--   tc.is_open(OFFICE)       -- true within the hours, not on a holiday,
--                            -- and not in night mode
--   tc.feature(call, dest, OFFICE)  -- *28 toggles the night mode
--
-- Each string of the table is DAYS HH:MM-HH:MM: DAYS is a day (mon, tue,
-- wed, thu, fri, sat, sun), a range (mon-fri; fri-mon wraps) or a list
-- (mon,wed,fri); the time range includes its start and excludes its end,
-- and one that ends before it starts (22:00-06:00) runs past midnight (the
-- hours after midnight count for the day listed too). `except` lists
-- closed days. Times are local: `[dialplan] timezone` in the config, else
-- the process's TZ. A mistake in the table is an error when the file
-- loads (`switchboard check` and reload report it with its line).
--
-- Night mode forces "closed" whatever the hour, until toggled off again
-- (`*28` from any extension, or tc.set_night); it is kept in kv (namespace
-- "timeconditions", key "night:NAME"), so it survives restarts.
--
-- With `lamp`, night mode shows on that busy lamp (pbx.set_lamp): a BLF
-- key on *28 lights while it is on. *28 and set_night set the lamp, and
-- on_start sets it from kv when the server starts (lamps outlive reloads).

local M = {}

local NS = "timeconditions"

-- The schedules with a lamp, by lamp name (for on_start).
local lamps = {}

local DAYS = { mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6, sun = 7 }

-- "HH:MM" as minutes since midnight, or nil.
local function minutes(text)
  local h, m = text:match("^(%d%d?):(%d%d)$")
  h, m = tonumber(h), tonumber(m)
  if h == nil or h > 24 or m > 59 or (h == 24 and m > 0) then
    return nil
  end
  return h * 60 + m
end

-- "mon-fri", "sat", "mon,wed,fri" as a set {[1..7] = true}, or nil.
local function days(text)
  local set = {}
  for part in text:gmatch("[^,]+") do
    local from, to = part:match("^(%a%a%a)%-(%a%a%a)$")
    if from then
      local a, b = DAYS[from], DAYS[to]
      if a == nil or b == nil then
        return nil
      end
      local d = a
      while true do
        set[d] = true
        if d == b then
          break
        end
        d = d % 7 + 1
      end
    elseif DAYS[part] then
      set[DAYS[part]] = true
    else
      return nil
    end
  end
  if next(set) == nil then
    return nil
  end
  return set
end

--- A schedule named `name` (for its night mode) from `spec` (see above).
--- Raises an error naming the bad entry.
function M.hours(name, spec)
  if type(name) ~= "string" or not name:match("^[%w_-]+$") then
    error("timeconditions.hours: expected a name of letters, digits, _ or -, got " .. tostring(name), 2)
  end
  if type(spec) ~= "table" then
    error("timeconditions.hours: expected a table of \"DAYS HH:MM-HH:MM\" strings, got " .. type(spec), 2)
  end
  local schedule = { name = name, ranges = {}, except = {} }
  for i, entry in ipairs(spec) do
    local d, from, to = tostring(entry):match("^%s*(%S+)%s+(%d%d?:%d%d)%-(%d%d?:%d%d)%s*$")
    local set = d and days(d:lower())
    local a, b = from and minutes(from), to and minutes(to)
    if set == nil or a == nil or b == nil then
      error(
        "timeconditions.hours: entry " .. i .. ' ("' .. tostring(entry)
          .. '") is not "DAYS HH:MM-HH:MM" (DAYS like mon-fri, sat or mon,wed,fri)',
        2
      )
    end
    schedule.ranges[#schedule.ranges + 1] = { days = set, from = a, to = b }
  end
  for k in pairs(spec) do
    if type(k) ~= "number" and k ~= "except" and k ~= "lamp" then
      error("timeconditions.hours: unknown key " .. tostring(k) .. " (only except and lamp)", 2)
    end
  end
  if spec.lamp ~= nil then
    if type(spec.lamp) ~= "string" or not spec.lamp:match("^[%w*+._-]+$") then
      error("timeconditions.hours: lamp must be a name of letters, digits and * + . _ - (\"*28\"), got "
        .. tostring(spec.lamp), 2)
    end
    schedule.lamp = spec.lamp
    lamps[spec.lamp] = schedule
  end
  for i, date in ipairs(spec.except or {}) do
    if type(date) ~= "string" or not (date:match("^%d%d%d%d%-%d%d%-%d%d$") or date:match("^%d%d%-%d%d$")) then
      error("timeconditions.hours: except[" .. i .. "] is not YYYY-MM-DD or MM-DD", 2)
    end
    schedule.except[date] = true
  end
  return schedule
end

-- Whether `schedule` is open at local time `now` (os.date("*t")),
-- ignoring night mode.
local function within(schedule, now)
  if schedule.except[string.format("%04d-%02d-%02d", now.year, now.month, now.day)]
    or schedule.except[string.format("%02d-%02d", now.month, now.day)]
  then
    return false
  end
  local day = (now.wday + 5) % 7 + 1 -- os.date's 1 = Sunday; here 1 = Monday
  local yesterday = (day + 5) % 7 + 1
  local t = now.hour * 60 + now.min
  for _, r in ipairs(schedule.ranges) do
    if r.from < r.to then
      if r.days[day] and t >= r.from and t < r.to then
        return true
      end
    elseif r.from > r.to then
      -- Past midnight: the evening of a listed day, or the early hours
      -- after one.
      if (r.days[day] and t >= r.from) or (r.days[yesterday] and t < r.to) then
        return true
      end
    end
  end
  return false
end

--- Whether night mode of `schedule` is on.
function M.night(schedule)
  return kv.get(NS, "night:" .. schedule.name) ~= nil
end

--- Turns night mode of `schedule` on (`on` true) or off.
function M.set_night(schedule, on)
  if on then
    kv.set(NS, "night:" .. schedule.name, "on")
  else
    kv.delete(NS, "night:" .. schedule.name)
  end
  if schedule.lamp then
    pbx.set_lamp(schedule.lamp, on and "busy" or "idle")
  end
end

--- Plugin hook: when the server starts, each schedule's lamp shows its
--- night mode as kept in kv.
function M.on_start()
  for name, schedule in pairs(lamps) do
    pbx.set_lamp(name, M.night(schedule) and "busy" or "idle")
  end
end

--- Whether `schedule` is open now: within its hours, not on a holiday,
--- and not in night mode. `when` (os.time() seconds) asks about another
--- moment.
function M.is_open(schedule, when)
  if M.night(schedule) then
    return false
  end
  return within(schedule, os.date("*t", when))
end

--- Handles *28: toggles night mode of `schedule` and says which it now is
--- (night-on / night-off). Returns true if `dest` was that code.
function M.feature(call, dest, schedule)
  if dest ~= "*28" then
    return false
  end
  if call.caller == nil then
    call:reject(403, "Forbidden")
    return true
  end
  local on = not M.night(schedule)
  M.set_night(schedule, on)
  log.info("night mode of " .. schedule.name .. " turned " .. (on and "on" or "off") .. " by " .. call.caller)
  call:answer()
  call:play(on and "night-on" or "night-off")
  call:hangup()
  return true
end

return M
