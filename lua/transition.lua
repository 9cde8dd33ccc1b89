#!lua
-- Move an order to another status (picking, packed, shipped, delivered, failed), atomically:
-- check it is in one of the statuses the target may be reached from (the table lives in
-- engine/lifecycle.py and arrives as ARGV), optionally that it is held at the named warehouse and
-- that its record is still the one the caller saw (its sequence number), rewrite its record and
-- append an `order.status` event. Stock is never touched here: units left stock when the order
-- was placed, and only lua/cancel.lua gives them back. Safe to send twice (operation ID).
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key, KEYS[3] the operation key
-- ARGV: orderId, target status, now ms, reason ('' = none), warehouseId ('' = any),
--   expected sequence number (0 = any), operation TTL s, the order's copy from PostgreSQL
--   ('' = none), when it was read (ms), then the statuses the target may be reached from
-- Returns {'ok', record} | {'not_found'} | {'bad_state', status} | {'wrong_warehouse', warehouseId}
--   | {'moved_on', seq} | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/operation"

local TARGETS = {picking = true, packed = true, shipped = true, delivered = true, failed = true}

local stream, order_key, op_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, target, reason, wid = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local now_ms, expected_seq = whole_number(ARGV[3]), whole_number(ARGV[6])
local op_ttl_s = whole_number(ARGV[7])
if not now_ms or not expected_seq or not op_ttl_s or op_ttl_s < 1 then
  return bad_argument('now, sequence or ttl')
end
if not TARGETS[target] then return bad_argument('target status ' .. tostring(target)) end

local replay = replayed_operation(op_key)
if replay then return replay end

local record, refused = read_or_restore(order_key, ARGV[8], ARGV[9])
if refused then return {refused} end
if not record then return {'not_found'} end
if expected_seq ~= 0 and (tonumber(record[RECORD.seq]) or 0) ~= expected_seq then
  return {'moved_on', record[RECORD.seq] or 0}
end
local allowed = false
for i = 10, #ARGV do
  if record[RECORD.status] == ARGV[i] then allowed = true; break end
end
if not allowed then return {'bad_state', record[RECORD.status]} end
if wid ~= '' and record[RECORD.warehouse] ~= wid then
  return {'wrong_warehouse', record[RECORD.warehouse]}
end

record[RECORD.status] = target
local encoded = save_record(order_key, record)
redis.call('XADD', stream, '*', 'type', 'order.status', 'order_id', order_id, 'record', encoded,
  'at_ms', now_ms, 'reason', reason)
return remember_operation(op_key, op_ttl_s, {'ok', encoded})
