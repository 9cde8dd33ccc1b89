#!lua flags=allow-oom
-- Release one hold before it expires (DELETE /inventory/reservations/{id}): its units go back to
-- its warehouse, the hold is gone, a `stock.changed` event tells the inventory writer. A hold that
-- an order took, or that was released or expired, is gone: its units never come back twice.
-- Safe to send twice (operation ID). It runs at maxmemory too (allow-oom), like the release of
-- expired holds.
--
-- KEYS[1] the partition's event stream, KEYS[2] the hold hash, KEYS[3] the partition's
-- hold-expiry sorted set, KEYS[4] the hold's product's stock hash, KEYS[5] the operation key
-- ARGV: holdId, productId (as read before the call), operation TTL s
-- Returns {'ok', level} | {'not_found'}

--- @include "includes/stock"
--- @include "includes/operation"

local stream, hold_key, expiries, stock_key, op_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold_id, product_id, op_ttl_s = ARGV[1], ARGV[2], whole_number(ARGV[3])
if not op_ttl_s or op_ttl_s < 1 then return bad_argument('ttl') end

local replay = replayed_operation(op_key)
if replay then return replay end

-- A basket's line hold is its basket's to settle (lua/settle_basket_hold.lua), never a client's.
local h = redis.call('HMGET', hold_key, 'product', 'warehouse', 'quantity', 'owner')
if not h[1] or h[1] ~= product_id or h[4] then return {'not_found'} end
local quantity = whole_number(h[3])
if not quantity or not whole_number(redis.call('HGET', stock_key, h[2]) or '0') then
  return bad_argument('hold ' .. hold_id)
end
local level = give_back(stream, stock_key, h[1], h[2], quantity, 'hold released')
redis.call('DEL', hold_key)
redis.call('ZREM', expiries, hold_id)
return remember_operation(op_key, op_ttl_s, {'ok', level})
