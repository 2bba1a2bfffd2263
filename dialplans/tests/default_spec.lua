-- Specs of dialplans/default.lua: extensions call each other (voicemail
-- when busy or unanswered), *97/*98 voicemail, 600 echo, 700 read-back,
-- 404 for anything else. Run with `switchboard test`.

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

it("a busy extension sends the caller to voicemail at once, busy greeting", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):is_busy()
  expect(call):dialled("1002")
  expect(call):ended_with("busy")
  expect(call):answered()
  expect(call):played("vm-busy")
  expect(call):played("vm-beep")
  local recorded
  for _, a in ipairs(call:actions()) do
    if a.action == "record" then
      recorded = a.file
    end
  end
  expect(recorded:match("^voicemail/1002/")):equals("voicemail/1002/")
end)

it("no answer within 20 s goes to voicemail, unavailable greeting", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):answers_after(25)
  expect(call):dialled("1002", { timeout = 20 })
  expect(call):ended_with("noanswer")
  expect(call):played("vm-person-at")
  expect(call):played("digit-2")
  expect(call):played("vm-unavailable")
end)

it("an extension that is not registered goes to voicemail", function()
  local call = sim.call({ from = "1001", to = "1003" })
  sim.phone("1003"):is_unregistered()
  expect(call):ended_with("unavailable")
  expect(call):played("vm-unavailable")
end)

it("a message left is counted for the mailbox's owner (*97)", function()
  local call = sim.call({ from = "1001", to = "1002" })
  sim.phone("1002"):is_busy()
  call:sends_digits("")
  call:hangs_up_after(10)
  call:run()
  -- 1002 has no PIN in the simulation: its own phone opens the mailbox.
  local own = sim.call({ from = "1002", to = "*97" })
  own:sends_digits("*")
  expect(own):played("vm-you-have")
  expect(own):played("digit-1")
  expect(own):played("vm-main-menu")
  expect(own):played("goodbye")
end)

it("*98 without a PIN hangs up after three tries", function()
  local call = sim.call({ from = "1001", to = "*98" })
  call:sends_digits("1002#1002#1002#")
  expect(call):played("vm-mailbox")
  expect(call):played("vm-incorrect")
  expect(call):played("goodbye")
  expect(call):hung_up()
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

-- Outside lines: toll-fraud default deny, DID routing.

local function outside(id, opts)
  sim.extension({
    id = id,
    did = opts.did,
    outbound = opts.outbound,
    international = opts.international,
  })
end

it("an extension without outbound = true cannot call out", function()
  outside("1001", { did = "+15550001001" })
  local call = sim.call({ from = "1001", to = "95557654321" })
  expect(call):rejected(403)
  expect(call):not_dialled("trunk:carrier/+15557654321")
end)

it("an outbound extension calls national numbers through the trunks in order", function()
  outside("1001", { outbound = true })
  local call = sim.call({ from = "1001", to = "915557654321" })
  expect(call):dialled("trunk:carrier/+15557654321")
end)

it("international and premium numbers need international = true", function()
  outside("1001", { outbound = true })
  expect(sim.call({ from = "1001", to = "9011442079460000" })):rejected(403)
  expect(sim.call({ from = "1001", to = "919005550100" })):rejected(403)
  outside("1002", { outbound = true, international = true })
  expect(sim.call({ from = "1002", to = "9011442079460000" })):dialled("trunk:carrier/+442079460000")
end)

it("emergency numbers are always allowed", function()
  local call = sim.call({ from = "1003", to = "9911" })
  expect(call):dialled("trunk:carrier/911")
end)

it("a call from a trunk rings the extension whose did it is, else reception", function()
  outside("1002", { did = "+15550001002" })
  sim.extension("1000")
  local call = sim.call({ from = "+15557654321", to = "+15550001002", trunk = "carrier" })
  expect(call):dialled("1002")
  local other = sim.call({ from = "+15557654321", to = "+15550009999", trunk = "carrier" })
  expect(other):dialled("1000")
end)

it("a call from a trunk cannot use feature codes or call out", function()
  local call = sim.call({ from = "+15557654321", to = "95557654321", trunk = "carrier" })
  expect(call):not_dialled("trunk:carrier/+15557654321")
end)
