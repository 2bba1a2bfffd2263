-- Specs of office hours and night mode (plugins/timeconditions.lua
-- through default.lua: mon-fri 09:00-17:30, closed 12-25, 12-26, 01-01;
-- *28 toggles night mode). Reception (0) answers at any hour; only its
-- prompt changes.

before_each(function()
  for _, id in ipairs({ "1000", "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("within office hours 0 plays the reception menu", function()
  sim.clock:set("2026-12-08 10:00") -- a Tuesday
  local call = sim.call({ from = "1001", to = "0" })
  expect(call):answered()
  expect(call):played("reception-menu")
  for _, a in ipairs(call:actions()) do
    expect(a.file == "reception-closed.wav"):equals(false)
  end
end)

it("after hours 0 answers with the closed prompt", function()
  sim.clock:set("2026-12-08 17:30") -- closing time
  local call = sim.call({ from = "1001", to = "0" })
  expect(call):answered()
  expect(call):played("reception-closed")
end)

it("at the weekend and on holidays the office is closed", function()
  sim.clock:set("2026-12-12 11:00") -- a Saturday
  expect(sim.call({ from = "1001", to = "0" })):played("reception-closed")
  sim.clock:set("2026-12-25 11:00") -- a Friday, Christmas
  expect(sim.call({ from = "1001", to = "0" })):played("reception-closed")
end)

it("*28 forces night mode during office hours, and *28 again ends it", function()
  sim.clock:set("2026-12-08 10:00")
  local on = sim.call({ from = "1002", to = "*28" })
  expect(on):played("night-on")
  expect(on):hung_up()
  expect(sim.kv.get("timeconditions", "night:office")):equals("on")
  expect(sim.call({ from = "1001", to = "0" })):played("reception-closed")
  local off = sim.call({ from = "1002", to = "*28" })
  expect(off):played("night-off")
  expect(sim.call({ from = "1001", to = "0" })):played("reception-menu")
end)

it("*28 lights the night-mode lamp *28 and *28 again clears it", function()
  sim.clock:set("2026-12-08 10:00")
  expect(sim.lamp("*28")):is_nil()
  expect(sim.call({ from = "1002", to = "*28" })):played("night-on")
  expect(sim.lamp("*28")):equals("busy")
  expect(sim.call({ from = "1003", to = "*28" })):played("night-off")
  expect(sim.lamp("*28")):equals("idle")
end)
