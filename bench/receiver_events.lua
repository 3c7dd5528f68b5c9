-- POST pre-signed CRM events to /webhooks/crm, each one once (wrk cannot compute HMACs).
--
-- Arguments (after --): a file written by bench.wrk.write_events (four lines per event:
-- webhook-id, webhook-timestamp, webhook-signature, body) and wrk's thread count n
-- (bench.wrk.run passes both). Thread k of n sends the k-th
-- contiguous slice; a thread that runs out starts its slice again (those resends are
-- duplicates) and done() reports how many times that happened as "wrapped".

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
  table.insert(threads, thread)
end

local events = {}
local position = 1
wrapped = 0

function init(args)
  local lines = {}
  for line in io.lines(args[1]) do
    lines[#lines + 1] = line
  end
  local total = math.floor(#lines / 4)
  local per = math.floor(total / tonumber(args[2]))
  local first = (thread_number - 1) * per
  for i = first, first + per - 1 do
    local base = i * 4
    events[#events + 1] = wrk.format("POST", wrk.path, {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = lines[base + 1],
      ["webhook-timestamp"] = lines[base + 2],
      ["webhook-signature"] = lines[base + 3],
    }, lines[base + 4])
  end
end

function request()
  local event = events[position]
  position = position + 1
  if position > #events then
    position = 1
    wrapped = wrapped + 1
  end
  return event
end

function wrk_report_extra()
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("wrapped") or 0)
  end
  return string.format('{"wrapped":%d}', total)
end
