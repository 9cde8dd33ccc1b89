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

-- The orders of a call as the engine sends them (engine/commands.py, _wire_order): one flat
-- array, ORDER_FIELDS values per order, taken by unpack(wire, at + 1, at + ORDER_FIELDS) as
--   orderId, quantity, idempotencyKey ('' = none), fingerprint, recordHead, recordMiddle,
--   recordTail, candidates
-- Flat, because every table a script makes from its arguments grows one insert at a time.
local ORDER_FIELDS = 8
local ORDER_IDEMPOTENCY_KEY = 3  -- its place among them

-- What is wrong with the order at `at` in `wire`, or nil: checked before a call's first write
-- (Redis does not roll a script back). Its quantity is a whole number of at least 1, every other
-- field is text; its candidates are the engine's to check (includes/candidates.lua).
local function order_problem(wire, at)
  local order_id, qty, idem, fingerprint, head, middle, tail, candidates =
    unpack(wire, at + 1, at + ORDER_FIELDS)
  if type(qty) ~= 'number' or qty < 1 or qty >= WHOLE_LIMIT or qty % 1 ~= 0 then
    return 'quantity'
  end
  if type(order_id) ~= 'string' or type(idem) ~= 'string' or type(fingerprint) ~= 'string'
    or type(head) ~= 'string' or type(middle) ~= 'string' or type(tail) ~= 'string'
    or type(candidates) ~= 'string' then
    return 'fields'
  end
  return nil
end

-- A new order's record is the caller's pieces around the warehouse and its delivery days (as
-- digits), which only this call decides (engine/records.py, new_record_pieces). Writes it unless
-- one exists under its ID: SET NX makes the check that keeps a resend harmless part of the
-- write. Returns the record as written, or nil and the record found (the order was placed by an
-- earlier send: take no stock for it).
local function write_new_record(order_key, head, middle, tail, wid, days)
  local encoded = head .. wid .. middle .. days .. tail
  if redis.call('SET', order_key, encoded, 'NX') then return encoded, nil end
  return nil, read_record(order_key)
end

-- Stores the confirmation under the order's idempotency key (nil when it has none); returns
-- what it stored ('' when none).
local function remember_answer(idem_key, idem_ttl_s, order_id, fingerprint, wid, days, now_text)
  if not idem_key then return '' end
  local stored = order_id .. '|' .. wid .. '|' .. days .. '|' .. now_text .. '|' .. fingerprint
  redis.call('SET', idem_key, stored, 'EX', idem_ttl_s)
  return stored
end

-- Adds one order's part of the call's `orders.confirmed` event, [orderId, record, level], to
-- `parts` as pieces: the event is joined once, in append_confirmed, rather than each part first
-- (Lua hashes every string it makes, byte by byte). The order ID is one this system minted (hex
-- and hyphens), so it is quoted as it is.
local function add_confirmed(parts, order_id, encoded_record, left)
  local n = #parts
  parts[n + 1] = n == 0 and '[["' or ',["'
  parts[n + 2] = order_id
  parts[n + 3] = '",'
  parts[n + 4] = encoded_record
  parts[n + 5] = ','
  parts[n + 6] = whole_text(left)
  parts[n + 7] = ']'
end

-- Appends a call's one event: every order it confirmed, in the order they were decided
-- (engine/events.py, OrdersConfirmed).
local function append_confirmed(stream, parts)
  if #parts > 0 then
    parts[#parts + 1] = ']'
    redis.call('XADD', stream, '*', 'type', 'orders.confirmed', 'orders', table.concat(parts))
  end
end
