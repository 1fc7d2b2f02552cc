-- Publish the totals of every marked video, at most once per window across all nodes: only
-- the node that takes the window's lock (SET NX PX, on Redis's clock) publishes.
-- Run by storage/redis/counts.py (RedisCounters.push_marked).
-- KEYS: push set, push lock. ARGV: window ms, node, batch, counter key prefix, presence key
-- prefix of video channels, pub/sub channel prefix, envelope head, and "return" to hand the
-- pushes back instead of publishing them (a cluster: a video's channel lives in its own slot,
-- not in this partition's; the node publishes what the script returns).
-- Returns how many videos it pushed (or {video id, payload, ...} with "return"), or -1 when
-- another node holds this window.
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then return -1 end
local videos = redis.call('SPOP', KEYS[1], ARGV[3])
local sent = 0
local back = {}
for _, v in ipairs(videos) do
  local t = redis.call('HMGET', ARGV[4] .. v, 'likes', 'comments', 'shares', 'views',
                       'watch_ms', 'version')
  if t[1] then
    local function count(x) return string.format('%d', math.max(0, tonumber(x or '0'))) end
    local watched = math.floor(math.max(0, tonumber(t[5] or '0')) / 1000)
    local payload = '{"op":"counts","channel":"video:' .. v .. '","video_id":"' .. v ..
      '","likes":' .. count(t[1]) .. ',"comments":' .. count(t[2]) .. ',"shares":' ..
      count(t[3]) .. ',"views":' .. count(t[4]) .. ',"watch_seconds":' ..
      string.format('%d', watched) .. ',"viewers":' .. redis.call('HLEN', ARGV[5] .. v) ..
      ',"version":' .. string.format('%d', tonumber(t[6])) .. '}'
    if ARGV[8] == 'return' then
      table.insert(back, v)
      table.insert(back, payload)
    else
      redis.call('PUBLISH', ARGV[6] .. 'video:' .. v, ARGV[7] .. payload)
    end
    sent = sent + 1
  end
end
if ARGV[8] == 'return' then return back end
return sent
