-- One instance's exchange with the fleet, atomically: heartbeat, membership, budget leases,
-- deployment loads, cool-downs, ejections, utilization readings and the retry budget.
-- Written for src/ops/fleet/wire.rs, which builds ARGV and reads the reply; see README,
-- "Running a fleet", for the algorithm.
--
-- ARGV: prefix, instance, member_timeout_ms, leaving (0/1), own_requests, own_retries,
--       tenants, deployments, then 8 per tenant:
--         name, tokens_per_minute, token_give_back, token_demand, token_unit,
--         requests_per_minute, request_give_back, request_demand   (a limit of 0: none)
--       then 7 per deployment:
--         name, admitted, recent, cooldown_ms, ejection_ms, reading_permille (-1: none),
--         reading_age_ms   (recent: tokens admitted since this member's previous exchange)
-- Reply: members, fleet_requests, fleet_retries, then 4 per tenant (token and request
--        leases, then what each bucket holds beyond all leases, as strings), then 6 per
--        deployment (admitted, recent, cooldown_ms, ejection_ms, reading_permille or -1,
--        reading_age_ms).
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
-- and weights in each budget. Removing a member takes all of that back out, and returns its
-- lease to the bucket less its recent demand, the most it may have spent since its last
-- exchange (a member that stopped gracefully gave everything back already).
local function forget(id)
  local mine = redis.call('HGETALL', inst_key(id))
  local vals = {}
  for i = 1, #mine, 2 do vals[mine[i]] = tonumber(mine[i + 1]) or 0 end
  -- In HGETALL's order, and nothing for a zero: HINCRBY refuses "-0", which would fail
  -- every member's exchange from then on.
  for i = 1, #mine, 2 do
    local f = mine[i]
    local v = vals[f]
    local kind, rest = string.match(f, '^(%a+):(.*)$')
    if kind == 'c' then
      local n = math.floor(v)
      if n ~= 0 then redis.call('HINCRBY', agg_key, rest, -n) end
    elseif (kind == 'l' or kind == 'w') and v ~= 0 then
      -- rest is "<dimension>:<tenant>"
      local dim, tenant = string.match(rest, '^(%a):(.*)$')
      local key = p .. 'b:' .. tenant
      if kind == 'w' then
        redis.call('HINCRBYFLOAT', key, dim .. 'w', -v)
      else
        redis.call('HINCRBYFLOAT', key, dim .. 'o', -v)
        local back = math.max(0, v - (vals['w:' .. rest] or 0))
        if back > 0 and redis.call('HEXISTS', key, dim .. 'a') == 1 then
          redis.call('HINCRBYFLOAT', key, dim .. 'a', back)
        end
      end
    end
  end
  redis.call('DEL', inst_key(id))
  redis.call('ZREM', members_key, id)
end

-- Demand weights halve every 5 s since this member's previous exchange: a member asked for
-- a request a few seconds ago keeps a lease for the next one (sparse bursts, thin traffic).
local prev = tonumber(redis.call('ZSCORE', members_key, me))
local decay = 0
if prev then decay = 0.5 ^ (math.max(0, now - prev) / 5000) end
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
-- or refused, see `decay`), never more than the bucket holds. Returns the lease and what the bucket holds
-- beyond all leases.
local function budget(tenant, dim, cap, give_back, demand, unit)
  local key = p .. 'b:' .. tenant
  local lf, wf = 'l:' .. dim .. ':' .. tenant, 'w:' .. dim .. ':' .. tenant
  local v = redis.call('HMGET', key, dim .. 'a', dim .. 't', dim .. 'o', dim .. 'w')
  local out, wsum = tonumber(v[3]) or 0, tonumber(v[4]) or 0
  local avail, at = tonumber(v[1]), tonumber(v[2])
  if not avail or not at then avail, at = cap - out, now end
  if cap <= 0 then return 0, 0 end
  avail = math.min(cap - out, avail + math.max(0, now - at) * cap / 60000)
  local mine = redis.call('HMGET', ikey, lf, wf)
  local old_lease, old_w = tonumber(mine[1]) or 0, tonumber(mine[2]) or 0
  out = out - old_lease
  avail = avail + math.max(-cap, math.min(cap, give_back))
  local w = old_w * decay + demand
  wsum = math.max(wsum - old_w, 0) + w
  local lease = 0
  if not leaving then
    -- Members without demand share evenly what those with demand leave.
    local want = (avail + out) * (w + 0.001) / (wsum + members * 0.001)
    -- One typical request at least for a member that was asked recently, or for every
    -- member while the budget not yet spent holds that much for each, so that a first
    -- request is not refused.
    if w >= unit / 2 or avail + out >= members * unit then want = math.max(want, unit) end
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
  return lease, avail
end

local reply = { members, publish('rq', ARGV[5]), publish('rt', ARGV[6]) }
local tenants, deployments = tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 9
for _ = 1, tenants do
  local name = ARGV[i]
  local tpm, rpm = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 5])
  local tl, rl, ta, ra = 0, 0, 0, 0
  if tpm > 0 then
    tl, ta = budget(name, 't', tpm, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]))
  end
  if rpm > 0 then
    rl, ra = budget(name, 'r', rpm, tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), 1)
  end
  reply[#reply + 1] = tostring(tl)
  reply[#reply + 1] = tostring(rl)
  reply[#reply + 1] = tostring(math.floor(math.max(ta, 0)))
  reply[#reply + 1] = tostring(math.floor(math.max(ra, 0)))
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
  local recent = publish('r:' .. name, tonumber(ARGV[i + 2]))
  local cool = deadline(p .. 'cd:' .. name, tonumber(ARGV[i + 3]))
  local eject = deadline(p .. 'ej:' .. name, tonumber(ARGV[i + 4]))
  local ukey = p .. 'u:' .. name
  local permille, age = tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
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
  reply[#reply + 1] = recent
  reply[#reply + 1] = cool
  reply[#reply + 1] = eject
  if uat and upm then
    reply[#reply + 1] = upm
    reply[#reply + 1] = math.max(0, now - uat)
  else
    reply[#reply + 1] = -1
    reply[#reply + 1] = 0
  end
  i = i + 7
end

if leaving then
  forget(me)
else
  for _, k in ipairs({ members_key, agg_key, ikey }) do redis.call('PEXPIRE', k, ttl) end
end
return reply
