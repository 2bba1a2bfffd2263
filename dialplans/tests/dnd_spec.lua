-- Specs of do-not-disturb (plugins/dnd.lua through default.lua): *76
-- toggles it; a call to an extension in do-not-disturb goes to voicemail.

before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("*76 turns do-not-disturb on, then off again", function()
  local on = sim.call({ from = "1002", to = "*76" })
  expect(on):answered()
  expect(on):played("dnd-on")
  expect(on):hung_up()
  expect(sim.kv.get("dnd", "1002")):equals("on")
  local off = sim.call({ from = "1002", to = "*76" })
  expect(off):played("dnd-off")
  expect(sim.kv.get("dnd", "1002")):is_nil()
end)

it("a call to an extension in do-not-disturb goes to voicemail without ringing it", function()
  sim.kv.set("dnd", "1002", "on")
  local call = sim.call({ from = "1001", to = "1002" })
  expect(call):not_dialled("1002")
  expect(call):played("vm-busy")
  expect(call):played("vm-beep")
end)

it("only an extension can toggle do-not-disturb", function()
  local call = sim.call({ from = "1002", to = "*76", caller = false })
  expect(call):rejected(403)
end)
