-- Count users online on this node: each user this node's record did not hold yet adds one
-- to the user's node count. Refused (false) while the node is not registered.
-- Run by storage/redis/presence.py (RedisPresence.add_users).
-- KEYS: nodes. ARGV: key prefix, node, users. Returns the users who came online.
local p = ARGV[1]
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return false end
local rec = p .. 'nu:' .. ARGV[2]
local up = {}
for i = 3, #ARGV do
  local u = ARGV[i]
  if redis.call('SADD', rec, u) == 1 and redis.call('INCR', p .. 'u:' .. u) == 1 then
    table.insert(up, u)
  end
end
return up
