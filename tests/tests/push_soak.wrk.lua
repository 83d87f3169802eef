-- wrk script of the push soak (tests/tests/push_soak.rs).
-- Arguments: <rollouts> <stop file> <unmatched host>.
-- Each request goes to the next rollout's host (svc-<i>.example.com, or the wildcard's), with
-- a sticky user on two requests in three and none (a random split) on the third. Once the
-- stop file exists, every request goes to a host no rollout matches: wrk cuts the requests in
-- flight when it stops, and those are then no rollout's, so per-rollout counts stay exact.
local threads = {}

function setup(thread)
  thread:set("first", #threads * 389)
  table.insert(threads, thread)
end

function init(args)
  rollouts = tonumber(args[1])
  stop_file = args[2]
  draining = false
  unmatched = args[3]
  i = first
  bad = 0
end

function request()
  i = i + 1
  local host
  -- The file is looked for every 64 requests, not on each.
  if not draining and i % 64 == 0 then
    local f = io.open(stop_file)
    if f then
      f:close()
      draining = true
    end
  end
  if draining then
    host = unmatched
  elseif i % 50 == 0 then
    host = "w" .. i .. ".wild.example.com"
  else
    host = "svc-" .. (i % (rollouts - 1)) .. ".example.com"
  end
  local headers = { Host = host }
  if i % 3 ~= 0 then
    headers["x-user-id"] = "u-" .. (i % 7919)
  end
  return wrk.format("GET", "/", headers)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, t in ipairs(threads) do
    non2xx = non2xx + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d non2xx=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, non2xx, e.connect, e.read, e.write, e.status, e.timeout))
end
