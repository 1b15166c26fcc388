-- After a request: replace its token reservation by what it really used, and free its
-- concurrency lease. With ARGV[2] = -1 the request is refunded instead (it never ran,
-- e.g. another limit in another cluster slot refused it): every record of it goes.
--
-- KEYS[1] request log  KEYS[2] token log  KEYS[3] token amounts  KEYS[4] leases
-- ARGV[1] request id   ARGV[2] tokens actually used, or -1 to refund

local req_id = ARGV[1]
local actual = tonumber(ARGV[2])
local reserved = tonumber(redis.call('HGET', KEYS[3], req_id) or 'nil')
redis.call('ZREM', KEYS[4], req_id)
if actual < 0 then
  redis.call('ZREM', KEYS[1], req_id)
  redis.call('ZREM', KEYS[2], req_id)
  if reserved then
    redis.call('HDEL', KEYS[3], req_id)
    redis.call('HINCRBY', KEYS[3], '__sum', -reserved)
  end
  return 0
end
if reserved then
  redis.call('HSET', KEYS[3], req_id, actual)
  redis.call('HINCRBY', KEYS[3], '__sum', actual - reserved)
end
return actual
