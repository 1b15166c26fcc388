-- Give up a scorer's lease on one stream shard, if it still holds it.
--
-- KEYS[1] lease  ARGV[1] scorer name
-- Returns 1 when released, 0 when it was not held by this scorer.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
