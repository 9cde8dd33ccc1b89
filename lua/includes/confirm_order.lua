-- Confirming an order, as every script that places one does it: the idempotency key's stored
-- answer, and the order's record, event and key written once its warehouse is decided. Needs
-- includes/order_record.

-- The stored answer of an idempotency key is `orderId|warehouseId|deliveryDays|createdMs|fingerprint`:
-- the same request gets the confirmation it got then, another request under the key is refused.
local function answer_for_key(seen, fingerprint)
  local oid, wid, days, created, fp = string.match(seen, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if fp ~= fingerprint then return {'key_conflict'} end
  return {'ok', oid, wid, days, created, 1, 0}
end

-- The answer to a resend of an order already recorded under its ID.
local function answer_for_record(order_id, record)
  return {'ok', order_id, record[RECORD.warehouse], record[RECORD.eta_days],
    record[RECORD.created_ms], 0, record[RECORD.seq]}
end

-- o is the order as the engine sends it: [orderId, productId, quantity, idempotencyKey,
-- fingerprint, lat, lon, ...]. Returns the reply and the idempotency key's stored answer ('' when
-- the order has no key).
local function confirm_order(stream, order_key, idem_key, idem_ttl_s, now_ms, o, wid, days, left)
  local order_id, idem = o[1], o[4]
  local record = new_record(o[2], wid, whole_number(o[3]), days, now_ms, o[6], o[7], idem)
  local encoded = save_record(order_key, record)
  redis.call('XADD', stream, '*', 'type', 'order.confirmed', 'order', order_id,
    'record', encoded, 'available', left)
  local stored = ''
  if idem ~= '' then
    stored = order_id .. '|' .. wid .. '|' .. days .. '|' .. now_ms .. '|' .. o[5]
    redis.call('SET', idem_key, stored, 'EX', idem_ttl_s)
  end
  return {'ok', order_id, wid, days, now_ms, 0, record[RECORD.seq]}, stored
end
