-- homing.lua: nginx (lua-nginx-module) asks homing where a request goes, over homing's
-- Redis-protocol router, and nginx proxies it there. homing carries no traffic itself.
--
--   access phase    require("homing").route()     GET <$homing_key> (or HOMING.ROUTE <$homing_route>
--                                                  <$homing_key>) on a keep-alive connection to
--                                                  homing; "host:port" is checked and kept for
--                                                  the balancer; nil / error / timeout → fallback
--   balancer phase  require("homing").balance()   ngx.balancer.set_current_peer(host, port) in an
--                                                  upstream with `keepalive`, so connections to
--                                                  the backends are reused too
--
-- Configure once per worker (init_by_lua*): require("homing").configure{ ... } — see README.md
-- next to this file for every option, the nginx variables it reads and sets, and what happens
-- on failure. The Redis client is OpenResty's lua-resty-redis (Debian: lua-nginx-redis, which
-- installs it as "nginx.redis").

local ok_redis, redis = pcall(require, "nginx.redis")
if not ok_redis then
    redis = require "resty.redis"
end

local ngx = ngx
local ngx_var = ngx.var
local ngx_log = ngx.log
local WARN, ERR = ngx.WARN, ngx.ERR
local null = ngx.null
local tonumber = tonumber
local type = type
local byte = string.byte
local find = string.find
local match = string.match
local sub = string.sub
local rawget = rawget

local _M = { _VERSION = "0.1.0" }

-- Defaults; configure() overrides them. Times are in milliseconds.
local conf = {
    host = "127.0.0.1",         -- homing's RESP address (resp.address in homing's config)
    port = 6380,
    connect_timeout = 50,       -- ms; a look-up waits at most about connect + send + read
    send_timeout = 50,
    read_timeout = 50,
    pool_size = 128,            -- idle keep-alive connections to homing kept per worker (≥ peak concurrent requests per worker)
    keepalive_timeout = 60000,  -- ms an idle pooled connection is kept (keep it below homing's resp.idleTimeout)
    db = 0,                     -- SELECT <db> on new connections: the n-th route of homing's resp.routes
    allow_hostnames = false,    -- accept "name:port" answers (only for proxy_pass http://$homing_target with a resolver)
    log_fallbacks = true,       -- one warn line per request that falls back
}

local pool_name

local function rebuild_pool_name()
    pool_name = "homing:" .. conf.host .. ":" .. tostring(conf.port) .. ":" .. tostring(conf.db)
end
rebuild_pool_name()

local KNOWN = {}
for k in pairs(conf) do KNOWN[k] = true end

--- Sets options (see the table above). Call from init_by_lua* (or init_worker_by_lua*).
function _M.configure(opts)
    if type(opts) ~= "table" then
        error("homing.configure: expects a table", 2)
    end
    for k, v in pairs(opts) do
        if k == "timeout" then -- shortcut: connect, send and read at once
            conf.connect_timeout, conf.send_timeout, conf.read_timeout = v, v, v
        elseif not KNOWN[k] then
            error("homing.configure: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    for k, v in pairs(opts) do
        if k ~= "timeout" then
            conf[k] = v
        end
    end
    conf.port = tonumber(conf.port)
    if not conf.port or conf.port < 1 or conf.port > 65535 then
        error("homing.configure: port must be 1..65535", 2)
    end
    for _, k in ipairs({ "connect_timeout", "send_timeout", "read_timeout", "pool_size", "keepalive_timeout", "db" }) do
        local v = tonumber(conf[k])
        if not v or v < 0 then
            error("homing.configure: " .. k .. " must be a number >= 0", 2)
        end
        conf[k] = v
    end
    if conf.pool_size < 1 then
        error("homing.configure: pool_size must be >= 1", 2)
    end
    -- 0 would mean "lua_socket_*_timeout" (60 s by default): never what a look-up wants.
    for _, k in ipairs({ "connect_timeout", "send_timeout", "read_timeout" }) do
        if conf[k] <= 0 then
            error("homing.configure: " .. k .. " must be > 0 ms", 2)
        end
    end
    rebuild_pool_name()
    return _M
end

--- A copy of the current options (for tests and debugging).
function _M.options()
    local out = {}
    for k, v in pairs(conf) do out[k] = v end
    return out
end

---------------------------------------------------------------------------------------------
-- Target validation: "a.b.c.d:port" or "[v6]:port" (or "name:port" when allow_hostnames).

local function valid_port(p)
    if not p or #p > 5 or byte(p, 1) == 48 then -- no leading zero, at most 5 digits
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

--- Parses a homing answer; returns host, port (an IPv6 host keeps its brackets: that is what
--- ngx.balancer.set_current_peer takes) or nil, reason.
function _M.parse_target(s)
    if type(s) ~= "string" or #s < 3 or #s > 300 then
        return nil, "not a host:port"
    end
    if byte(s, 1) == 91 then -- "[v6]:port"
        local h, p = match(s, "^%[([%x:%.]+)%]:(%d+)$")
        local port = valid_port(p)
        if h and port and find(h, ":", 1, true) then
            return "[" .. h .. "]", port
        end
        return nil, "not a host:port"
    end
    local h, p = match(s, "^([^:]+):(%d+)$")
    local port = valid_port(p)
    if not h or not port then
        return nil, "not a host:port"
    end
    if valid_ipv4(h) then
        return h, port
    end
    if conf.allow_hostnames and #h <= 253 and match(h, "^[%w][%w%-%.]*$") and not find(h, "..", 1, true) then
        return h, port
    end
    return nil, "not an IP address:port"
end

---------------------------------------------------------------------------------------------
-- The look-up

-- Errors after which a reused (pooled) connection is retried once on a fresh one: the peer
-- closed an idle connection (homing restarted, idle timeout) between two requests.
local STALE = { closed = true, ["broken pipe"] = true, ["connection reset by peer"] = true }

local function ask_once(key, route)
    local red, err = redis:new()
    if not red then
        return nil, "error", err
    end
    local sock = rawget(red, "_sock")
    if sock.settimeouts then
        sock:settimeouts(conf.connect_timeout, conf.send_timeout, conf.read_timeout)
    else
        red:set_timeout(conf.read_timeout)
    end
    local ok
    ok, err = red:connect(conf.host, conf.port, { pool = pool_name, pool_size = conf.pool_size })
    if not ok then
        return nil, (err == "timeout") and "timeout" or "unreachable", err, false
    end
    local reused = (red:get_reused_times() or 0) > 0
    if conf.db ~= 0 and not reused then
        local res
        res, err = red:select(conf.db)
        if res ~= "OK" then
            red:close()
            return nil, "error", "SELECT " .. tostring(conf.db) .. ": " .. tostring(err), false
        end
    end
    local res
    if route then
        res, err = red["HOMING.ROUTE"](red, route, key)
    else
        res, err = red:get(key)
    end
    if res == nil then -- transport error (timeout, closed…): the connection is not reusable
        red:close()
        return nil, (err == "timeout") and "timeout" or "unreachable", err, reused and STALE[err] == true
    end
    -- A complete reply was read: the connection is clean, give it back to the pool.
    red:set_keepalive(conf.keepalive_timeout, conf.pool_size)
    if res == false then -- -ERR from homing (unknown route, key too long…)
        return nil, "error", err, false
    end
    if res == null then
        return nil, "nil", "no live member", false
    end
    if type(res) ~= "string" then
        return nil, "invalid", "unexpected reply type " .. type(res), false
    end
    return res
end

--- Asks homing for `key` (on `route` when given, else on the selected db's route). Returns the
--- "host:port" string, or nil, reason ("nil" | "timeout" | "unreachable" | "error" | "invalid"),
--- detail.
local function ask(key, route)
    -- A reply the client library cannot parse raises a Lua error: a fallback, not a 500.
    local ok, target, reason, detail, retry = pcall(ask_once, key, route)
    if not ok then
        return nil, "invalid", tostring(target), false
    end
    return target, reason, detail, retry
end

function _M.lookup(key, route)
    local target, reason, detail, retry = ask(key, route)
    if retry then
        target, reason, detail = ask(key, route)
    end
    return target, reason, detail
end

local function fallback(reason, detail)
    ngx_var.homing_fallback = reason
    if conf.log_fallbacks then
        ngx_log(WARN, "homing: fallback (", reason, detail and (": " .. detail) or "", ")")
    end
    local loc = ngx_var.homing_fallback_location
    if loc and loc ~= "" then
        return ngx.exec(loc)
    end
    return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
end

--- access_by_lua*: reads $homing_key (and $homing_route), asks homing, and either leaves the
--- target for balance() (sets $homing_target) or falls back: sets $homing_fallback to the reason
--- and jumps to $homing_fallback_location (a named location), or answers 503 when that is empty.
function _M.route()
    local key = ngx_var.homing_key
    if not key or key == "" then
        return fallback("no-key")
    end
    local route = ngx_var.homing_route
    if route == "" then
        route = nil
    end
    local target, reason, detail = _M.lookup(key, route)
    if not target then
        return fallback(reason, detail)
    end
    local host, port = _M.parse_target(target)
    if not host then
        return fallback("invalid", port .. ": " .. sub(target, 1, 100))
    end
    ngx_var.homing_target = target
    local ctx = ngx.ctx
    ctx.homing_host = host
    ctx.homing_port = port
end

local balancer

--- balancer_by_lua*: sends the request to the member route() chose. One try: a member that
--- refuses is an error nginx reports (502) like any dead upstream; homing's health checks take
--- it out of the ring.
function _M.balance()
    balancer = balancer or require "ngx.balancer"
    local ctx = ngx.ctx
    local host, port = ctx.homing_host, ctx.homing_port
    if not host then
        ngx_log(ERR, "homing: balance() without a target (is access_by_lua_block { require('homing').route() } in this location?)")
        return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
    end
    local ok, err = balancer.set_current_peer(host, port)
    if not ok then
        ngx_log(ERR, "homing: set_current_peer ", host, ":", port, " failed: ", err)
        return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
    end
end

return _M
