-- Specs of the voice menu helper (plugins/ivr.lua) through default.lua's
-- reception on 0: 1 sales (400), 0 the operator (1000), or an extension
-- dialled directly; invalid keys and silence are retried 3 times.

before_each(function()
  for _, id in ipairs({ "1000", "1001", "1002", "1003" }) do
    sim.extension(id)
  end
  sim.clock:set("2026-12-08 10:00")
end)

it("1 reaches sales, the ring group on 400", function()
  local call = sim.call({ from = "1003", to = "0" })
  call:sends_digits("1")
  expect(call):played("reception-menu")
  expect(call):dialled("1001", { timeout = 15 })
end)

it("0 reaches the operator", function()
  local call = sim.call({ from = "1003", to = "0" })
  call:sends_digits("0")
  expect(call):dialled("1000", { timeout = 20 })
end)

it("an extension can be dialled from the menu", function()
  local call = sim.call({ from = "1003", to = "0" })
  call:sends_digits("1002")
  expect(call):dialled("1002", { timeout = 20 })
  expect(call):not_dialled("1001")
end)

it("an invalid key is said so and the menu is played again", function()
  local call = sim.call({ from = "1003", to = "0" })
  call:sends_digits("7#0") -- 7 is no choice (# ends it), then 0
  expect(call):played("ivr-invalid")
  expect(call):dialled("1000")
end)

it("silence three times goes to the operator", function()
  local call = sim.call({ from = "1003", to = "0" })
  expect(call):played("no-input")
  local menus = 0
  for _, a in ipairs(call:actions()) do
    if a.action == "play" and a.file == "reception-menu.wav" then
      menus = menus + 1
    end
  end
  expect(menus):equals(3)
  expect(call):dialled("1000")
end)
