#!lua
-- Move a basket's shipments one lifecycle step (picking, packed, shipped, delivered), atomically:
-- the shipment of the named warehouse, or every shipment that may take the step when none is
-- named (the carrier's callback). The basket's own status becomes its least advanced shipment's,
-- so it is shipped when every shipment is. Rewrites the record and appends a `basket.changed`
-- event per shipment moved. Stock is never touched: the units left it when the basket was
-- placed. Safe to send twice (operation ID).
--
-- KEYS[1] the partition's event stream, KEYS[2] the basket's record key, KEYS[3] the operation key
-- ARGV: orderId, target status, now ms, reason ('' = none), warehouseId ('' = every shipment
--   that may move), operation TTL s, the basket's copy from PostgreSQL ('' = none), when it was
--   read (ms), the lifecycle's statuses in order (JSON array), then the statuses the target may
--   be reached from
-- Returns {'ok', record} | {'not_found'} | {'bad_state', status} | {'wrong_warehouse', warehouseId}
--   | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/basket_record"
--- @include "includes/stock"
--- @include "includes/operation"

local TARGETS = {picking = true, packed = true, shipped = true, delivered = true}

local stream, record_key, op_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, target, reason, wid = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local now_ms, op_ttl_s = whole_number(ARGV[3]), whole_number(ARGV[6])
local progress = cjson.decode(ARGV[9])
if not now_ms or not op_ttl_s or op_ttl_s < 1 then return bad_argument('now or ttl') end
if not TARGETS[target] then return bad_argument('target status ' .. tostring(target)) end
if type(progress) ~= 'table' then return bad_argument('progress') end

local replay = replayed_operation(op_key)
if replay then return replay end

local record, refused = read_or_restore(record_key, ARGV[7], ARGV[8])
if refused then return {refused} end
if not record then return {'not_found'} end
local allowed = {}
for i = 10, #ARGV do allowed[ARGV[i]] = true end

local named, moved = false, {}
for _, shipment in ipairs(record[BASKET.shipments]) do
  if wid == '' or shipment[SHIPMENT.warehouse] == wid then
    named = true
    if allowed[shipment[SHIPMENT.status]] then
      shipment[SHIPMENT.status] = target
      moved[#moved + 1] = shipment[SHIPMENT.warehouse]
    elseif wid ~= '' then
      return {'bad_state', shipment[SHIPMENT.status]}
    end
  end
end
if not named then return {'wrong_warehouse', wid} end
if #moved == 0 then return {'bad_state', record[BASKET.status]} end

record[BASKET.status] = least_advanced(record, progress)
local encoded = save_record(record_key, record)
-- One event per shipment that moved, each naming it: its history row and its notice say which.
for _, moved_wid in ipairs(moved) do
  redis.call('XADD', stream, '*', 'type', 'basket.changed', 'order_id', order_id,
    'record', encoded, 'at_ms', now_ms, 'warehouse', moved_wid, 'reason', reason)
end
return remember_operation(op_key, op_ttl_s, {'ok', encoded})
