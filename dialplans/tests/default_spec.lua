-- Specs of dialplans/default.lua: extensions call each other, 600 echo,
-- 700 read-back, 404 for anything else. Run with `switchboard test`.

before_each(function()
  -- The extensions these cases use, whatever the configuration has.
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("an extension rings another for 20 s and is bridged when it answers", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):answers_after(3)
  expect(call):dialled("1002", { timeout = 20 })
  expect(call):ended_with("bridged")
  expect(call):ended_with("answered")
end)

it("a busy extension gives 486", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):is_busy()
  expect(call):dialled("1002")
  expect(call):rejected(486)
  expect(call):ended_with("busy")
end)

it("no answer within 20 s gives 480", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):answers_after(25)
  expect(call):rejected(480)
  expect(call):ended_with("noanswer")
end)

it("an extension that is not registered gives 480", function()
  local call = sim.call({ from = "1001", to = "1003" })
  sim.phone("1003"):is_unregistered()
  expect(call):rejected(480)
  expect(call):ended_with("unavailable")
end)

it("an unknown number gives 404", function()
  local call = sim.call({ from = "1001", to = "5555" })
  expect(call):rejected(404)
  expect(call):not_dialled("5555")
end)

it("a 1xxx number that is not an extension gives 404", function()
  local call = sim.call({ from = "1001", to = "1999" })
  expect(call):rejected(404)
end)

it("600 is an echo test", function()
  local call = sim.call({ from = "1001", to = "600" })
  local actions = call:actions()
  expect(actions[1].action):equals("answer")
  expect(actions[2].action):equals("echo")
end)

it("700 reads back the digits typed", function()
  local call = sim.call({ from = "1001", to = "700" })
  call:sends_digits("42#")
  expect(call):answered()
  expect(call):played("hello")
  expect(call):played("you-entered")
  expect(call):played("digit-4")
  expect(call):played("digit-2")
  expect(call):played("goodbye")
  expect(call):hung_up()
end)

it("700 says so when nothing is typed", function()
  local call = sim.call({ from = "1001", to = "700" })
  expect(call):played("no-input")
  expect(call):played("goodbye")
end)

it("700 stops at four digits", function()
  local call = sim.call({ from = "1001", to = "700" })
  call:sends_digits("123456")
  local typed
  for _, a in ipairs(call:actions()) do
    if a.action == "read_digits" then
      typed = a.digits
    end
  end
  expect(typed):equals("1234")
end)
