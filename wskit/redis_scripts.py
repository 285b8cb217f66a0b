"""The Lua scripts of :class:`wskit.redis_hub.RedisHub`, each one atomic step in Redis.

Key layout (``P`` is the hub's key prefix, ``wskit:`` by default; ``T`` a hub topic
such as ``chat.lobby``):

=====================  ======  =========================================================
key                    type    holds
=====================  ======  =========================================================
``P{T}:meta``          hash    ``epoch`` (random string) and ``offset`` (latest given out)
``P{T}:stream``        stream  the last ``history_size`` entries, entry id ``<offset>-0``,
                               field ``d``: the stored shape, msgpack
``P{T}:presence``      hash    member id -> ``"<join seq>\\t<info>"``; field ``#``: join counter
``P{T}:names``         hash    info (a chat nick) -> member id: one holder per info
``Pprocs``             zset    process id -> time of its last heartbeat (Redis clock, ms)
``Pproc:<process id>`` set     ``"<topic>\\n<member id>"`` of that process's members
``Preaped:<process>``  string  set when another process removed that process's members
=====================  ======  =========================================================

The ``{T}`` braces make a room's four keys one Redis Cluster hash slot. The
presence scripts also read ``Pprocs`` and the per-process sets, which they do not
declare in ``KEYS``: they need one Redis (or one shard per group of rooms chosen
by the application), not Redis Cluster.
"""

from __future__ import annotations

# A process is alive while its heartbeat in Pprocs is younger than ARGV timeout (ms).
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

_INFO = """
local function info_of(value)
  local tab = string.find(value, '\\t', 1, true)
  return string.sub(value, tab + 1)
end
"""

# KEYS: meta, stream. ARGV: channel, envelope, stored entry, size, ttl ms, new epoch.
# Returns {offset, epoch}. The published payload is "h<offset>:<epoch>:<envelope>".
APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local size = tonumber(ARGV[4])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-0', 'd', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], 'h' .. offset .. ':' .. epoch .. ':' .. ARGV[2])
return {offset, epoch}
"""

# KEYS: meta, stream. ARGV: ttl ms, new epoch. Returns {offset, epoch, entries}.
HISTORY = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
local epoch, offset = meta[1], meta[2]
if not epoch then
  epoch, offset = ARGV[2], 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {tonumber(offset), epoch, redis.call('XRANGE', KEYS[2], '-', '+')}
"""

# KEYS: presence, names, procs, this process's set.
# ARGV: member id, info, process id, timeout ms, ttl ms, topic.
# Returns 1, or 0 when a live member (this process or another) holds info.
PRESENCE_JOIN = _NOW + """
local holder = redis.call('HGET', KEYS[2], ARGV[2])
if holder and holder ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], holder) == 1 then
  local process = string.match(holder, '^[^.]+')
  local seen = redis.call('ZSCORE', KEYS[3], process)
  if seen and tonumber(seen) >= now - tonumber(ARGV[4]) then
    return 0
  end
  redis.call('HDEL', KEYS[1], holder)  -- its server stopped: the name is free
end
local seq = redis.call('HINCRBY', KEYS[1], '#', 1)
redis.call('HSET', KEYS[1], ARGV[1], seq .. '\\t' .. ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[6] .. '\\n' .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""

# KEYS: presence, names, this process's set. ARGV: member id, topic.
PRESENCE_LEAVE = _INFO + """
local value = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2] .. '\\n' .. ARGV[1])
if not value then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
local info = info_of(value)
if redis.call('HGET', KEYS[2], info) == ARGV[1] then
  redis.call('HDEL', KEYS[2], info)
end
return 1
"""

# KEYS: presence, procs. ARGV: timeout ms. Returns {member id, value, ...} of live members.
PRESENCE = _NOW + """
local all = redis.call('HGETALL', KEYS[1])
local alive, found = {}, {}
for i = 1, #all, 2 do
  local id = all[i]
  if id ~= '#' then
    local process = string.match(id, '^[^.]+')
    if alive[process] == nil then
      local seen = redis.call('ZSCORE', KEYS[2], process)
      alive[process] = (seen ~= false) and tonumber(seen) >= now - tonumber(ARGV[1])
    end
    if alive[process] then
      found[#found + 1] = id
      found[#found + 1] = all[i + 1]
    end
  end
end
return found
"""

# Remove the members of process `dead` (its set of entries), returning {topic, id, info, ...}
# of those still present. Used by HEARTBEAT (for processes whose heartbeat is too old).
_REAP = _INFO + """
local function reap(prefix, dead, gone)
  local set = prefix .. 'proc:' .. dead
  for _, entry in ipairs(redis.call('SMEMBERS', set)) do
    local newline = string.find(entry, '\\n', 1, true)
    local topic, id = string.sub(entry, 1, newline - 1), string.sub(entry, newline + 1)
    local presence, names = prefix .. '{' .. topic .. '}:presence', prefix .. '{' .. topic .. '}:names'
    local value = redis.call('HGET', presence, id)
    if value then
      redis.call('HDEL', presence, id)
      local info = info_of(value)
      if redis.call('HGET', names, info) == id then
        redis.call('HDEL', names, info)
      end
      gone[#gone + 1] = topic
      gone[#gone + 1] = id
      gone[#gone + 1] = info
    end
  end
  redis.call('DEL', set)
end
"""

# KEYS: procs. ARGV: process id, timeout ms, key prefix, mark ("0": this process is stopping).
# Records this process's heartbeat and reaps up to 16 processes whose heartbeat is too old.
HEARTBEAT = _NOW + _REAP + """
local gone = {}
if ARGV[4] == '0' then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
  return gone
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])), 'LIMIT', 0, 16)
for _, process in ipairs(dead) do
  redis.call('ZREM', KEYS[1], process)
  reap(ARGV[3], process, gone)
  -- Tells the process, should it come back, that its members' leave was announced.
  redis.call('SET', ARGV[3] .. 'reaped:' .. process, 1, 'EX', 86400)
end
return gone
"""

# KEYS: procs, this process's set. ARGV: process id, key prefix, ttl ms, then topic, id, info, ...
# After a (re)connection: this process's members in Redis become exactly the ones given.
# Returns {event, topic, id, info, ...}: "join" for members added back (lost meanwhile),
# "leave" for members that had left while Redis could not be told.
SYNC = _NOW + _INFO + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
local prefix, ttl = ARGV[2], ARGV[3]
local wanted, changed = {}, {}
-- Announce members put back only if another process announced their leave (not after Redis
-- merely lost its data: then nobody was told they had gone).
local reaped = redis.call('DEL', prefix .. 'reaped:' .. ARGV[1]) == 1
for i = 4, #ARGV, 3 do
  wanted[ARGV[i] .. '\\n' .. ARGV[i + 1]] = ARGV[i + 2]
end
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if wanted[entry] == nil then
    local newline = string.find(entry, '\\n', 1, true)
    local topic, id = string.sub(entry, 1, newline - 1), string.sub(entry, newline + 1)
    local presence, names = prefix .. '{' .. topic .. '}:presence', prefix .. '{' .. topic .. '}:names'
    local value = redis.call('HGET', presence, id)
    redis.call('SREM', KEYS[2], entry)
    if value then
      redis.call('HDEL', presence, id)
      local info = info_of(value)
      if redis.call('HGET', names, info) == id then
        redis.call('HDEL', names, info)
      end
      changed[#changed + 1] = 'leave'
      changed[#changed + 1] = topic
      changed[#changed + 1] = id
      changed[#changed + 1] = info
    end
  end
end
for i = 4, #ARGV, 3 do
  local topic, id, info = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local presence, names = prefix .. '{' .. topic .. '}:presence', prefix .. '{' .. topic .. '}:names'
  redis.call('SADD', KEYS[2], topic .. '\\n' .. id)
  if redis.call('HEXISTS', presence, id) == 0 then
    local seq = redis.call('HINCRBY', presence, '#', 1)
    redis.call('HSET', presence, id, seq .. '\\t' .. info)
    redis.call('HSET', names, info, id)
    if reaped then
      changed[#changed + 1] = 'join'
      changed[#changed + 1] = topic
      changed[#changed + 1] = id
      changed[#changed + 1] = info
    end
  end
  redis.call('PEXPIRE', presence, ttl)
  redis.call('PEXPIRE', names, ttl)
end
return changed
"""

# KEYS: any keys. ARGV: ttl ms. Keeps the rooms this process has members in.
REFRESH = """
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""

SCRIPTS = {
    "append": APPEND,
    "history": HISTORY,
    "presence_join": PRESENCE_JOIN,
    "presence_leave": PRESENCE_LEAVE,
    "presence": PRESENCE,
    "heartbeat": HEARTBEAT,
    "sync": SYNC,
    "refresh": REFRESH,
}

__all__ = ["SCRIPTS"]
