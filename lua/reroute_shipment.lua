#!lua
-- Re-route one shipment of a basket its warehouse cannot fulfil (units damaged or missing): its
-- lines, already held elsewhere (lua/hold.lua, each hold naming this re-route's ID), become
-- shipments of those warehouses — merged into a shipment of the basket that has not started
-- there, or new — and the shipment leaves the basket, atomically, in the basket's slot. The
-- reporting warehouse's units are not given back: they are the ones found missing. The re-route's
-- decision key is written `committed` in the same step, so the sweeper keeps its holds sold; a
-- re-route the sweeper aborted first (its holds had expired) is refused. A resend answers the
-- record as it is now.
--
-- KEYS[1] the partition's event stream, KEYS[2] the basket's record key, KEYS[3] the re-route's
-- decision key
-- ARGV: orderId, reporting warehouseId, now ms, reason, the new shipments as JSON
--   [[warehouseId, etaDays, [[productId, quantity]...]]...], the record's seq the plan was made
--   from, the lifecycle's statuses in order (JSON array), the basket's copy from PostgreSQL
--   ('' = none), when it was read (ms)
-- Returns {'ok', record} | {'not_found'} | {'bad_state', status} | {'wrong_warehouse', warehouseId}
--   | {'moved_on', seq} | {'aborted'} | {'stale_copy'}

--- @include "includes/order_record"
--- @include "includes/basket_record"
--- @include "includes/stock"

local stream, record_key, decision_key = KEYS[1], KEYS[2], KEYS[3]
local order_id, from_wid, reason = ARGV[1], ARGV[2], ARGV[4]
local now_ms, planned_seq = whole_number(ARGV[3]), whole_number(ARGV[6])
local moved_to, progress = cjson.decode(ARGV[5]), cjson.decode(ARGV[7])
if not now_ms or not planned_seq then return bad_argument('now or seq') end
if type(moved_to) ~= 'table' or #moved_to == 0 or type(progress) ~= 'table' then
  return bad_argument('shipments or progress')
end

local decided = redis.call('GET', decision_key)
if decided == 'aborted' then return {'aborted'} end
local record, refused = read_or_restore(record_key, ARGV[8], ARGV[9])
if refused then return {refused} end
if not record then return {'not_found'} end
if decided == 'committed' then return {'ok', cjson.encode(record)} end
if (tonumber(record[BASKET.seq]) or 0) ~= planned_seq then return {'moved_on', record[BASKET.seq]} end

local kept, from = {}, nil
for _, shipment in ipairs(record[BASKET.shipments]) do
  if shipment[SHIPMENT.warehouse] == from_wid then from = shipment else kept[#kept + 1] = shipment end
end
if not from then return {'wrong_warehouse', from_wid} end
-- Before packing only: once packed, the units were found.
local status = from[SHIPMENT.status]
if status ~= 'confirmed' and status ~= 'picking' then return {'bad_state', status} end

for _, new in ipairs(moved_to) do
  local into = nil
  for _, shipment in ipairs(kept) do
    if shipment[SHIPMENT.warehouse] == new[1] then into = shipment end
  end
  if into and into[SHIPMENT.status] ~= 'confirmed' then return {'moved_on', record[BASKET.seq]} end
  if into then
    for _, item in ipairs(new[3]) do
      local merged = false
      for _, have in ipairs(into[SHIPMENT.items]) do
        if have[1] == item[1] then have[2] = have[2] + item[2]; merged = true end
      end
      if not merged then into[SHIPMENT.items][#into[SHIPMENT.items] + 1] = item end
    end
    if new[2] > into[SHIPMENT.eta_days] then into[SHIPMENT.eta_days] = new[2] end
  else
    kept[#kept + 1] = {new[1], new[2], 'confirmed', new[3]}
  end
end

record[BASKET.shipments] = kept
record[BASKET.status] = least_advanced(record, progress)
local latest = 0
for _, shipment in ipairs(kept) do
  if shipment[SHIPMENT.eta_days] > latest then latest = shipment[SHIPMENT.eta_days] end
end
record[BASKET.eta_days] = latest
local encoded = save_record(record_key, record)
-- No expiry: a re-route has no record to fall back on, so its decision stays until the worker
-- settled every hold and deletes it.
redis.call('SET', decision_key, 'committed')
redis.call('XADD', stream, '*', 'type', 'basket.changed', 'order_id', order_id, 'record', encoded,
  'at_ms', now_ms, 'warehouse', from_wid, 'reason', reason)
return {'ok', encoded}
