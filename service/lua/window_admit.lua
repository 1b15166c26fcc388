-- One exact sliding-window request log: admit and record, or refuse and record nothing.
-- Used for the client-IP limit when the IP's log lives in another cluster slot.
-- KEYS[1] request log (zset)   ARGV[1] request id  ARGV[2] limit  ARGV[3] window ms
-- Returns {admitted (1/0), retry_after_ms}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count + 1 > limit then
  local nth = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return {0, tonumber(nth[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
