-- Change a video's hot counter and mark the video for the next push and the next flush.
-- Run by gateway/fanout/counts.py (RedisHotCounts.add).
-- KEYS: counter, push set, flush set. ARGV: likes, comments, shares deltas, ttl ms, video id,
-- then optionally the stored likes, comments, shares and version to seed a missing counter.
-- Returns false when there is no counter and no seed (the caller reads the store and retries).
if redis.call('EXISTS', KEYS[1]) == 0 then
  if not ARGV[6] then return false end
  redis.call('HSET', KEYS[1], 'likes', ARGV[6], 'comments', ARGV[7], 'shares', ARGV[8],
             'version', ARGV[9])
end
local dl, dc, ds = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if dl ~= 0 or dc ~= 0 or ds ~= 0 then
  if dl ~= 0 then redis.call('HINCRBY', KEYS[1], 'likes', dl) end
  if dc ~= 0 then redis.call('HINCRBY', KEYS[1], 'comments', dc) end
  if ds ~= 0 then redis.call('HINCRBY', KEYS[1], 'shares', ds) end
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('SADD', KEYS[3], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
