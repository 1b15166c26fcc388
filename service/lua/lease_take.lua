-- Take or keep a scorer's lease on one stream shard.
--
-- KEYS[1] lease  ARGV[1] scorer name  ARGV[2] lease ms
--
-- Returns 1 when renewed (held without a break since the last call), 2 when newly
-- taken (whatever the scorer cached for the shard may be stale), 0 when another holds it.

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
