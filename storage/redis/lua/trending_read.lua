-- Read the best videos of one scope over its live buckets.
-- Run by storage/redis/trending.py (RedisTrending.top).
-- KEYS: the live buckets, then a scratch key (same hash tag). ARGV: how many.
-- Returns {video id, score, ...}, best first.
local n = #KEYS
local sources = {}
for i = 1, n - 1 do sources[i] = KEYS[i] end
redis.call('ZUNIONSTORE', KEYS[n], n - 1, unpack(sources))
local top = redis.call('ZREVRANGE', KEYS[n], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
redis.call('DEL', KEYS[n])
return top
