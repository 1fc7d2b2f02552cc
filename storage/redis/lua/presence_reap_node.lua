-- Clear everything a dead node had added, and forget the node.
-- Run by storage/redis/presence.py (RedisPresence.sweep).
-- KEYS: nodes. ARGV: key prefix, dead node.
-- The node's score is read again here, against Redis TIME: a node that refreshed since the
-- caller saw it expired (it came back from a pause) is not reaped on that stale read (false).
-- Returns {users now offline, "channel\nuser" pairs that left}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = ARGV[1]
local node = ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], node)
if not score or tonumber(score) > now then return false end
redis.call('ZREM', KEYS[1], node)
local off = {}
for _, u in ipairs(redis.call('SMEMBERS', p .. 'nu:' .. node)) do
  local n = redis.call('DECR', p .. 'u:' .. u)
  if n <= 0 then
    redis.call('DEL', p .. 'u:' .. u)
    redis.call('SET', p .. 'ls:' .. u, string.format('%.0f', now))
    table.insert(off, u)
  end
end
local left = {}
for _, m in ipairs(redis.call('SMEMBERS', p .. 'nc:' .. node)) do
  local cut = string.find(m, '\n', 1, true)
  local ch = string.sub(m, 1, cut - 1)
  local u = string.sub(m, cut + 1)
  local n = redis.call('HINCRBY', p .. 'c:' .. ch, u, -1)
  if n <= 0 then
    redis.call('HDEL', p .. 'c:' .. ch, u)
    table.insert(left, m)
  end
end
redis.call('DEL', p .. 'nu:' .. node, p .. 'nc:' .. node)
return {off, left}
