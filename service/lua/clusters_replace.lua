-- Replace the index of current clusters with the last pass's, at once: a reader sees the
-- previous pass's clusters or this one's, never a mix.
--
-- KEYS[1] index (sorted set)  ARGV[1] TTL ms  ARGV[2..] score, cluster_id pairs
--
-- Returns the clusters indexed.

redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  redis.call('ZADD', KEYS[1], unpack(ARGV, 2))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return (#ARGV - 1) / 2
