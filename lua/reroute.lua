#!lua
-- Re-route an order its warehouse cannot fulfil (units damaged or missing): take the same
-- quantity at the first other warehouse, in the caller's ranking, that has it, and move the
-- order there, atomically. The reporting warehouse's units are not given back: they are the ones
-- found missing. The order starts over at the new warehouse as `confirmed`. Safe to send twice
-- (operation ID).
--
-- KEYS[1] the partition's event stream, KEYS[2] the order key, KEYS[3] the product's stock hash,
-- KEYS[4] the operation key
-- ARGV: orderId, productId (as read before the call), reporting warehouseId, now ms, reason,
--   the candidates (includes/candidates.lua), operation TTL s,
--   the order's copy from PostgreSQL ('' = none), when it was read (ms)
-- Returns {'ok', record, level} | {'not_found'} | {'bad_state', status} |
--   {'wrong_warehouse', warehouseId} | {'out_of_stock'} | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/candidates"
--- @include "includes/operation"

local stream, order_key, stock_key, op_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local order_id, product_id, from_wid, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local now_ms, op_ttl_s = whole_number(ARGV[4]), whole_number(ARGV[7])
if not now_ms or not op_ttl_s or op_ttl_s < 1 then return bad_argument('now or ttl') end
local ids, days_of = {}, {}
for wid, days in string.gmatch(ARGV[6], CANDIDATE) do
  local n = #ids + 1
  ids[n], days_of[n] = wid, tonumber(days)
end

local replay = replayed_operation(op_key)
if replay then return replay end

local record, refused = read_or_restore(order_key, ARGV[8], ARGV[9])
if refused then return {refused} end
if not record or record[RECORD.product] ~= product_id then return {'not_found'} end
-- Before packing only: once packed, the units were found.
local status = record[RECORD.status]
if status ~= 'confirmed' and status ~= 'picking' then return {'bad_state', status} end
if record[RECORD.warehouse] ~= from_wid then return {'wrong_warehouse', record[RECORD.warehouse]} end
local qty = whole_number(record[RECORD.quantity])
if not qty or qty < 1 then return bad_argument('quantity in the record') end

local levels = #ids > 0 and redis.call('HMGET', stock_key, unpack(ids)) or {}
for j = 1, #ids do
  if levels[j] and not whole_number(levels[j]) then return bad_argument('stock level of ' .. ids[j]) end
end
for j = 1, #ids do
  if ids[j] ~= from_wid and levels[j] and whole_number(levels[j]) >= qty then
    local level = redis.call('HINCRBY', stock_key, ids[j], -qty)
    record[RECORD.warehouse], record[RECORD.status], record[RECORD.eta_days] = ids[j], 'confirmed', days_of[j]
    local encoded = save_record(order_key, record)
    redis.call('XADD', stream, '*', 'type', 'order.rerouted', 'order_id', order_id,
      'record', encoded, 'from_warehouse', from_wid, 'at_ms', now_ms, 'reason', reason,
      'level', level)
    return remember_operation(op_key, op_ttl_s, {'ok', encoded, level})
  end
end
return {'out_of_stock'}
