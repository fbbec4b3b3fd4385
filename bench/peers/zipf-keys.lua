-- wrk script for the bounded-loads bench (bench/lib/section-bounded.mjs): each request is
-- GET /z/key-<r> with r drawn from a Zipf distribution over <count> keys (P(r) ∝ r^-s, r = 1 the
-- hottest), from a fixed seed, so every peer gets the same stream of keys. The path is the key
-- homing's ring and HAProxy's `balance uri` both hash. An optional Host header picks the route.
--   wrk -t1 -c64 -d5s -s zipf-keys.lua <url> -- <count> <s> [host] [seed]
-- The requests and the cumulative distribution are made once in init(); request() draws a
-- uniform number and finds its key by binary search.
local reqs = {}
local cdf = {}
local n = 0

function init(args)
  n = tonumber(args[1]) or 10000
  local s = tonumber(args[2]) or 1.1
  local host = args[3]
  math.randomseed(tonumber(args[4]) or 12345)
  if host and host ~= "" then wrk.headers["Host"] = host end
  local total = 0
  for r = 1, n do
    total = total + r ^ (-s)
    cdf[r] = total
  end
  for r = 1, n do
    cdf[r] = cdf[r] / total
    reqs[r] = wrk.format("GET", "/z/key-" .. r)
  end
end

function request()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return reqs[lo]
end
