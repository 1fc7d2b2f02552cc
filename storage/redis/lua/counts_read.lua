-- Read the counters of videos to flush.
-- Run by storage/redis/counts.py (RedisCounters.read_marked).
-- ARGV: counter key prefix, then video ids. Returns id, likes, comments, shares, views,
-- watch_ms, version for each video that still has a counter.
local out = {}
for i = 2, #ARGV do
  local t = redis.call('HMGET', ARGV[1] .. ARGV[i], 'likes', 'comments', 'shares', 'views',
                       'watch_ms', 'version')
  if t[1] then
    table.insert(out, ARGV[i])
    for j = 1, 6 do table.insert(out, t[j] or '0') end
  end
end
return out
