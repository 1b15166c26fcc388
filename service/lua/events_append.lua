-- Append one gateway process's batch of events to a stream shard, at most once.
-- A batch whose reply was lost (Redis died or stalled mid-call) is sent again under the same
-- number; the producer's mark says it is already in, so nothing is appended twice.
--
-- KEYS[1] event stream  KEYS[2] this producer's mark for the stream (its last batch number)
-- ARGV[1] batch number (grows by one per batch, per producer and stream)  ARGV[2] mark TTL s
-- ARGV[3] approximate stream MAXLEN  ARGV[4..] events, each a JSON array: name, value, name, value, ...
--
-- Returns the number of events appended (0 for a batch already applied).

local seq = tonumber(ARGV[1])
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq <= done then
  return 0
end

for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(cjson.decode(ARGV[i])))
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return #ARGV - 3
