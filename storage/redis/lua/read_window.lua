-- Read a channel's recent window after an offset.
-- Run by gateway/fanout/broker_redis.py (RedisBroker.recent).
-- KEYS: window, window meta. ARGV: after this offset, at most this many events.
-- Returns {epoch, first offset, last offset, {event, offset, ...}}, or false when nothing is
-- remembered.
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then return false end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return false end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local events = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                          'LIMIT', 0, ARGV[2])
return {epoch, first[2], last[2], events}
