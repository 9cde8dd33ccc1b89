#!lua flags=allow-oom
-- Return the units of expired holds (POST /inventory/reserve) to stock, atomically per partition:
-- for each hold whose expiry has passed, add its units back at its warehouse, forget the hold and
-- append a `stock.changed` event for the inventory writer.
-- The caller found the candidates (ZRANGEBYSCORE) and names their keys, as Redis Cluster wants
-- every key a script touches declared; each is checked again here, so a hold is released once
-- and the script is safe to send twice. A hold with an owner (a basket's) is left alone: whether
-- its units go back depends on its owner's decision (lua/settle_basket_hold.lua). It runs at maxmemory too
-- (allow-oom): it frees the holds, and units must not stay held because Redis is full.
--
-- KEYS[1] the partition's event stream, KEYS[2] the partition's hold-expiry sorted set,
-- KEYS[1 + 2i] hold i's hash, KEYS[2 + 2i] its product's stock hash
-- ARGV: now ms, then the hold IDs in the order of their keys
-- Returns the number of holds released.

--- @include "includes/stock"

local stream, expiries, now_ms = KEYS[1], KEYS[2], whole_number(ARGV[1])
if not now_ms then return bad_argument('now') end
if #KEYS ~= 2 * #ARGV then return bad_argument('keys') end

-- Check every hold's quantity and level before the first write.
local due = {}
for i = 2, #ARGV do
  local hold_id, hold_key, stock_key = ARGV[i], KEYS[2 * i - 1], KEYS[2 * i]
  local expires = redis.call('ZSCORE', expiries, hold_id)
  if expires and tonumber(expires) <= now_ms then
    local h = redis.call('HMGET', hold_key, 'product', 'warehouse', 'quantity', 'owner')
    if h[4] then
      h = nil
    elseif h[1] then
      if not whole_number(h[3]) or not whole_number(redis.call('HGET', stock_key, h[2]) or '0') then
        return bad_argument('hold ' .. hold_id)
      end
    end
    if h then due[#due + 1] = {hold_id, hold_key, stock_key, h} end
  end
end

local released = 0
for _, d in ipairs(due) do
  local hold_id, hold_key, stock_key, h = d[1], d[2], d[3], d[4]
  if h[1] then
    give_back(stream, stock_key, h[1], h[2], whole_number(h[3]), 'hold expired')
    released = released + 1
  end
  redis.call('DEL', hold_key)
  redis.call('ZREM', expiries, hold_id)
end
return released
