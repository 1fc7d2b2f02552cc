-- Refresh this node's liveness entry (scored with Redis TIME) and list the expired nodes.
-- Run by storage/redis/presence.py (RedisPresence.sweep).
-- KEYS: nodes, nu:node, nc:node. ARGV: node, ttl (ms).
-- Returns {1 when the node was not registered, record sizes, nodes whose score has passed}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fresh = redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
return {fresh, redis.call('SCARD', KEYS[2]), redis.call('SCARD', KEYS[3]), dead}
