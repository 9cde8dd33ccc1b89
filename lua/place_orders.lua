#!lua
-- Place a micro-batch of orders that share one partition (one hash slot).
--
-- For each order, in arrival order: if its order ID is already recorded (a resend after a lost
-- reply), answer what was decided then; if its idempotency key was seen, answer the stored
-- confirmation; else walk the candidate warehouses (nearest H3 ring first, exact distance inside a
-- ring, as ranked by the caller), take the first whose level >= quantity, decrement it, record
-- the order and remember the key. Everything for one order happens inside this call, so no unit
-- can be sold twice. The call appends one `orders.confirmed` event with every order it confirmed.
--
-- The whole call is checked before its first write, so no argument can leave part of a batch
-- applied; a stock level that is not a whole number counts as no stock at that warehouse.
--
-- KEYS[1]              the partition's event stream
-- KEYS[2i], KEYS[2i+1] order i: stock hash (field per warehouse -> its level), order key (its
--                      record, includes/order_record.lua)
-- then the idempotency key of each order that has one, in the orders' order
-- ARGV[1] now in ms, ARGV[2] idempotency TTL in s, ARGV[3] the orders as one flat MessagePack
--   array, per order: orderId, quantity, idempotencyKey ('' = none), fingerprint, recordHead,
--   recordMiddle, recordTail, candidates (includes/confirm_order.lua, ORDER_FIELDS). A record is
--   recordHead .. warehouseId .. recordMiddle .. deliveryDays .. recordTail; candidates are
--   'warehouseId days,warehouseId days' nearest first. MessagePack, text and one flat array, not
--   JSON arrays: every value and table made from the arguments costs the script (README, "Where
--   the engine's time goes, counted").
--
-- Returns one reply per order:
--   j (a number)             placed by this call at its j-th candidate (created now, seq 1)
--   {'ok', orderId, warehouseId, deliveryDays, createdMs, replayed (1 = idempotency key), seq}
--                            placed before: a resend, or a retry under its key
--   {'far', warehouseId...}  stock only at warehouses that were not candidates
--   {'out_of_stock'} | {'unknown_product'} | {'key_conflict'}
-- or the error `BADARG ...` with nothing written.

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/candidates"
--- @include "includes/confirm_order"

local now_ms, idem_ttl_s = whole_number(ARGV[1]), whole_number(ARGV[2])
local wire = cmsgpack.unpack(ARGV[3])
local stream = KEYS[1]
if not now_ms or not idem_ttl_s or idem_ttl_s < 1 then return bad_argument('now or ttl') end
if type(wire) ~= 'table' or #wire % ORDER_FIELDS ~= 0 then return bad_argument('orders') end
local count = #wire / ORDER_FIELDS
local now_text = whole_text(now_ms)

-- Phase 1: check every order before the first write. Not its candidates: the engine checks each
-- before sending it, and text that did not read would be no candidate, not an error
-- (includes/candidates.lua).
local keyed = 0
for i = 1, count do
  local at = (i - 1) * ORDER_FIELDS
  local problem = order_problem(wire, at)
  if problem then return bad_argument(problem .. ' of order ' .. i) end
  if wire[at + ORDER_IDEMPOTENCY_KEY] ~= '' then keyed = keyed + 1 end
end
if #KEYS ~= 1 + 2 * count + keyed then return bad_argument('keys') end

-- The level at a warehouse, read once per call and then kept as this call changes it; false
-- when it does not read as a whole number, which counts as no stock there (HINCRBY would refuse
-- it). Read when an order reaches that candidate, not before: most orders stop at their first.
local levels = {}
local function level_at(stock_key, wid)
  local stock = levels[stock_key]
  if not stock then stock = {}; levels[stock_key] = stock end
  local level = stock[wid]
  if level == nil then
    level = tonumber(redis.call('HGET', stock_key, wid))
    if not level or level % 1 ~= 0 then level = false end
    stock[wid] = level
  end
  return level
end

local function stocked_elsewhere(stock_key, qty, candidates)
  local found = {}
  local flat = redis.call('HGETALL', stock_key)
  for j = 1, #flat, 2 do
    local wid = flat[j]
    local level = tonumber(flat[j + 1]) or 0
    if wid ~= LEGACY_VERSION_FIELD and not candidates[wid] and level >= qty then
      found[#found + 1] = wid
    end
  end
  return found
end

local function not_placed(stock_key, qty, candidates_text)
  if redis.call('EXISTS', stock_key) == 0 then return {'unknown_product'} end
  local candidates = {}
  for wid in string.gmatch(candidates_text, CANDIDATE) do candidates[wid] = true end
  local far = stocked_elsewhere(stock_key, qty, candidates)
  if #far == 0 then return {'out_of_stock'} end
  table.insert(far, 1, 'far')
  return far
end

-- Phase 2: decide and write, in arrival order. An order already recorded under its ID (a resend
-- after a lost reply) is answered what was decided then, and takes nothing: its record is found
-- by the SET NX that would write it, or read when no warehouse is picked or its key answers.
local replies, keys_used, confirmed = {}, {}, {}
local idem_at = 1 + 2 * count
for i = 1, count do
  local at = (i - 1) * ORDER_FIELDS
  local order_id, qty, idem, fingerprint, head, middle, tail, candidates =
    unpack(wire, at + 1, at + ORDER_FIELDS)
  local stock_key, order_key, idem_key = KEYS[2 * i], KEYS[2 * i + 1], nil
  if idem ~= '' then idem_at = idem_at + 1; idem_key = KEYS[idem_at] end

  local seen = idem_key and (keys_used[idem_key] or redis.call('GET', idem_key))
  if seen then
    local recorded = answered_this_order(seen, order_id) and read_record(order_key)
    replies[i] = recorded and answer_for_record(order_id, recorded) or answer_for_key(seen, fingerprint)
  else
    local pick, wid, days = nil, nil, nil
    local j = 0
    for candidate, candidate_days in string.gmatch(candidates, CANDIDATE) do
      j = j + 1
      local level = level_at(stock_key, candidate)
      if level and level >= qty then pick, wid, days = j, candidate, candidate_days; break end
    end
    if pick then
      local encoded, recorded = write_new_record(order_key, head, middle, tail, wid, days)
      if recorded then
        replies[i] = answer_for_record(order_id, recorded)
      else
        local left = redis.call('HINCRBY', stock_key, wid, -qty)
        levels[stock_key][wid] = left
        local stored =
          remember_answer(idem_key, idem_ttl_s, order_id, fingerprint, wid, days, now_text)
        if stored ~= '' then keys_used[idem_key] = stored end
        add_confirmed(confirmed, order_id, encoded, left)
        replies[i] = pick
      end
    else
      local recorded = read_record(order_key)
      replies[i] = recorded and answer_for_record(order_id, recorded)
        or not_placed(stock_key, qty, candidates)
    end
  end
end

append_confirmed(stream, confirmed)
return replies
