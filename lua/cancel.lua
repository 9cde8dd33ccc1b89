-- Cancel a confirmed order: return its units to the warehouse that held them, mark it cancelled
-- and append an `order.cancelled` event, atomically. Only a confirmed order can be cancelled.
--
-- KEYS[1] the partition's event stream, KEYS[2] the order hash, KEYS[3] the product's stock hash
-- ARGV: orderId, productId (as read before the call; guards against a mismatched stock key), now ms
-- Returns {'ok', warehouseId, quantity, available} | {'not_found'} | {'bad_state', status}

local stream, order_key, stock_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, product_id, now_ms = ARGV[1], ARGV[2], ARGV[3]

local order = redis.call('HMGET', order_key, 'product', 'warehouse', 'quantity', 'status')
if not order[1] or order[1] ~= product_id then return {'not_found'} end
if order[4] ~= 'confirmed' then return {'bad_state', order[4]} end

local wid, qty = order[2], tonumber(order[3])
local available = redis.call('HINCRBY', stock_key, wid, qty)
local version = redis.call('HINCRBY', stock_key, '_v', 1)
redis.call('HSET', order_key, 'status', 'cancelled')
redis.call('XADD', stream, '*', 'type', 'order.cancelled', 'order', order_id, 'product', product_id,
  'warehouse', wid, 'quantity', qty, 'at_ms', now_ms, 'available', available, 'version', version)
return {'ok', wid, qty, available}
