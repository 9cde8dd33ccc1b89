#!lua
-- Cancel a basket none of whose shipments has started (all `confirmed`): every shipment and the
-- basket become `cancelled`, and the units to give back are written down, in the basket's slot,
-- atomically: [[warehouseId, productId, quantity]...] under the returns key, and the basket in the
-- partition's pending returns (score: now). The units themselves live in their products'
-- partitions, where lua/return_basket_units.lua gives each part back once; the worker does that
-- at once, and the sweep again for a basket still pending (its worker died). Appends a
-- `basket.changed` event. Safe to send twice (operation ID).
--
-- KEYS[1] the partition's event stream, KEYS[2] the basket's record key, KEYS[3] the operation
-- key, KEYS[4] the partition's pending returns (sorted set), KEYS[5] this basket's returns key
-- ARGV: orderId, now ms, operation TTL s, the basket's copy from PostgreSQL ('' = none), when it
--   was read (ms)
-- Returns {'ok', record} | {'not_found'} | {'bad_state', status} | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/basket_record"
--- @include "includes/stock"
--- @include "includes/operation"

local stream, record_key, op_key, pending, returns_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local order_id = ARGV[1]
local now_ms, op_ttl_s = whole_number(ARGV[2]), whole_number(ARGV[3])
if not now_ms or not op_ttl_s or op_ttl_s < 1 then return bad_argument('now or ttl') end

local replay = replayed_operation(op_key)
if replay then return replay end

local record, refused = read_or_restore(record_key, ARGV[4], ARGV[5])
if refused then return {refused} end
if not record then return {'not_found'} end
if record[BASKET.status] ~= 'confirmed' then return {'bad_state', record[BASKET.status]} end

local parts = {}
for _, shipment in ipairs(record[BASKET.shipments]) do
  if shipment[SHIPMENT.status] ~= 'confirmed' then return {'bad_state', shipment[SHIPMENT.status]} end
  shipment[SHIPMENT.status] = 'cancelled'
  for _, item in ipairs(shipment[SHIPMENT.items]) do
    parts[#parts + 1] = {shipment[SHIPMENT.warehouse], item[1], item[2]}
  end
end
record[BASKET.status] = 'cancelled'
local encoded = save_record(record_key, record)
redis.call('SET', returns_key, cjson.encode(parts))
redis.call('ZADD', pending, now_ms, order_id)
redis.call('XADD', stream, '*', 'type', 'basket.changed', 'order_id', order_id, 'record', encoded,
  'at_ms', now_ms, 'warehouse', '', 'reason', '')
return remember_operation(op_key, op_ttl_s, {'ok', encoded})
