-- Change a video's hot counter and mark the video for the next push and the next flush.
-- Run by storage/redis/counts.py (RedisCounters.bump).
-- KEYS: counter, push set, flush set. ARGV: likes, comments, shares, views, watch_ms deltas,
-- ttl ms, video id, then optionally the stored likes, comments, shares, views, watch_ms and
-- version to seed a missing counter.
-- Returns false when there is no counter and no seed (the caller reads the store and retries).
local fields = {'likes', 'comments', 'shares', 'views', 'watch_ms'}
if redis.call('EXISTS', KEYS[1]) == 0 then
  if not ARGV[8] then return false end
  redis.call('HSET', KEYS[1], 'likes', ARGV[8], 'comments', ARGV[9], 'shares', ARGV[10],
             'views', ARGV[11], 'watch_ms', ARGV[12], 'version', ARGV[13])
end
local changed = false
for i = 1, 5 do
  local delta = tonumber(ARGV[i])
  if delta ~= 0 then
    redis.call('HINCRBY', KEYS[1], fields[i], delta)
    changed = true
  end
end
if changed then
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('SADD', KEYS[3], ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SADD', KEYS[2], ARGV[7])
return 1
