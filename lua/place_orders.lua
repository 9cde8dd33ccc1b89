#!lua
-- Place a micro-batch of orders that share one partition (one hash slot).
--
-- For each order, in arrival order: if its order ID is already recorded (a resend after a lost
-- reply), answer what was decided then; if its idempotency key was seen, answer the stored
-- confirmation; else walk the candidate warehouses (nearest H3 ring first, exact distance inside a
-- ring, as ranked by the caller), take the first whose level >= quantity, decrement it, record
-- the order and remember the key. Everything for one order happens inside this call, so no unit
-- can be sold twice. The call appends one `orders.confirmed` event with every order it confirmed.
--
-- The whole call is checked before its first write, so no argument can leave part of a batch
-- applied; a stock level that is not a whole number counts as no stock at that warehouse.
--
-- KEYS[1]            the partition's event stream
-- KEYS[2 + 3*(i-1)]  order i: stock hash (field per warehouse -> its level)
-- KEYS[3 + 3*(i-1)]  order i: order key (its record, includes/order_record.lua)
-- KEYS[4 + 3*(i-1)]  order i: idempotency key (any key of the partition when the order has none)
-- ARGV[1] now in ms, ARGV[2] idempotency TTL in s, ARGV[3] the orders as a JSON array of
--   [orderId, productId, quantity, idempotencyKey ('' = none), fingerprint, lat, lon (as text),
--    [warehouseId...] nearest first, [deliveryDays...] of each]
--
-- Returns one reply per order:
--   'placed|warehouseId|deliveryDays'  placed by this call (created now, seq 1)
--   {'ok', orderId, warehouseId, deliveryDays, createdMs, replayed (1 = idempotency key), seq}
--                                      placed before: a resend, or a retry under its key
--   {'far', warehouseId...}  stock only at warehouses that were not candidates
--   {'out_of_stock'} | {'unknown_product'} | {'key_conflict'}
-- or the error `BADARG ...` with nothing written.

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/confirm_order"

local now_ms, idem_ttl_s = whole_number(ARGV[1]), whole_number(ARGV[2])
local orders = cjson.decode(ARGV[3])
local stream = KEYS[1]
if not now_ms or not idem_ttl_s or idem_ttl_s < 1 then return bad_argument('now or ttl') end
if type(orders) ~= 'table' or #KEYS ~= 1 + 3 * #orders then return bad_argument('keys') end
local now_text = whole_text(now_ms)

-- Phase 1: check every order before the first write. Checks are inlined: this loop runs for
-- every candidate of every order.
for i, o in ipairs(orders) do
  local qty, ids, days_of = o[3], o[8], o[9]
  if type(qty) ~= 'number' or qty < 1 or qty >= WHOLE_LIMIT or qty % 1 ~= 0 then
    return bad_argument('quantity of order ' .. i)
  end
  if type(ids) ~= 'table' or type(days_of) ~= 'table' or #ids ~= #days_of then
    return bad_argument('candidates of order ' .. i)
  end
  for j = 1, #days_of do
    local days = days_of[j]
    if type(days) ~= 'number' or days % 1 ~= 0 or days <= -WHOLE_LIMIT or days >= WHOLE_LIMIT then
      return bad_argument('delivery days of order ' .. i)
    end
  end
end

-- The level at a warehouse, read once per call and then kept as this call changes it; false
-- when it does not read as a whole number, which counts as no stock there (HINCRBY would refuse
-- it). Read when an order reaches that candidate, not before: most orders stop at their first.
local levels = {}
local function level_at(stock_key, wid)
  local stock = levels[stock_key]
  if not stock then stock = {}; levels[stock_key] = stock end
  local level = stock[wid]
  if level == nil then
    level = tonumber(redis.call('HGET', stock_key, wid))
    if not level or level % 1 ~= 0 then level = false end
    stock[wid] = level
  end
  return level
end

local function stocked_elsewhere(stock_key, qty, candidates)
  local found = {}
  local flat = redis.call('HGETALL', stock_key)
  for j = 1, #flat, 2 do
    local wid = flat[j]
    local level = tonumber(flat[j + 1]) or 0
    if wid ~= LEGACY_VERSION_FIELD and not candidates[wid] and level >= qty then
      found[#found + 1] = wid
    end
  end
  return found
end

local function not_placed(stock_key, qty, ids)
  if redis.call('EXISTS', stock_key) == 0 then return {'unknown_product'} end
  local candidates = {}
  for _, wid in ipairs(ids) do candidates[wid] = true end
  local far = stocked_elsewhere(stock_key, qty, candidates)
  if #far == 0 then return {'out_of_stock'} end
  table.insert(far, 1, 'far')
  return far
end

-- Phase 2: decide and write, in arrival order. An order already recorded under its ID (a resend
-- after a lost reply) is answered what was decided then, and takes nothing: its record is found
-- by the SET NX that would write it, or read when no warehouse is picked or its key answers.
local replies, keys_used, confirmed = {}, {}, {}
for i, o in ipairs(orders) do
  local stock_key, order_key, idem_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local qty, idem, ids, days_of = o[3], o[4], o[8], o[9]

  local seen = idem ~= '' and (keys_used[idem_key] or redis.call('GET', idem_key))
  if seen then
    local recorded = answered_this_order(seen, o[1]) and read_record(order_key)
    replies[i] = recorded and answer_for_record(o[1], recorded) or answer_for_key(seen, o[5])
  else
    local pick = nil
    for j = 1, #ids do
      local level = level_at(stock_key, ids[j])
      if level and level >= qty then pick = j; break end
    end
    if pick then
      local wid, days = ids[pick], days_of[pick]
      local encoded, recorded = write_new_record(order_key, o, wid, days, now_text)
      if recorded then
        replies[i] = answer_for_record(o[1], recorded)
      else
        local left = redis.call('HINCRBY', stock_key, wid, -qty)
        levels[stock_key][wid] = left
        local stored = remember_answer(idem_key, idem_ttl_s, o, wid, days, now_text)
        if stored ~= '' then keys_used[idem_key] = stored end
        confirmed[#confirmed + 1] = confirmed_part(o[1], encoded, left)
        replies[i] = confirmed_reply(wid, days)
      end
    else
      local recorded = read_record(order_key)
      replies[i] = recorded and answer_for_record(o[1], recorded) or not_placed(stock_key, qty, ids)
    end
  end
end

append_confirmed(stream, confirmed)
return replies
