-- Take back users this node had counted online (only those its record holds).
-- Run by storage/redis/presence.py (RedisPresence.remove_users).
-- KEYS: nodes. ARGV: key prefix, node, now (ms, their last seen), users.
-- Returns the users who went offline (no node holds them any more).
local p = ARGV[1]
local rec = p .. 'nu:' .. ARGV[2]
local off = {}
for i = 4, #ARGV do
  local u = ARGV[i]
  if redis.call('SREM', rec, u) == 1 then
    local n = redis.call('DECR', p .. 'u:' .. u)
    if n <= 0 then
      redis.call('DEL', p .. 'u:' .. u)
      redis.call('SET', p .. 'ls:' .. u, ARGV[3])
      table.insert(off, u)
    end
  end
end
return off
