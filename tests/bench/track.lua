-- wrk script for the tracking benchmarks: every request carries new messageIds, half from
-- known customers (cust-0..cust-199, Order Completed with a PI property), half from consenting
-- anonymous visitors. Arguments: the write key, then the batch size (0: one message per
-- request, for /v1/track; n: {"batch": [n messages]}, for /v1/batch).
local counter = 0
local prefix = ""
local size = 0
local threads = 0

-- Runs in the main Lua state once per thread, before init: gives each thread its own number.
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  -- The run's start time and the thread's number: unique across threads and runs.
  prefix = string.format("%x-%d", os.time(), tid)
  size = tonumber(args[2] or "0")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Write-Key"] = args[1]
end

local function message()
  counter = counter + 1
  if counter % 2 == 1 then
    return string.format(
      '{"type":"track","messageId":"%s-%d","userId":"cust-%d","event":"Order Completed",' ..
      '"properties":{"order_id":"SO-%d","revenue":99.5,"currency":"CNY","shipping_city":"杭州"},' ..
      '"context":{"library":{"name":"bench","version":"1"}}}',
      prefix, counter, counter % 200, counter)
  end
  return string.format(
    '{"type":"track","messageId":"%s-%d","anonymousId":"anon-%d","event":"Product Viewed",' ..
    '"properties":{"product_id":"SKU-%d","price":12.0},' ..
    '"context":{"consent":{"categoryPreferences":{"Analytics":true}}}}',
    prefix, counter, counter % 5000, counter % 300)
end

function request()
  if size == 0 then
    return wrk.format("POST", nil, nil, message())
  end
  local parts = {}
  for i = 1, size do
    parts[i] = message()
  end
  return wrk.format("POST", nil, nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end

function response(status, headers, body)
  if status ~= 200 then
    print("unexpected status " .. status .. ": " .. body)
    wrk.thread:stop()
  end
end
