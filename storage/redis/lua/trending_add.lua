-- Add engagement to one scope's bucket of trending videos; keep the bucket bounded.
-- Run by storage/redis/trending.py (RedisTrending.add).
-- KEYS: the bucket (a sorted set: video id -> score). ARGV: ttl ms, videos kept, then
-- (score, video id) pairs. A bucket past twice the kept number is cut to its best.
for i = 3, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
local keep = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) > 2 * keep then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -keep - 1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
