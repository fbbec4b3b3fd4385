-- homing.lua for HAProxy (2.2+, Lua built in): asks homing where a request goes, over homing's
-- Redis-protocol router (RESP over core.tcp()), and leaves the answer in transaction variables
-- for the configuration to route on (set-dst / set-dst-port on a `server … 0.0.0.0:0`).
--
--   global
--       lua-load-per-thread /etc/haproxy/homing.lua
--   frontend …
--       http-request set-var(txn.homing_key) path               # the key: path, hdr(x-tenant), …
--       http-request lua.homing 127.0.0.1:6380 50               # homing's RESP address, timeout ms
--       use_backend homing_dynamic if { var(txn.homing_ip) -m found }
--       default_backend homing_fallback
--
-- Reads   txn.homing_key    the key (required; unset or empty → fallback "no-key")
--         txn.homing_route  optional: a route name → HOMING.ROUTE <route> <key>, else GET <key>
--                           (GET answers from resp.route / the first of resp.routes)
-- Sets    txn.homing_target "host:port" homing answered (validated: IPv4 or [IPv6], port 1..65535)
--         txn.homing_ip     its address (string), txn.homing_port its port (integer)
--      or txn.homing_fallback  why there is no target: nil | timeout | unreachable | error |
--                           invalid | no-key (nothing else set)
--
-- One TCP connection per look-up (HAProxy's Lua sockets cannot outlive the request that opened
-- them); the timeout bounds connect, send and read together. See README.md next to this file.

local homing = { _VERSION = "0.1.0" }

local byte, find, match, sub, format = string.byte, string.find, string.match, string.sub, string.format
local tonumber, tostring, type = tonumber, tostring, type

-- Parsed action arguments are cached per distinct (address, timeout) pair.
local parsed_args = {}

local function parse_address(addr)
    local host, port = match(addr, "^%[([%x:%.]+)%]:(%d+)$")
    if not host then
        host, port = match(addr, "^([^:]+):(%d+)$")
    end
    port = tonumber(port)
    if not host or not port or port < 1 or port > 65535 then
        return nil
    end
    return host, port
end

local function args_of(addr, timeout_ms)
    local key = addr .. " " .. tostring(timeout_ms)
    local a = parsed_args[key]
    if a then
        return a
    end
    local host, port = parse_address(addr or "")
    local ms = tonumber(timeout_ms)
    if not host then
        error(format("homing: bad homing address %q (want host:port or [v6]:port)", tostring(addr)))
    end
    if not ms or ms <= 0 then
        error(format("homing: bad timeout %q (want milliseconds > 0)", tostring(timeout_ms)))
    end
    a = { host = host, port = port, timeout_s = ms / 1000 }
    parsed_args[key] = a
    return a
end

local function valid_port(p)
    if not p or #p > 5 or byte(p, 1) == 48 then
        return nil
    end
    local n = tonumber(p)
    if n and n >= 1 and n <= 65535 then
        return n
    end
    return nil
end

local function valid_ipv4(h)
    local a, b, c, d = match(h, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
    if not a then
        return false
    end
    for _, o in ipairs({ a, b, c, d }) do
        if tonumber(o) > 255 or (#o > 1 and byte(o, 1) == 48) then
            return false
        end
    end
    return true
end

--- "a.b.c.d:port" or "[v6]:port" → ip, port; anything else → nil, reason. (set-dst needs an
--- address: HAProxy does not resolve names at run time here.)
function homing.parse_target(s)
    if type(s) ~= "string" or #s < 3 or #s > 64 then
        return nil, "not a host:port"
    end
    if byte(s, 1) == 91 then
        local h, p = match(s, "^%[([%x:%.]+)%]:(%d+)$")
        local port = valid_port(p)
        if h and port and find(h, ":", 1, true) then
            return h, port
        end
        return nil, "not a host:port"
    end
    local h, p = match(s, "^([^:]+):(%d+)$")
    local port = valid_port(p)
    if h and port and valid_ipv4(h) then
        return h, port
    end
    return nil, "not an IP address:port"
end

local function command(...)
    local n = select("#", ...)
    local parts = { "*" .. n .. "\r\n" }
    for i = 1, n do
        local v = tostring((select(i, ...)))
        parts[#parts + 1] = "$" .. #v .. "\r\n" .. v .. "\r\n"
    end
    return table.concat(parts)
end

local function now_ms()
    local t = core.now()
    return t.sec * 1000 + t.usec / 1000
end

-- HAProxy 2.6 reports a receive timeout as "connection closed.", like a real close: tell them
-- apart by the time spent.
local function failure(err, started, a)
    if err == "timeout" or now_ms() - started >= a.timeout_s * 1000 * 0.9 then
        return "timeout"
    end
    return "unreachable"
end

--- One look-up on a fresh connection. Returns "host:port", or nil, reason, detail.
function homing.lookup(a, key, route)
    local started = now_ms()
    local sock = core.tcp()
    sock:settimeout(a.timeout_s)
    local ok, err = sock:connect(a.host, a.port)
    if not ok then
        sock:close()
        return nil, failure(err, started, a), err
    end
    local req = route and command("HOMING.ROUTE", route, key) or command("GET", key)
    local sent
    sent, err = sock:send(req)
    if not sent then
        sock:close()
        return nil, failure(err, started, a), err
    end
    local line
    line, err = sock:receive("*l")
    if not line then
        sock:close()
        return nil, failure(err, started, a), err
    end
    local prefix = sub(line, 1, 1)
    if prefix == "$" then
        local len = tonumber(sub(line, 2))
        if not len then
            sock:close()
            return nil, "invalid", "bad bulk length"
        end
        if len < 0 then
            sock:close()
            return nil, "nil", "no live member"
        end
        if len > 300 then
            sock:close()
            return nil, "invalid", "answer too long"
        end
        local data
        data, err = sock:receive(len + 2)
        sock:close()
        if not data then
            return nil, failure(err, started, a), err
        end
        return sub(data, 1, len)
    end
    sock:close()
    if prefix == "-" then
        return nil, "error", sub(line, 2, 200)
    end
    return nil, "invalid", "unexpected reply " .. sub(line, 1, 40)
end

local function fallback(txn, reason, detail)
    txn:set_var("txn.homing_fallback", reason)
    if detail then
        txn:Debug(format("homing: fallback (%s: %s)", reason, tostring(detail)))
    end
end

--- The action: http-request lua.homing <homing host:port> <timeout ms>
function homing.action(txn, addr, timeout_ms)
    local a = args_of(addr, timeout_ms)
    local key = txn:get_var("txn.homing_key")
    if key == nil or key == "" then
        return fallback(txn, "no-key")
    end
    key = tostring(key)
    local route = txn:get_var("txn.homing_route")
    if route == "" then
        route = nil
    end
    local target, reason, detail = homing.lookup(a, key, route and tostring(route) or nil)
    if not target then
        return fallback(txn, reason, detail)
    end
    local ip, port = homing.parse_target(target)
    if not ip then
        return fallback(txn, "invalid", port .. ": " .. sub(target, 1, 80))
    end
    txn:set_var("txn.homing_target", target)
    txn:set_var("txn.homing_ip", ip)
    txn:set_var("txn.homing_port", port)
end

core.register_action("homing", { "http-req" }, homing.action, 2)

return homing
