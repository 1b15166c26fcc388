-- Save one key's linkage signature beside the checkpoint queued just before it, only if
-- that checkpoint was written: the state must count exactly the same last stream entry.
-- A scorer that stalled past its lease (its checkpoint refused) cannot undo newer counts.
--
-- KEYS[1] state hash (field last_event_id)  KEYS[2] signature
-- ARGV[1] last_event_id counted in the signature  ARGV[2] signature blob  ARGV[3] TTL ms
--
-- Returns 1 when written, 0 when refused.

if redis.call('HGET', KEYS[1], 'last_event_id') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
