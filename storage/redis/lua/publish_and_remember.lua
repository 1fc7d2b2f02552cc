-- Publish one event and, when it has an offset, add it to the channel's recent window,
-- atomically: a node that notices a gap can always find the missing event in the window.
-- Run by gateway/fanout/broker_redis.py (RedisBroker.publish).
-- KEYS: window (sorted set by offset), window meta (hash: epoch).
-- ARGV: pub/sub channel, envelope, offset, epoch, payload, window size, window ttl (ms), and
-- the publish command: PUBLISH on one Redis, SPUBLISH on a cluster (the channel shares the
-- window's hash tag, so it is in the script's slot).
-- Offset 0 (an ephemeral push) is only published; a new epoch empties the window first.
-- Returns how many subscribers Redis delivered it to.
local offset = tonumber(ARGV[3])
if offset > 0 then
  if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[4] then
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], 'epoch', ARGV[4])
  end
  redis.call('ZADD', KEYS[1], offset, ARGV[5])
  local size = tonumber(ARGV[6])
  if redis.call('ZCARD', KEYS[1]) > size then
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -size - 1)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return redis.call(ARGV[8], ARGV[1], ARGV[2])
