-- Row (e) of `make bench`: what a Lua filter costs for the same job as the
-- rollout-filter's sticky path. Reads x-user-id, buckets it exactly like flagd
-- (murmur3 x86_32, seed 0, of rolloutId .. key; bucket = hash * total >> 32),
-- sets the route header and clears the route cache. No metrics, no overrides.
local bit = require("bit")
local band, bor, bxor = bit.band, bit.bor, bit.bxor
local lshift, rshift, rol, tobit = bit.lshift, bit.rshift, bit.rol, bit.tobit
local byte, floor = string.byte, math.floor

local ROLLOUT_ID = "checkout-2026-11"
local NAMES = { "stable", "canary" }
local WEIGHTS = { 90, 10 }
local TOTAL = 100

-- Low 32 bits of a * b for int32 a, b; every intermediate stays below 2^49,
-- where doubles are exact and bit.tobit wraps correctly.
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

function envoy_on_request(handle)
  local headers = handle:headers()
  local key = headers:get("x-user-id")
  local bucket
  if key ~= nil and key ~= "" then
    bucket = floor(murmur3_32(ROLLOUT_ID .. key) * TOTAL / 4294967296)
  else
    bucket = math.random(0, TOTAL - 1)
  end
  local version, acc = NAMES[#NAMES], 0
  for i = 1, #WEIGHTS do
    acc = acc + WEIGHTS[i]
    if bucket < acc then
      version = NAMES[i]
      break
    end
  end
  headers:replace("x-rollout-version", version)
  handle:clearRouteCache()
end
