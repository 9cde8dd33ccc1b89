-- Confirming an order, as every script that places one does it: its record written once and only
-- once under its ID, the idempotency key's stored answer, and its part of the call's one
-- `orders.confirmed` event. Needs includes/order_record and includes/stock. `now_text` is the
-- call's now in ms as whole_text made it, once per call.

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

-- Whether the idempotency key's stored answer is this very order's: a resend of an order that
-- was confirmed under its key, not another request repeating the key.
local function answered_this_order(seen, order_id)
  return string.sub(seen, 1, #order_id + 1) == order_id .. '|'
end

-- o is the order as the engine sends it: [orderId, productId, quantity, idempotencyKey,
-- fingerprint, lat, lon, ...], its quantity and `days` checked whole numbers. Writes its record
-- unless one exists under its ID: SET NX makes the check that keeps a resend harmless part of
-- the write. Returns the record as written, or nil and the record found (the order was placed
-- by an earlier send: take no stock for it).
local function write_new_record(order_key, o, wid, days, now_text)
  -- new_record's fields in RECORD's order, spelled out rather than built and encoded: this runs
  -- per order. Product and warehouse IDs are plain ASCII (the API's ID pattern), the quantity
  -- and days are checked numbers, the location is the caller's digits as text: only the
  -- idempotency key, free text, needs JSON's escaping.
  local idem = o[4] == '' and '""' or cjson.encode(o[4])
  local encoded = '["' .. o[2] .. '","' .. wid .. '",' .. whole_text(o[3]) .. ',"confirmed",'
    .. whole_text(days) .. ',' .. now_text .. ',"' .. o[6] .. '","' .. o[7] .. '",' .. idem .. ',1]'
  if redis.call('SET', order_key, encoded, 'NX') then return encoded, nil end
  return nil, read_record(order_key)
end

-- Stores the confirmation under the order's idempotency key; returns what it stored ('' when
-- the order has no key).
local function remember_answer(idem_key, idem_ttl_s, o, wid, days, now_text)
  if o[4] == '' then return '' end
  local stored = o[1] .. '|' .. wid .. '|' .. whole_text(days) .. '|' .. now_text .. '|' .. o[5]
  redis.call('SET', idem_key, stored, 'EX', idem_ttl_s)
  return stored
end

-- A new confirmation's answer, `placed|warehouseId|deliveryDays`: its order ID, time (the call's
-- now) and seq (1) are the caller's already, so only what was decided travels back.
local function confirmed_reply(wid, days)
  return 'placed|' .. wid .. '|' .. whole_text(days)
end

-- One order's part of the `orders.confirmed` event: [orderId, record, level]. The order ID
-- is one this system minted (hex and hyphens), so it is quoted as it is.
local function confirmed_part(order_id, encoded_record, left)
  return '["' .. order_id .. '",' .. encoded_record .. ',' .. whole_text(left) .. ']'
end

-- Appends a call's one event: every order it confirmed, in the order they were decided
-- (engine/events.py, OrdersConfirmed).
local function append_confirmed(stream, parts)
  if #parts > 0 then
    redis.call('XADD', stream, '*', 'type', 'orders.confirmed',
      'orders', '[' .. table.concat(parts, ',') .. ']')
  end
end
