-- Specs of speed dials (plugins/speeddial.lua through default.lua):
-- *74NNXXXX sets speed dial NN to XXXX, **NN calls it.

before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("*74NNXXXX sets a speed dial", function()
  local call = sim.call({ from = "1001", to = "*74071003" })
  expect(call):answered()
  expect(call):hung_up()
  expect(sim.kv.get("speeddial", "07")):equals("1003")
end)

it("**NN dials what the speed dial points at", function()
  sim.kv.set("speeddial", "07", "1003")
  local call = sim.call({ from = "1001", to = "**07" })
  expect(call):dialled("1003", { timeout = 20 })
end)

it("a speed dial set by one call is dialled by the next", function()
  sim.call({ from = "1001", to = "*74071002" }):run()
  local call = sim.call({ from = "1003", to = "**07" })
  sim.phone("1002"):is_busy()
  expect(call):dialled("1002")
  expect(call):played("vm-busy")
end)

it("an unset speed dial is 404", function()
  local call = sim.call({ from = "1001", to = "**42" })
  expect(call):rejected(404)
end)

it("only an extension can set a speed dial", function()
  local call = sim.call({ from = "1001", to = "*74071003", caller = false })
  expect(call):rejected(403)
end)
