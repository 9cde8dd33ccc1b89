#!lua
-- Hold units of one product at one named warehouse (POST /inventory/reserve): decrement, record
-- the hold with its expiry and append a `stock.held` event, atomically. Safe to send twice: the
-- hold ID is the operation ID. The holds of a basket's lines (or of a shipment's re-route) name
-- their owner: the sweeper then asks the owner's decision before it gives their units back
-- (lua/settle_basket_hold.lua).
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash, KEYS[3] the hold hash,
-- KEYS[4] the partition's hold-expiry sorted set (score = expiry in ms), KEYS[5] the operation key
-- ARGV: holdId, productId, warehouseId, quantity, now in ms, ttl in ms, operation TTL s,
--   its owner: a basket's order ID or a re-route's ID ('' for a hold of POST /inventory/reserve)
-- Returns {'ok', level, expiresMs} | {'unknown_product'} | {'out_of_stock', level} (the
-- warehouse's level after the hold, or as it stands)

--- @include "includes/stock"
--- @include "includes/operation"

local stream, stock_key, hold_key, expiries, op_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold_id, product_id, wid = ARGV[1], ARGV[2], ARGV[3]
local quantity, now_ms, ttl_ms = whole_number(ARGV[4]), whole_number(ARGV[5]), whole_number(ARGV[6])
local op_ttl_s, owner_id = whole_number(ARGV[7]), ARGV[8] or ''
if not quantity or quantity < 1 then return bad_argument('quantity') end
if not now_ms or not ttl_ms or ttl_ms < 1 or not op_ttl_s or op_ttl_s < 1 then
  return bad_argument('now or ttl')
end

local replay = replayed_operation(op_key)
if replay then return replay end

if redis.call('EXISTS', stock_key) == 0 then return {'unknown_product'} end
local current = whole_number(redis.call('HGET', stock_key, wid) or '0')
if not current then return bad_argument('stock level of ' .. wid) end
if current < quantity then return {'out_of_stock', current} end

local level = redis.call('HINCRBY', stock_key, wid, -quantity)
local expires_ms = now_ms + ttl_ms
redis.call('HSET', hold_key, 'product', product_id, 'warehouse', wid, 'quantity', quantity,
  'expires_ms', expires_ms)
if owner_id ~= '' then redis.call('HSET', hold_key, 'owner', owner_id) end
redis.call('ZADD', expiries, expires_ms, hold_id)
redis.call('XADD', stream, '*', 'type', 'stock.held', 'hold', hold_id, 'product', product_id,
  'warehouse', wid, 'quantity', quantity, 'level', level)
return remember_operation(op_key, op_ttl_s, {'ok', level, expires_ms})
