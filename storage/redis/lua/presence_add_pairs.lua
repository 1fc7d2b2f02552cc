-- Count users in channels on this node: each "channel\nuser" pair this node's record did not
-- hold yet adds one to the user's count in the channel's hash. Refused (false) while the node
-- is not registered.
-- Run by storage/redis/presence.py (RedisPresence.add_pairs).
-- KEYS: nodes. ARGV: key prefix, node, pairs. Returns the pairs that joined.
local p = ARGV[1]
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return false end
local rec = p .. 'nc:' .. ARGV[2]
local up = {}
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('SADD', rec, m) == 1 then
    local cut = string.find(m, '\n', 1, true)
    local key = p .. 'c:' .. string.sub(m, 1, cut - 1)
    if redis.call('HINCRBY', key, string.sub(m, cut + 1), 1) == 1 then table.insert(up, m) end
  end
end
return up
