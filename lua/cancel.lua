#!lua
-- Cancel a confirmed order: return its units to the warehouse that held them, mark it cancelled
-- and append an `order.cancelled` event, atomically. Only a confirmed order can be cancelled.
-- Safe to send twice: a second run with the same operation ID answers the first one's reply.
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key, KEYS[3] the product's stock hash,
-- KEYS[4] the operation key
-- ARGV: orderId, productId (as read before the call; guards against a mismatched stock key),
--   now ms, operation TTL s, the order's copy from PostgreSQL ('' = none) and when it was read (ms)
-- Returns {'ok', record, level} | {'not_found'} | {'bad_state', status} | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/operation"

local stream, order_key, stock_key, op_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local order_id, product_id = ARGV[1], ARGV[2]
local now_ms, op_ttl_s = whole_number(ARGV[3]), whole_number(ARGV[4])
if not now_ms or not op_ttl_s or op_ttl_s < 1 then return bad_argument('now or ttl') end

local replay = replayed_operation(op_key)
if replay then return replay end

local record, refused = read_or_restore(order_key, ARGV[5] or '', ARGV[6] or '0')
if refused then return {refused} end
if not record or record[RECORD.product] ~= product_id then return {'not_found'} end
if record[RECORD.status] ~= 'confirmed' then return {'bad_state', record[RECORD.status]} end
local wid, qty = record[RECORD.warehouse], whole_number(record[RECORD.quantity])
if not qty or qty < 1 then return bad_argument('quantity in the record') end
if not whole_number(redis.call('HGET', stock_key, wid) or '0') then
  return bad_argument('stock level of ' .. wid)
end

local level = redis.call('HINCRBY', stock_key, wid, qty)
record[RECORD.status] = 'cancelled'
local encoded = save_record(order_key, record)
redis.call('XADD', stream, '*', 'type', 'order.cancelled', 'order_id', order_id, 'record', encoded,
  'at_ms', now_ms, 'level', level)
return remember_operation(op_key, op_ttl_s, {'ok', encoded, level})
