-- Re-route an order its warehouse cannot fulfil (units damaged or missing): reserve the same
-- quantity at the first other warehouse, in the caller's ranking, that has it, and move the
-- order there, atomically. The reporting warehouse's units are not given back: they are the ones
-- found missing. The order starts over at the new warehouse as `confirmed`.
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key, KEYS[3] the product's stock hash
-- ARGV: orderId, productId (as read before the call), reporting warehouseId, now ms, reason,
--   then a JSON array [[warehouseId...] nearest first, [deliveryDays...] of each]
-- Returns {'ok', record, available} | {'not_found'} | {'bad_state', status} |
--   {'wrong_warehouse', warehouseId} | {'out_of_stock'}

local stream, order_key, stock_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, product_id, from_wid, now_ms, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local candidates = cjson.decode(ARGV[6])
local ids, days_of = candidates[1], candidates[2]

local raw = redis.call('GET', order_key)
if not raw then return {'not_found'} end
-- [product, warehouse, quantity, status, etaDays, createdMs, lat, lon, idempotencyKey]
local record = cjson.decode(raw)
if record[1] ~= product_id then return {'not_found'} end
-- Before packing only: once packed, the units were found.
if record[4] ~= 'confirmed' and record[4] ~= 'picking' then return {'bad_state', record[4]} end
if record[2] ~= from_wid then return {'wrong_warehouse', record[2]} end

local qty = record[3]
local levels = #ids > 0 and redis.call('HMGET', stock_key, unpack(ids)) or {}
for j = 1, #ids do
  if ids[j] ~= from_wid and levels[j] and tonumber(levels[j]) >= qty then
    local available = redis.call('HINCRBY', stock_key, ids[j], -qty)
    redis.call('HINCRBY', stock_key, '_v', 1)
    record[2], record[4], record[5] = ids[j], 'confirmed', days_of[j]
    local updated = cjson.encode(record)
    redis.call('SET', order_key, updated)
    redis.call('XADD', stream, '*', 'type', 'order.rerouted', 'order', order_id, 'record', updated,
      'from_warehouse', from_wid, 'at_ms', now_ms, 'reason', reason, 'available', available)
    return {'ok', updated, available}
  end
end
return {'out_of_stock'}
