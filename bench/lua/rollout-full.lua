-- Row (e-f) of `make bench`: a Lua filter doing as much of row (f)'s job as Lua
-- can, so "Lua" in the comparison means the same work, not less:
--   * the override (header x-rollout-pin, query rollout-version) is looked for;
--   * sticky keys in the filter's order: header x-user-id, cookie uid, source address;
--     the bucket exactly like flagd (murmur3 x86_32, seed 0, of rolloutId .. key);
--   * the route header and x-rollout-id replaced (skipped when already exactly so),
--     the route cache cleared;
--   * W3C trace context: a valid traceparent passes through, a missing or invalid
--     one is replaced by a fresh one (flags 03, as the filter's default), and an
--     invalid one takes its tracestate with it;
--   * the decision in W3C baggage as rollout.<rolloutId>=<version> (replacing a
--     member of that key, keeping the others).
-- Not done, because Lua cannot: per-version metrics (the Lua filter has no stats
-- API), the duration histogram, response-class counting. Those are (f)'s extra work.
local bit = require("bit")
local band, bor, bxor = bit.band, bit.bor, bit.bxor
local lshift, rshift, rol, tobit = bit.lshift, bit.rshift, bit.rol, bit.tobit
local byte, floor, random, format = string.byte, math.floor, math.random, string.format

local ROLLOUT_ID = "checkout-2026-11"
local NAMES = { "stable", "canary" }
local WEIGHTS = { 90, 10 }
local TOTAL = 100
local ROUTE_HEADER = "x-rollout-version"
local ID_HEADER = "x-rollout-id"
local PIN_HEADER = "x-rollout-pin"
local PIN_QUERY = "rollout-version="
local BAGGAGE_KEY = "rollout." .. ROLLOUT_ID
local MEMBER = {}
for i = 1, #NAMES do MEMBER[NAMES[i]] = BAGGAGE_KEY .. "=" .. NAMES[i] end
local KNOWN = {}
for i = 1, #NAMES do KNOWN[NAMES[i]] = true end
local HEX = "[0-9a-f]"
local TRACEPARENT = "^00%-" .. HEX:rep(32) .. "%-" .. HEX:rep(16) .. "%-" .. HEX:rep(2) .. "$"
local ZERO_TRACE, ZERO_SPAN = ("0"):rep(32), ("0"):rep(16)

local function mul32(a, b)
  return tobit(band(a, 0xffff) * b + tobit(rshift(a, 16) * b) * 65536)
end

local C1, C2 = tobit(0xcc9e2d51), tobit(0x1b873593)
local N, F1, F2 = tobit(0xe6546b64), tobit(0x85ebca6b), tobit(0xc2b2ae35)

local function murmur3_32(s)
  local h, len = 0, #s
  local tail = len - len % 4
  for i = 1, tail, 4 do
    local b1, b2, b3, b4 = byte(s, i, i + 3)
    local k = bor(b1, lshift(b2, 8), lshift(b3, 16), lshift(b4, 24))
    k = mul32(rol(mul32(k, C1), 15), C2)
    h = rol(bxor(h, k), 13)
    h = tobit(mul32(h, 5) + N)
  end
  local rem, k = len % 4, 0
  if rem == 3 then k = bxor(k, lshift(byte(s, tail + 3), 16)) end
  if rem >= 2 then k = bxor(k, lshift(byte(s, tail + 2), 8)) end
  if rem >= 1 then
    k = bxor(k, byte(s, tail + 1))
    h = bxor(h, mul32(rol(mul32(k, C1), 15), C2))
  end
  h = bxor(h, len)
  h = mul32(bxor(h, rshift(h, 16)), F1)
  h = mul32(bxor(h, rshift(h, 13)), F2)
  h = bxor(h, rshift(h, 16))
  if h < 0 then h = h + 4294967296 end
  return h
end

local function cookie(headers, name)
  local c = headers:get("cookie")
  if c == nil then return nil end
  for k, v in c:gmatch("([^=;%s]+)=([^;]*)") do
    if k == name then return v end
  end
  return nil
end

local function hex16() return format("%04x", random(0, 65535)) end

local function valid_traceparent(tp)
  return tp ~= nil and tp:match(TRACEPARENT) ~= nil
    and tp:sub(4, 35) ~= ZERO_TRACE and tp:sub(37, 52) ~= ZERO_SPAN
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Override first, as the filter: a pin header or query naming a known version.
  local version = headers:get(PIN_HEADER)
  if version == nil or not KNOWN[version] then
    local path = headers:get(":path") or ""
    local at = path:find(PIN_QUERY, 1, true)
    version = at and path:match("^([^&]*)", at + #PIN_QUERY) or nil
    if version ~= nil and not KNOWN[version] then version = nil end
  end
  if version == nil then
    local key = headers:get("x-user-id")
    if key == nil or key == "" then key = cookie(headers, "uid") end
    if key == nil or key == "" then
      local addr = handle:streamInfo():downstreamRemoteAddress()
      key = addr and addr:match("^(.*):%d+$") or addr
    end
    local bucket
    if key ~= nil and key ~= "" then
      bucket = floor(murmur3_32(ROLLOUT_ID .. key) * TOTAL / 4294967296)
    else
      bucket = random(0, TOTAL - 1)
    end
    local acc = 0
    version = NAMES[#NAMES]
    for i = 1, #WEIGHTS do
      acc = acc + WEIGHTS[i]
      if bucket < acc then
        version = NAMES[i]
        break
      end
    end
  end
  if headers:get(ROUTE_HEADER) ~= version then headers:replace(ROUTE_HEADER, version) end
  if headers:get(ID_HEADER) ~= ROLLOUT_ID then headers:replace(ID_HEADER, ROLLOUT_ID) end

  if not valid_traceparent(headers:get("traceparent")) then
    headers:replace("traceparent", "00-" .. hex16() .. hex16() .. hex16() .. hex16() .. hex16() .. hex16()
      .. hex16() .. hex16() .. "-" .. hex16() .. hex16() .. hex16() .. hex16() .. "-03")
    headers:remove("tracestate")
  end

  local member = MEMBER[version]
  local baggage = headers:get("baggage")
  if baggage == nil or baggage == "" then
    headers:replace("baggage", member)
  else
    local out = {}
    for m in baggage:gmatch("[^,]+") do
      local k = m:match("^%s*([^=%s;]+)")
      if k ~= BAGGAGE_KEY then out[#out + 1] = m end
    end
    out[#out + 1] = member
    headers:replace("baggage", table.concat(out, ","))
  end
  handle:clearRouteCache()
end
