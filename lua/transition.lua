-- Move an order to another status (picking, packed, shipped, delivered, failed), atomically:
-- check it is in one of the statuses the target may be reached from (the table lives in
-- engine/lifecycle.py and arrives as ARGV), optionally that it is held at the named warehouse,
-- rewrite its record and append an `order.status` event. Stock is never touched here: units left
-- stock at reservation, and only lua/cancel.lua gives them back.
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key
-- ARGV: orderId, target status, now ms, reason ('' = none), warehouseId ('' = any),
--   then the statuses the target may be reached from
-- Returns {'ok', record} | {'not_found'} | {'bad_state', status} | {'wrong_warehouse', warehouseId}

local stream, order_key = KEYS[1], KEYS[2]
local order_id, target, now_ms, reason, wid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local raw = redis.call('GET', order_key)
if not raw then return {'not_found'} end
-- [product, warehouse, quantity, status, etaDays, createdMs, lat, lon, idempotencyKey]
local record = cjson.decode(raw)
local allowed = false
for i = 6, #ARGV do
  if record[4] == ARGV[i] then allowed = true; break end
end
if not allowed then return {'bad_state', record[4]} end
if wid ~= '' and record[2] ~= wid then return {'wrong_warehouse', record[2]} end

record[4] = target
local updated = cjson.encode(record)
redis.call('SET', order_key, updated)
redis.call('XADD', stream, '*', 'type', 'order.status', 'order', order_id, 'record', updated,
  'at_ms', now_ms, 'reason', reason)
return {'ok', updated}
