-- Unmark the flushed videos whose version did not move since they were read (a video that
-- changed after the read stays marked: the next flush writes the newer totals).
-- Run by storage/redis/counts.py (RedisCounters.unmark).
-- KEYS: flush set. ARGV: counter key prefix, then (video id, version written) pairs.
for i = 2, #ARGV, 2 do
  local now = redis.call('HGET', ARGV[1] .. ARGV[i], 'version')
  if (not now) or now == ARGV[i + 1] then redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 1
