-- wrk: POST a bot deal in a room of its own per request (what a chatbot sends).
-- Env: CREATE_PATH, AUTH (the full Authorization value, or empty), CONTACT_ID, RUN_ID.
local path = os.getenv("CREATE_PATH") or "/api/v3.1/deals"
local auth = os.getenv("AUTH") or ""
local contact = os.getenv("CONTACT_ID") or "1"
local run = os.getenv("RUN_ID") or "run"
local threads = 0
local counter = 0
local id = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  wrk.headers["Content-Type"] = "application/json"
  if auth ~= "" then wrk.headers["Authorization"] = auth end
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Deal from bot %d-%d","channel_integration_room_id":"room-%s-%d-%d",'
      .. '"creator_flag":"bot","crm_lead_ids":[%s],"size":1500000}',
    id, counter, run, id, counter, contact)
  return wrk.format("POST", path, nil, body)
end
