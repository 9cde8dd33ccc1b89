-- Reserve stock for a micro-batch of orders that share one partition (one hash slot).
--
-- For each order, in arrival order: replay the stored answer if its idempotency key was seen,
-- else walk the candidate warehouses (nearest H3 ring first, exact distance inside a ring, as
-- ranked by the caller), take the first with available >= quantity, decrement it, record the
-- order, append an `order.confirmed` event to the partition's stream and remember the key.
-- Everything for one order happens inside this call, so no unit can be sold twice.
--
-- KEYS[1]            the partition's event stream
-- KEYS[2 + 3*(i-1)]  order i: stock hash (field per warehouse -> available units; `_v` version)
-- KEYS[3 + 3*(i-1)]  order i: order key (its record, see engine/records.py)
-- KEYS[4 + 3*(i-1)]  order i: idempotency key (any key of the partition when the order has none)
-- ARGV[1] now in ms, ARGV[2] idempotency TTL in s, ARGV[3] the orders as a JSON array of
--   [orderId, productId, quantity, idempotencyKey ('' = none), fingerprint, lat, lon (as text),
--    [warehouseId...] nearest first, [deliveryDays...] of each]
-- (one JSON argument rather than ~25 per order: decoding it is one C call, and each argument
-- costs both the client and Redis)
--
-- Returns one reply per order:
--   {'ok', orderId, warehouseId, deliveryDays, createdMs, replayed(0|1)}
--   {'far', warehouseId...}  stock only at warehouses that were not candidates
--   {'out_of_stock'} | {'unknown_product'} | {'key_conflict'}

local now_ms = tonumber(ARGV[1])
local idem_ttl_s = tonumber(ARGV[2])
local orders = cjson.decode(ARGV[3])
local stream = KEYS[1]
local replies = {}
local versioned = {}

local function stocked_elsewhere(stock_key, qty, candidates)
  local found = {}
  local flat = redis.call('HGETALL', stock_key)
  for j = 1, #flat, 2 do
    local wid = flat[j]
    if wid ~= '_v' and not candidates[wid] and tonumber(flat[j + 1]) >= qty then
      found[#found + 1] = wid
    end
  end
  return found
end

local function not_reserved(stock_key, qty, ids)
  if redis.call('EXISTS', stock_key) == 0 then return {'unknown_product'} end
  local candidates = {}
  for _, wid in ipairs(ids) do candidates[wid] = true end
  local far = stocked_elsewhere(stock_key, qty, candidates)
  if #far == 0 then return {'out_of_stock'} end
  table.insert(far, 1, 'far')
  return far
end

for i, o in ipairs(orders) do
  local stock_key, order_key, idem_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local order_id, product_id, qty, idem, fingerprint = o[1], o[2], o[3], o[4], o[5]
  local ids, days_of = o[8], o[9]

  local seen = idem ~= '' and redis.call('GET', idem_key)
  if seen then
    -- stored as orderId|warehouseId|deliveryDays|createdMs|fingerprint
    local oid, wid, days, created, fp = string.match(seen, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    replies[i] = fp == fingerprint and {'ok', oid, wid, days, created, 1} or {'key_conflict'}
  else
    -- One HMGET for every candidate; EXISTS only when none can serve (an unknown product).
    local levels = #ids > 0 and redis.call('HMGET', stock_key, unpack(ids)) or {}
    local pick = nil
    for j = 1, #ids do
      if levels[j] and tonumber(levels[j]) >= qty then pick = j; break end
    end
    if pick then
      local wid, days = ids[pick], days_of[pick]
      local left = redis.call('HINCRBY', stock_key, wid, -qty)
      versioned[stock_key] = true
      local record = cjson.encode({product_id, wid, qty, 'confirmed', days, now_ms, o[6], o[7], idem})
      redis.call('SET', order_key, record)
      redis.call('XADD', stream, '*', 'type', 'order.confirmed', 'order', order_id,
        'record', record, 'available', left)
      if idem ~= '' then
        redis.call('SET', idem_key, order_id .. '|' .. wid .. '|' .. days .. '|' .. now_ms .. '|' ..
          fingerprint, 'EX', idem_ttl_s)
      end
      replies[i] = {'ok', order_id, wid, days, now_ms, 0}
    else
      replies[i] = not_reserved(stock_key, qty, ids)
    end
  end
end

-- The stock version moves once per product per call: the inventory writer only needs to know
-- that a product changed, and mirrors its whole current stock.
for stock_key in pairs(versioned) do redis.call('HINCRBY', stock_key, '_v', 1) end
return replies
