-- Admission for one request: read the key's decision, check every limit, and only
-- if all pass spend all of them (a refused request spends nothing). One round trip.
--
-- KEYS[1] decision hash   KEYS[2] request log (zset: request id -> admitted at, ms)
-- KEYS[3] token log (zset) KEYS[4] token amounts (hash: request id -> tokens, "__sum")
-- KEYS[5] leases (zset: request id -> lease expiry, ms)
-- KEYS[6] optional: client-IP request log (standalone Redis only; in a cluster the
--         IP limit is its own call to window_admit.lua)
-- ARGV[1] request id  ARGV[2] token reservation  ARGV[3] lease ms
-- ARGV[4] IP limit (0 = none)  ARGV[5] IP window ms
-- ARGV[6..] tier blocks of six: name, request limit, request window ms, token limit,
--         token window ms, concurrency limit (-1 = unlimited). The first block is the
--         key's own limits; the others are tiers a throttle decision may name.
--
-- Returns {status, rule, tier, req_limit, req_remaining, req_reset_ms,
--          tok_limit, tok_remaining, tok_reset_ms, retry_after_ms, note}
-- status 0 = admitted, 1 = over a limit (rule names it), 2 = blocked (rule = reason).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local req_id = ARGV[1]
local cost = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])

local decision = redis.call('HMGET', KEYS[1], 'action', 'tier', 'reason')
if decision[1] == 'block' then
  return {2, decision[3] or 'blocked', '', -1, -1, 0, -1, -1, 0, 0, ''}
end

local base = 6
if decision[1] == 'throttle' and decision[2] then
  local i = 12
  while ARGV[i] do
    if ARGV[i] == decision[2] then base = i break end
    i = i + 6
  end
end
local tier = ARGV[base]
local req_limit = tonumber(ARGV[base + 1])
local req_window = tonumber(ARGV[base + 2])
local tok_limit = tonumber(ARGV[base + 3])
local tok_window = tonumber(ARGV[base + 4])
local conc_limit = tonumber(ARGV[base + 5])

-- Request log: exact sliding window.
local req_count, req_reset = 0, 0
if req_limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - req_window)
  req_count = redis.call('ZCARD', KEYS[2])
  if req_count > 0 then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    req_reset = tonumber(oldest[2]) + req_window - now
  end
end

-- Token log: expire old reservations from the running sum, then compare.
local tok_sum, tok_reset = 0, 0
if tok_limit >= 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tok_window)
  if #expired > 0 then
    local amounts = redis.call('HMGET', KEYS[4], unpack(expired))
    local freed = 0
    for _, amount in ipairs(amounts) do freed = freed + (tonumber(amount) or 0) end
    redis.call('HINCRBY', KEYS[4], '__sum', -freed)
    redis.call('HDEL', KEYS[4], unpack(expired))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tok_window)
  end
  tok_sum = tonumber(redis.call('HGET', KEYS[4], '__sum') or '0')
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #oldest > 0 then tok_reset = tonumber(oldest[2]) + tok_window - now end
end

local function reply(status, rule, retry_ms, spent_req, spent_tok)
  local req_remaining, tok_remaining = -1, -1
  if req_limit >= 0 then req_remaining = math.max(req_limit - req_count - spent_req, 0) end
  if tok_limit >= 0 then tok_remaining = math.max(tok_limit - tok_sum - spent_tok, 0) end
  if spent_req > 0 and req_reset == 0 then req_reset = req_window end
  if spent_tok > 0 and tok_reset == 0 then tok_reset = tok_window end
  return {status, rule, tier, req_limit, req_remaining, req_reset,
          tok_limit, tok_remaining, tok_reset, retry_ms, decision[1] or ''}
end

if req_limit >= 0 and req_count + 1 > req_limit then
  local retry = req_window
  if req_count > 0 and req_limit > 0 then
    local nth = redis.call('ZRANGE', KEYS[2], req_count - req_limit, req_count - req_limit, 'WITHSCORES')
    retry = tonumber(nth[2]) + req_window - now
  end
  return reply(1, 'requests', retry, 0, 0)
end

if tok_limit >= 0 and tok_sum + cost > tok_limit then
  local retry = tok_window
  if cost <= tok_limit then
    local need = tok_sum + cost - tok_limit
    local entries = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + (tonumber(redis.call('HGET', KEYS[4], entries[i])) or 0)
      if freed >= need then retry = tonumber(entries[i + 1]) + tok_window - now break end
    end
  end
  return reply(1, 'tokens', retry, 0, 0)
end

if conc_limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  if redis.call('ZCARD', KEYS[5]) + 1 > conc_limit then
    local soonest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    local retry = 1000
    if #soonest > 0 then retry = math.min(tonumber(soonest[2]) - now, 1000) end
    return reply(1, 'concurrency', retry, 0, 0)
  end
end

local ip_limit = tonumber(ARGV[4])
if KEYS[6] and ip_limit > 0 then
  local ip_window = tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - ip_window)
  local ip_count = redis.call('ZCARD', KEYS[6])
  if ip_count + 1 > ip_limit then
    local nth = redis.call('ZRANGE', KEYS[6], ip_count - ip_limit, ip_count - ip_limit, 'WITHSCORES')
    return reply(1, 'ip', tonumber(nth[2]) + ip_window - now, 0, 0)
  end
  redis.call('ZADD', KEYS[6], now, req_id)
  redis.call('PEXPIRE', KEYS[6], ip_window)
end

if req_limit >= 0 then
  redis.call('ZADD', KEYS[2], now, req_id)
  redis.call('PEXPIRE', KEYS[2], req_window)
end
if tok_limit >= 0 then
  redis.call('ZADD', KEYS[3], now, req_id)
  redis.call('HSET', KEYS[4], req_id, cost)
  redis.call('HINCRBY', KEYS[4], '__sum', cost)
  redis.call('PEXPIRE', KEYS[3], tok_window)
  redis.call('PEXPIRE', KEYS[4], tok_window)
end
if conc_limit >= 0 then
  redis.call('ZADD', KEYS[5], now + lease_ms, req_id)
  redis.call('PEXPIRE', KEYS[5], lease_ms)
end
return reply(0, '', 0, 1, cost)
