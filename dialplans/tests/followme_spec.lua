-- Specs of follow-me (plugins/followme.lua) through default.lua:
-- reception's desk phone (1000) rings 20 s, then 1003, then voicemail.

before_each(function()
  for _, id in ipairs({ "1000", "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("an unanswered desk phone follows on to the next number", function()
  sim.phone("1000"):never_answers()
  sim.phone("1003"):answers_after(2)
  local call = sim.call({ from = "1001", to = "1000" })
  expect(call):dialled("1000", { timeout = 20 })
  expect(call):dialled("1003", { timeout = 20 })
  expect(call):ended_with("bridged")
end)

it("answered at the desk, the list is not rung", function()
  local call = sim.call({ from = "1001", to = "1000" })
  expect(call):dialled("1000")
  expect(call):not_dialled("1003")
end)

it("nobody answering anywhere goes to the desk's voicemail", function()
  sim.phone("1000"):never_answers()
  sim.phone("1003"):never_answers()
  local call = sim.call({ from = "1001", to = "1000" })
  expect(call):dialled("1003")
  expect(call):played("vm-unavailable")
end)

it("a follow-me number in do-not-disturb is passed over", function()
  sim.phone("1000"):never_answers()
  sim.kv.set("dnd", "1003", "on")
  local call = sim.call({ from = "1001", to = "1000" })
  expect(call):not_dialled("1003")
  expect(call):played("vm-unavailable")
end)

it("a list set in kv replaces the defined one", function()
  sim.phone("1000"):never_answers()
  sim.kv.set("followme", "1000", "1002")
  local call = sim.call({ from = "1001", to = "1000" })
  expect(call):dialled("1002", { timeout = 20 })
  expect(call):not_dialled("1003")
end)

it("an outside number must press 1 to take the call; an extension need not", function()
  sim.phone("1000"):never_answers()
  sim.kv.set("followme", "1000", "1003,trunk:carrier/+15557654321")
  sim.phone("1003"):never_answers()
  local call = sim.call({ from = "1001", to = "1000" })
  local asked = {}
  for _, a in ipairs(call:actions()) do
    if a.action == "dial" then
      asked[a.targets[1]] = a.file or "none"
    end
  end
  expect(asked["1003"]):equals("none")
  expect(asked["trunk:carrier/+15557654321"]):equals("followme-accept.wav")
end)
