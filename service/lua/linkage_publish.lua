-- Append one clustering pass's verdicts for the keys of one stream shard, at most once per
-- pass slot: a pass re-run after a crash, or run twice by two scorers, adds nothing twice.
--
-- KEYS[1] the shard's event stream  KEYS[2] the shard's last published pass slot
-- ARGV[1] pass slot  ARGV[2] stream maxlen  ARGV[3] cursor TTL ms
-- ARGV[4..] key_id, verdict JSON pairs
--
-- Returns the entries appended (0 when this slot was already published here).

local done = tonumber(redis.call('GET', KEYS[2]) or '-1')
if done >= tonumber(ARGV[1]) then
  return 0
end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'key_id', ARGV[i], 'linkage', ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return (#ARGV - 3) / 2
