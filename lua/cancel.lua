-- Cancel a confirmed order: return its units to the warehouse that held them, mark it cancelled
-- and append an `order.cancelled` event, atomically. Only a confirmed order can be cancelled.
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key, KEYS[3] the product's stock hash
-- ARGV: orderId, productId (as read before the call; guards against a mismatched stock key), now ms
-- Returns {'ok', warehouseId, quantity, available} | {'not_found'} | {'bad_state', status}

local stream, order_key, stock_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, product_id, now_ms = ARGV[1], ARGV[2], ARGV[3]

local raw = redis.call('GET', order_key)
if not raw then return {'not_found'} end
-- [product, warehouse, quantity, status, etaDays, createdMs, lat, lon, idempotencyKey]
local record = cjson.decode(raw)
if record[1] ~= product_id then return {'not_found'} end
if record[4] ~= 'confirmed' then return {'bad_state', record[4]} end

local wid, qty = record[2], record[3]
local available = redis.call('HINCRBY', stock_key, wid, qty)
redis.call('HINCRBY', stock_key, '_v', 1)
record[4] = 'cancelled'
local updated = cjson.encode(record)
redis.call('SET', order_key, updated)
redis.call('XADD', stream, '*', 'type', 'order.cancelled', 'order', order_id, 'record', updated,
  'at_ms', now_ms, 'available', available)
return {'ok', wid, qty, available}
