#!lua flags=allow-oom
-- Give one part of a cancelled basket back to stock (lua/cancel_basket.lua wrote the parts
-- down): add its units at its warehouse, append a `stock.changed` event, and mark the part
-- returned, so the worker and the sweep can both send it and it counts once. The mark outlives
-- by far any sweep that could still send the part (engine/live_baskets.py, RETURNED_MARK_TTL_S).
-- It runs at maxmemory too (allow-oom): units must not stay lost because Redis is full.
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash, KEYS[3] the part's
-- returned mark
-- ARGV: productId, warehouseId, quantity, mark TTL s
-- Returns {'returned', level} | {'done'}

--- @include "includes/stock"

local stream, stock_key, mark_key = KEYS[1], KEYS[2], KEYS[3]
local product_id, wid = ARGV[1], ARGV[2]
local quantity, mark_ttl_s = whole_number(ARGV[3]), whole_number(ARGV[4])
if not quantity or quantity < 1 or not mark_ttl_s or mark_ttl_s < 1 then
  return bad_argument('quantity or ttl')
end
if redis.call('EXISTS', mark_key) == 1 then return {'done'} end
if not whole_number(redis.call('HGET', stock_key, wid) or '0') then
  return bad_argument('stock level of ' .. wid)
end

local level = give_back(stream, stock_key, product_id, wid, quantity, 'basket cancelled')
redis.call('SET', mark_key, '1', 'EX', mark_ttl_s)
return {'returned', level}
