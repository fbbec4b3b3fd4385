-- wrk script for the directory bench (bench/lib/section-directory.mjs): request i carries
-- `Host: t<i mod count>.<domain>`, i rotating round-robin over a fixed set of <count> tenant
-- hosts, so a directory route sees the same keys again and again.
--   wrk -t1 -c64 -d5s -s directory-hosts.lua <url> -- <count> [domain]
-- The requests are formatted once in init(); request() only hands them out. Still, with a
-- request() function wrk calls into Lua for every request instead of resending one prepared
-- request: a small per-request cost on the load generator, the same for every peer it drives.
local reqs = {}
local n = 0
local i = 0

function init(args)
  n = tonumber(args[1]) or 100
  local domain = args[2] or "example.com"
  for k = 0, n - 1 do
    reqs[k] = wrk.format("GET", wrk.path, { ["Host"] = "t" .. k .. "." .. domain })
  end
end

function request()
  local r = reqs[i]
  i = i + 1
  if i >= n then i = 0 end
  return r
end
