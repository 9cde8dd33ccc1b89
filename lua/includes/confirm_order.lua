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

-- o is the order as the engine sends it: [orderId, quantity, idempotencyKey, fingerprint,
-- recordHead, recordMiddle, recordTail, candidates] (lua/place_orders.lua), its quantity checked;
-- `days` is the picked candidate's delivery days, as digits. The record is the caller's pieces
-- around the warehouse and days, which only this call decides (engine/records.py,
-- new_record_pieces). Writes it unless one exists under its ID: SET NX makes the check that keeps
-- a resend harmless part of the write. Returns the record as written, or nil and the record found
-- (the order was placed by an earlier send: take no stock for it).
local function write_new_record(order_key, o, wid, days)
  local encoded = o[5] .. wid .. o[6] .. days .. o[7]
  if redis.call('SET', order_key, encoded, 'NX') then return encoded, nil end
  return nil, read_record(order_key)
end

-- Stores the confirmation under the order's idempotency key; returns what it stored ('' when
-- the order has no key).
local function remember_answer(idem_key, idem_ttl_s, o, wid, days, now_text)
  if o[3] == '' then return '' end
  local stored = o[1] .. '|' .. wid .. '|' .. days .. '|' .. now_text .. '|' .. o[4]
  redis.call('SET', idem_key, stored, 'EX', idem_ttl_s)
  return stored
end

-- An order's candidates, 'warehouseId days,warehouseId days' nearest first: one match per
-- candidate (string.gmatch), its warehouse ID and its delivery days as digits. Text that does not
-- read so is no candidate, nor are days of five digits or more (27 years: a caller's bug), so
-- nothing in them can stop a call after its first write. IDs follow the API's ID pattern: no
-- space, no comma.
local CANDIDATE = '([^ ,]+) (%d%d?%d?%d?)%f[,%z]'

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
