-- Specs of call forwarding (plugins/callforward.lua through default.lua):
-- *72NNNN sets a forward, *73 clears it.

before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("*72NNNN forwards the caller's extension", function()
  local call = sim.call({ from = "1002", to = "*721003" })
  expect(call):answered()
  expect(call):hung_up()
  expect(sim.kv.get("callforward", "1002")):equals("1003")
end)

it("a call to a forwarded extension rings the target", function()
  sim.kv.set("callforward", "1002", "1003")
  local call = sim.call({ from = "1001", to = "1002" })
  expect(call):dialled("1003", { timeout = 20 })
  expect(call):not_dialled("1002")
end)

it("a forward set by a call is used by the next call", function()
  local set = sim.call({ from = "1002", to = "*721003" })
  set:run()
  local call = sim.call({ from = "1001", to = "1002" })
  expect(call):dialled("1003")
end)

it("*73 clears the forward", function()
  sim.kv.set("callforward", "1002", "1003")
  local call = sim.call({ from = "1002", to = "*73" })
  expect(call):hung_up()
  expect(sim.kv.get("callforward", "1002")):is_nil()
end)

it("a forward to an unknown extension is refused", function()
  local call = sim.call({ from = "1002", to = "*729999" })
  expect(call):rejected(404)
  expect(sim.kv.get("callforward", "1002")):is_nil()
end)

it("only an extension can set a forward", function()
  local call = sim.call({ from = "1002", to = "*721003", caller = false })
  expect(call):rejected(403)
end)
