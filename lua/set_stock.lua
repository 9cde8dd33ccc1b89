#!lua
-- Set or adjust the level of one product at one warehouse (operator restock/adjust),
-- and append a `stock.changed` event for the inventory writer.
-- Safe to send twice: a second run with the same operation ID answers the first one's reply (an
-- adjustment applied twice would create or destroy units).
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash, KEYS[3] the operation key
-- ARGV: productId, warehouseId, mode ('set' | 'adjust'), amount (the new level to set, the delta
--   to adjust by), reason, operation TTL s
-- Returns {'ok', level} or {'negative', level} when an adjustment would go < 0.

--- @include "includes/stock"
--- @include "includes/operation"

local stream, stock_key, op_key = KEYS[1], KEYS[2], KEYS[3]
local product_id, wid, mode, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local amount, op_ttl_s = whole_number(ARGV[4]), whole_number(ARGV[6])
if mode ~= 'set' and mode ~= 'adjust' then return bad_argument('mode') end
if not amount or (mode == 'set' and amount < 0) then return bad_argument('amount') end
if wid == LEGACY_VERSION_FIELD or wid == '' then return bad_argument('warehouse') end
if not op_ttl_s or op_ttl_s < 1 then return bad_argument('ttl') end

local replay = replayed_operation(op_key)
if replay then return replay end

local current = whole_number(redis.call('HGET', stock_key, wid) or '0')
if not current then return bad_argument('stock level of ' .. wid) end
local level = amount
if mode == 'adjust' then level = current + amount end
if level < 0 then return {'negative', current} end

redis.call('HSET', stock_key, wid, level)
redis.call('XADD', stream, '*', 'type', 'stock.changed', 'product', product_id, 'warehouse', wid,
  'level', level, 'reason', reason)
return remember_operation(op_key, op_ttl_s, {'ok', level})
