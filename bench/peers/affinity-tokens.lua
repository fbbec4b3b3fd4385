-- wrk script for the affinity bench (bench/lib/section-affinity.mjs): every request carries
-- `Authorization: Bearer <prefix><i>`, i rotating over a fixed set of <count> tokens, so a warm
-- affinity table sees the same keys again and again.
--   wrk -t1 -c64 -d5s -s affinity-tokens.lua <url> -- <count> [prefix]
-- The requests are formatted once in init(); request() only hands them out (cheap for wrk).
local reqs = {}
local n = 0
local i = 0

function init(args)
  n = tonumber(args[1]) or 10000
  local prefix = args[2] or "tp-"
  for k = 0, n - 1 do
    reqs[k] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. prefix .. k })
  end
end

function request()
  local r = reqs[i]
  i = i + 1
  if i >= n then i = 0 end
  return r
end
