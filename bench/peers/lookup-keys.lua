-- wrk script for the lookup bench (bench/lib/section-lookup.mjs): request i goes to
-- /k/<prefix><i mod count>, so every peer sees the same fixed set of <count> keys (paths) in the
-- same order, and the key — the URI — is what both homing's ring and nginx's `hash $uri
-- consistent` hash.
--   wrk -t1 -c64 -d5s -s lookup-keys.lua <url> -- <count> [prefix]
-- The requests are formatted once in init(); request() only hands them out (cheap for wrk).
local reqs = {}
local n = 0
local i = 0

function init(args)
  n = tonumber(args[1]) or 10000
  local prefix = args[2] or "key-"
  for k = 0, n - 1 do
    reqs[k] = wrk.format("GET", "/k/" .. prefix .. k)
  end
end

function request()
  local r = reqs[i]
  i = i + 1
  if i >= n then i = 0 end
  return r
end
