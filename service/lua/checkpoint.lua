-- Checkpoint one key's scorer state and append its newest events, unless the stored
-- state already counts a newer stream entry (then a stalled scorer is writing late).
--
-- KEYS[1] state hash (fields: state, last_event_id)  KEYS[2] recent events list
-- ARGV[1] last_event_id counted in this state  ARGV[2] state blob  ARGV[3] TTL ms
-- ARGV[4] events kept in the list  ARGV[5..] event records, oldest first
--
-- Returns 1 when written, 0 when refused.

local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local stored = redis.call('HGET', KEYS[1], 'last_event_id')
if stored and stored ~= '' then
  local new_ms, new_seq = id_parts(ARGV[1])
  local old_ms, old_seq = id_parts(stored)
  if new_ms < old_ms or (new_ms == old_ms and new_seq <= old_seq) then
    return 0
  end
end

redis.call('HSET', KEYS[1], 'state', ARGV[2], 'last_event_id', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #ARGV > 4 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 5))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 1
