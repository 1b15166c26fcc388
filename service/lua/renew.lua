-- Extend a running request's concurrency lease, so a long stream keeps its slot while
-- a crashed gateway's slots still expire on their own.
-- KEYS[1] leases (zset)  ARGV[1] request id  ARGV[2] lease ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
local updated = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease_ms)
return updated
