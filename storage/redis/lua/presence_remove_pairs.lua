-- Take back "channel\nuser" pairs this node had counted (only those its record holds).
-- Run by storage/redis/presence.py (RedisPresence.remove_pairs).
-- KEYS: nodes. ARGV: key prefix, node, pairs. Returns the pairs that left (on every node).
local p = ARGV[1]
local rec = p .. 'nc:' .. ARGV[2]
local left = {}
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('SREM', rec, m) == 1 then
    local cut = string.find(m, '\n', 1, true)
    local key = p .. 'c:' .. string.sub(m, 1, cut - 1)
    local u = string.sub(m, cut + 1)
    local n = redis.call('HINCRBY', key, u, -1)
    if n <= 0 then
      redis.call('HDEL', key, u)
      table.insert(left, m)
    end
  end
end
return left
