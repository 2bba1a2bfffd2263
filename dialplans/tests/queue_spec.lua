-- Specs of the support queue (plugins/queue.lua through default.lua): 401
-- queues the caller with music and rings the agents 1001 and 1002, *45
-- logs an agent out and back in, the exit after max_wait is 1001's
-- voicemail.

before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

local function did(call, action)
  for _, a in ipairs(call:actions()) do
    if a.action == action then
      return true
    end
  end
  return false
end

it("401 answers, plays music on hold and bridges the agent who answers", function()
  local call = sim.call({ from = "1003", to = "401" })
  sim.phone("1001"):answers_after(4)
  expect(call):answered()
  expect(call):dialled("1001", { timeout = 15 })
  expect(call):not_dialled("1002")
  expect(did(call, "hold")):equals(true)
  expect(call):ended_with("answered")
  -- An agent was free: no position announcement first.
  expect(did(call, "play")):equals(false)
end)

it("an agent who does not answer within ring_timeout is skipped for the next", function()
  local call = sim.call({ from = "1003", to = "401" })
  sim.phone("1001"):never_answers()
  sim.phone("1002"):answers_after(2)
  expect(call):dialled("1001", { timeout = 15 })
  expect(call):dialled("1002", { timeout = 15 })
  expect(call):ended_with("answered")
end)

it("*45 logs a member out and back in, and says so", function()
  local out = sim.call({ from = "1001", to = "*45" })
  expect(out):played("queue-agent-logout")
  expect(out):hung_up()
  local back = sim.call({ from = "1001", to = "*45" })
  expect(back):played("queue-agent-login")
end)

it("*45 from an extension that serves no queue says so; only extensions may", function()
  sim.extension("1004")
  expect(sim.call({ from = "1004", to = "*45" })):played("queue-not-agent")
  expect(sim.call({ from = "1004", to = "*45", caller = false })):rejected(403)
end)

it("with every agent logged out the caller waits with music, hears its position, then leaves by the exit", function()
  sim.call({ from = "1001", to = "*45" }):run()
  sim.call({ from = "1002", to = "*45" }):run()
  local started = sim.clock:now()
  local call = sim.call({ from = "1003", to = "401" })
  expect(call):answered()
  expect(call):played("queue-position")
  expect(call):played("digit-1")
  expect(call):not_dialled("1001")
  expect(call):not_dialled("1002")
  -- max_wait 120 s, then voicemail of 1001.
  expect(call):played("vm-unavailable")
  expect(sim.clock:now() - started >= 120):equals(true)
end)

it("a caller who hangs up while waiting leaves the queue", function()
  sim.call({ from = "1001", to = "*45" }):run()
  sim.call({ from = "1002", to = "*45" }):run()
  local call = sim.call({ from = "1003", to = "401" })
  call:hangs_up_after(30)
  expect(call):ended_with("caller_gone")
  expect(call):not_dialled("1001")
end)
