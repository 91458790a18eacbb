-- One instance's exchange with the fleet, atomically: heartbeat, membership, budget leases,
-- deployment loads, cool-downs, ejections, utilization readings and the retry budget.
-- Written for src/ops/fleet/wire.rs, which builds ARGV and reads the reply; see README,
-- "Running a fleet", for the algorithm.
--
-- ARGV: prefix, instance, member_timeout_ms, leaving (0/1), own_requests, own_retries,
--       tenants, deployments, then 8 per tenant:
--         name, tokens_per_minute, token_give_back, token_demand, token_unit,
--         requests_per_minute, request_give_back, request_demand   (a limit of 0: none)
--       then 6 per deployment:
--         name, admitted, cooldown_ms, ejection_ms, reading_permille (-1: none), reading_age_ms
-- Reply: members, fleet_requests, fleet_retries, then 2 per tenant (token and request
--        grants, as strings), then 5 per deployment (admitted, cooldown_ms, ejection_ms,
--        reading_permille or -1, reading_age_ms).
--
-- Every key shares the hash tag {prefix}, so the script also runs on a clustered Redis.

if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = '{' .. ARGV[1] .. '}:'
local me = ARGV[2]
local member_timeout = tonumber(ARGV[3])
local leaving = ARGV[4] == '1'
-- Keys of a fleet that stopped altogether go away on their own.
local ttl = 600000
local members_key = p .. 'members'
local agg_key = p .. 'agg'
local function inst_key(id) return p .. 'i:' .. id end

-- An instance's own hash holds what it contributed: its counts in `agg` and its leases
-- and weights in each budget. Removing a member takes all of that back out.
local function forget(id)
  local mine = redis.call('HGETALL', inst_key(id))
  for i = 1, #mine, 2 do
    local f, v = mine[i], tonumber(mine[i + 1]) or 0
    local kind, rest = string.match(f, '^(%a+):(.*)$')
    if kind == 'c' then
      -- A count back at 0 is skipped: -0 reaches Redis as "-0", which HINCRBY refuses,
      -- and the error would stop every member's exchange until this hash expired.
      local n = math.floor(v)
      if n ~= 0 then redis.call('HINCRBY', agg_key, rest, -n) end
    elseif kind == 'l' or kind == 'w' then
      -- rest is "<dimension>:<tenant>"; a dead member's unused lease is not returned:
      -- it may have been spent, so the bucket refills it instead.
      local dim, tenant = string.match(rest, '^(%a):(.*)$')
      local field = dim .. (kind == 'l' and 'o' or 'w')
      redis.call('HINCRBYFLOAT', p .. 'b:' .. tenant, field, -v)
    end
  end
  redis.call('DEL', inst_key(id))
  redis.call('ZREM', members_key, id)
end

redis.call('ZADD', members_key, now, me)
local dead = redis.call('ZRANGEBYSCORE', members_key, '-inf', now - member_timeout)
for _, id in ipairs(dead) do
  if id ~= me then forget(id) end
end
local members = redis.call('ZCARD', members_key)
local ikey = inst_key(me)

-- A count every member publishes (its total over a window); the fleet's is the sum.
local function publish(field, value)
  local f = 'c:' .. field
  local old = tonumber(redis.call('HGET', ikey, f)) or 0
  value = math.floor(value)
  if value ~= old then
    redis.call('HINCRBY', agg_key, field, value - old)
    redis.call('HSET', ikey, f, value)
  end
  return tonumber(redis.call('HGET', agg_key, field)) or value
end

-- One dimension of a tenant's budget: a bucket of `cap` refilled continuously, less the
-- leases out. This member gives its lease back (less what it spent) and takes a new one:
-- a share of everything not yet spent in proportion to its recent demand (asked for, taken
-- or refused), never more than the bucket holds. Returns the lease.
local function budget(tenant, dim, cap, give_back, demand, unit)
  local key = p .. 'b:' .. tenant
  local lf, wf = 'l:' .. dim .. ':' .. tenant, 'w:' .. dim .. ':' .. tenant
  local v = redis.call('HMGET', key, dim .. 'a', dim .. 't', dim .. 'o', dim .. 'w')
  local out, wsum = tonumber(v[3]) or 0, tonumber(v[4]) or 0
  local avail, at = tonumber(v[1]), tonumber(v[2])
  if not avail or not at then avail, at = cap - out, now end
  if cap <= 0 then return 0 end
  avail = math.min(cap - out, avail + math.max(0, now - at) * cap / 60000)
  local mine = redis.call('HMGET', ikey, lf, wf)
  local old_lease, old_w = tonumber(mine[1]) or 0, tonumber(mine[2]) or 0
  out = out - old_lease
  avail = avail + math.max(-cap, math.min(cap, give_back))
  local w = old_w * 0.5 + demand + 0.001
  wsum = math.max(wsum - old_w, 0) + w
  local lease = 0
  if not leaving then
    local want = (avail + out) * w / wsum
    -- One typical request at least for a member that was asked recently, or for every
    -- member while the bucket holds that much for each: a first request is not refused.
    if w >= unit / 2 or avail >= members * unit then want = math.max(want, unit) end
    lease = math.floor(math.min(want, avail))
    -- A fragment smaller than a request would sit unused; left in the bucket, it adds up
    -- to a whole request for the next member to ask.
    if lease < unit then lease = 0 end
  end
  avail = avail - lease
  out = out + lease
  redis.call('HSET', key, dim .. 'a', avail, dim .. 't', now, dim .. 'o', out, dim .. 'w', wsum)
  redis.call('PEXPIRE', key, ttl)
  redis.call('HSET', ikey, lf, lease, wf, w)
  return lease
end

local reply = { members, publish('rq', ARGV[5]), publish('rt', ARGV[6]) }
local tenants, deployments = tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
for _ = 1, tenants do
  local name = ARGV[i]
  local tpm, rpm = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 5])
  local tl, rl = 0, 0
  if tpm > 0 then
    tl = budget(name, 't', tpm, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]))
  end
  if rpm > 0 then
    rl = budget(name, 'r', rpm, tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), 1)
  end
  reply[#reply + 1] = tostring(tl)
  reply[#reply + 1] = tostring(rl)
  i = i + 8
end

-- A deadline every member may extend (cool-down, ejection): the key lives as long as the
-- longest one. Returns what is left of it.
local function deadline(key, ms)
  if ms > 0 and redis.call('PTTL', key) < ms then
    redis.call('SET', key, me, 'PX', ms)
  end
  return math.max(0, redis.call('PTTL', key))
end

for _ = 1, deployments do
  local name = ARGV[i]
  local admitted = publish('d:' .. name, tonumber(ARGV[i + 1]))
  local cool = deadline(p .. 'cd:' .. name, tonumber(ARGV[i + 2]))
  local eject = deadline(p .. 'ej:' .. name, tonumber(ARGV[i + 3]))
  local ukey = p .. 'u:' .. name
  local permille, age = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  if permille >= 0 then
    local at = now - age
    local seen = tonumber(redis.call('HGET', ukey, 'at')) or -1
    if at > seen then
      redis.call('HSET', ukey, 'at', at, 'pm', permille)
      redis.call('PEXPIRE', ukey, ttl)
    end
  end
  local u = redis.call('HMGET', ukey, 'at', 'pm')
  local uat, upm = tonumber(u[1]), tonumber(u[2])
  reply[#reply + 1] = admitted
  reply[#reply + 1] = cool
  reply[#reply + 1] = eject
  if uat and upm then
    reply[#reply + 1] = upm
    reply[#reply + 1] = math.max(0, now - uat)
  else
    reply[#reply + 1] = -1
    reply[#reply + 1] = 0
  end
  i = i + 6
end

if leaving then
  forget(me)
else
  for _, k in ipairs({ members_key, agg_key, ikey }) do redis.call('PEXPIRE', k, ttl) end
end
return reply
