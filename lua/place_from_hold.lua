#!lua
-- Place an order from a hold (POST /orders with a reservationId; POST /inventory/reserve made the
-- hold): the order takes its units from the hold, at the hold's warehouse, instead of from stock;
-- what the hold has beyond the order's quantity goes back to stock, and the hold is gone, all in
-- one step. A resend of the same order ID answers what was decided then; the idempotency key
-- works as for any order.
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash, KEYS[3] the order key,
-- KEYS[4] the idempotency key (the order key when none), KEYS[5] the hold hash,
-- KEYS[6] the partition's hold-expiry sorted set
-- ARGV[1] now ms, ARGV[2] idempotency TTL s, ARGV[3] the order as lua/place_orders.lua takes one
--   (MessagePack; its one candidate is the hold's warehouse), ARGV[4] the hold ID,
--   ARGV[5] the order's product ID
-- Returns 1 (placed at its one candidate, as lua/place_orders.lua answers) |
--   {'ok', orderId, warehouseId, deliveryDays, createdMs, replayed, seq} | {'key_conflict'}
--   | {'hold_unavailable', why} (why: gone, expired, other_product, other_warehouse, too_few)

--- @include "includes/order_record"
--- @include "includes/stock"
--- @include "includes/candidates"
--- @include "includes/confirm_order"

local stream, stock_key, order_key, idem_key, hold_key, expiries =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now_ms, idem_ttl_s = whole_number(ARGV[1]), whole_number(ARGV[2])
local wire, hold_id, product = cmsgpack.unpack(ARGV[3]), ARGV[4], ARGV[5]
if not now_ms or not idem_ttl_s or idem_ttl_s < 1 then return bad_argument('now or ttl') end
if type(wire) ~= 'table' or #wire ~= ORDER_FIELDS then return bad_argument('order') end
local problem = order_problem(wire, 0)
if problem then return bad_argument(problem .. ' of the order') end
local order_id, qty, idem, fingerprint, head, middle, tail, candidates = unpack(wire)
local wid, days = string.match(candidates, '^' .. CANDIDATE .. '$')
if not wid then return bad_argument('the hold warehouse and its delivery days') end
if idem == '' then idem_key = nil end

local placed = read_record(order_key)
if placed then return answer_for_record(order_id, placed) end
local seen = idem_key and redis.call('GET', idem_key)
if seen then return answer_for_key(seen, fingerprint) end

-- A basket's line hold is its basket's (lua/settle_basket_hold.lua), never an order's to take.
local h = redis.call('HMGET', hold_key, 'product', 'warehouse', 'quantity', 'expires_ms', 'owner')
if not h[1] or h[5] then return {'hold_unavailable', 'gone'} end
if (tonumber(h[4]) or 0) <= now_ms then return {'hold_unavailable', 'expired'} end
if h[1] ~= product then return {'hold_unavailable', 'other_product'} end
if h[2] ~= wid then return {'hold_unavailable', 'other_warehouse'} end
local held = whole_number(h[3])
if not held then return bad_argument('hold quantity') end
if held < qty then return {'hold_unavailable', 'too_few'} end
local level = whole_number(redis.call('HGET', stock_key, wid) or '0')
if not level then return bad_argument('stock level of ' .. wid) end

local left = level
if held > qty then left = redis.call('HINCRBY', stock_key, wid, held - qty) end
redis.call('DEL', hold_key)
redis.call('ZREM', expiries, hold_id)
-- The order ID was read above, in this same call: the record is new.
local now_text = whole_text(now_ms)
local encoded = write_new_record(order_key, head, middle, tail, wid, days)
remember_answer(idem_key, idem_ttl_s, order_id, fingerprint, wid, days, now_text)
local confirmed = {}
add_confirmed(confirmed, order_id, encoded, left)
append_confirmed(stream, confirmed)
return 1
