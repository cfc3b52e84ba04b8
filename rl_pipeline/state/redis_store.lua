-- One atomic rate-limit decision over several limits; mirrors limits/algorithms.py.
-- KEYS: one state key per limit, then the namespace's pause key.
-- ARGV: now, cost, dry_run (0/1), then per limit: algorithm, rate, period, capacity, ttl.
-- Returns the wait in seconds as a string ("0" when granted).
local EPS = 1e-6
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local dry_run = ARGV[3] == "1"
local limit_count = #KEYS - 1
local paused_until = tonumber(redis.call("GET", KEYS[#KEYS]) or "0")
if now < paused_until then return string.format("%.17g", paused_until - now) end

local function load(key)
  local raw = redis.call("GET", key)
  local state = {}
  if raw then
    for x in string.gmatch(raw, "[^,]+") do state[#state + 1] = tonumber(x) end
  end
  return state
end

local function dump(state)
  local parts = {}
  for i, x in ipairs(state) do parts[i] = string.format("%.17g", x) end
  return table.concat(parts, ",")
end

local function token_bucket(s, rate, period, capacity)
  local refill = rate / period
  local tokens, last = capacity, now
  if #s > 0 then
    tokens = math.min(capacity, s[1] + math.max(0, now - s[2]) * refill)
    last = math.max(s[2], now)
  end
  if tokens + EPS * refill >= cost then return true, {tokens - cost, last}, 0 end
  return false, {tokens, last}, (cost - tokens) / refill
end

local function leaky_bucket(s, rate, period, capacity)
  local interval = period / rate
  local tolerance = capacity * interval
  local tat = now
  if #s > 0 then tat = math.max(s[1], now) end
  local new_tat = tat + cost * interval
  if new_tat - now <= tolerance + EPS then return true, {new_tat}, 0 end
  return false, {tat}, new_tat - now - tolerance
end

local function sliding_window_log(s, rate, period, capacity)
  local kept, used = {}, 0
  for i = 1, #s, 2 do
    if s[i] > now - period + EPS then
      kept[#kept + 1] = s[i]; kept[#kept + 1] = s[i + 1]; used = used + s[i + 1]
    end
  end
  if used + cost <= rate then
    local stamp = now
    if #kept > 0 and kept[#kept - 1] > now then stamp = kept[#kept - 1] end
    kept[#kept + 1] = stamp; kept[#kept + 1] = cost
    return true, kept, 0
  end
  local wait = 0
  for i = 1, #kept, 2 do
    used = used - kept[i + 1]
    wait = kept[i] + period - now
    if used + cost <= rate then break end
  end
  return false, kept, wait
end

local function sliding_window_counter(s, rate, period, capacity)
  local window = math.floor((now + EPS) / period) * period
  local start, previous, current = window, 0, 0
  if #s > 0 then start, previous, current = s[1], s[2], s[3] end
  if start ~= window then
    if start == window - period then previous = current else previous = 0 end
    current = 0
  end
  local elapsed = (now + EPS - window) / period
  if previous * (1 - elapsed) + current + cost <= rate then
    return true, {window, previous, current + cost}, 0
  end
  local room = rate - current - cost
  local wait
  if room >= 0 and previous > 0 then
    wait = window + (1 - room / previous) * period - now
  else
    local fraction = 0
    if current > 0 then fraction = math.max(0, 1 - (rate - cost) / current) end
    wait = window + period + fraction * period - now
  end
  return false, {window, previous, current}, math.max(wait, EPS)
end

local deciders = {
  token_bucket = token_bucket,
  leaky_bucket = leaky_bucket,
  sliding_window_log = sliding_window_log,
  sliding_window_counter = sliding_window_counter,
}

local new_states, ttls, wait = {}, {}, 0
for i = 1, limit_count do
  local key = KEYS[i]
  local base = 3 + (i - 1) * 5
  local algorithm = ARGV[base + 1]
  local granted, state, w = deciders[algorithm](
    load(key), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]))
  if not granted and w > wait then wait = w end
  new_states[i] = state
  ttls[i] = math.ceil(tonumber(ARGV[base + 5]) * 1000)
end
if wait == 0 and not dry_run then
  for i = 1, limit_count do
    redis.call("SET", KEYS[i], dump(new_states[i]), "PX", ttls[i])
  end
end
return string.format("%.17g", wait)
