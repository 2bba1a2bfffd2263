-- Specs of ring groups (plugins/ringgroup.lua) through default.lua's
-- sales group on 400: hunt 1001, 1002, 1003, 15 s each, then reception's
-- voicemail. Other strategies: tests/office_plugins.rs.

before_each(function()
  for _, id in ipairs({ "1000", "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("hunts in order, 15 s each, until a member answers", function()
  local call = sim.call({ from = "1000", to = "400" })
  sim.phone("1001"):never_answers()
  sim.phone("1002"):answers_after(4)
  expect(call):dialled("1001", { timeout = 15 })
  expect(call):dialled("1002", { timeout = 15 })
  expect(call):not_dialled("1003")
  expect(call):ended_with("bridged")
end)

it("passes over a busy member and rings the next", function()
  local call = sim.call({ from = "1000", to = "400" })
  sim.phone("1001"):is_busy()
  expect(call):not_dialled("1001")
  expect(call):dialled("1002", { timeout = 15 })
end)

it("passes over members that are unregistered or in do-not-disturb", function()
  sim.kv.set("dnd", "1001", "on")
  sim.phone("1002"):is_unregistered()
  local call = sim.call({ from = "1000", to = "400" })
  expect(call):not_dialled("1001")
  expect(call):not_dialled("1002")
  expect(call):dialled("1003")
end)

it("nobody answering goes to reception's voicemail", function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.phone(id):never_answers()
  end
  local call = sim.call({ from = "1000", to = "400" })
  expect(call):played("vm-person-at")
  expect(call):played("vm-unavailable")
  local recorded
  for _, a in ipairs(call:actions()) do
    if a.action == "record" then
      recorded = a.file
    end
  end
  expect(recorded:match("^voicemail/1000/")):equals("voicemail/1000/")
end)

it("every member busy gives the busy greeting", function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.phone(id):is_busy()
  end
  local call = sim.call({ from = "1000", to = "400" })
  expect(call):played("vm-busy")
end)
