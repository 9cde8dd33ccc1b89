-- Set or adjust the available units of one product at one warehouse (operator restock/adjust),
-- bump the product's stock version and append a `stock.changed` event for the inventory writer.
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash
-- ARGV: productId, warehouseId, mode ('set' | 'adjust'), units, reason
-- Returns {'ok', available, version} or {'negative', available} when an adjustment would go < 0.

local stream, stock_key = KEYS[1], KEYS[2]
local product_id, wid, mode, units, reason = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

local current = tonumber(redis.call('HGET', stock_key, wid) or '0')
local available = units
if mode == 'adjust' then available = current + units end
if available < 0 then return {'negative', current} end

redis.call('HSET', stock_key, wid, available)
local version = redis.call('HINCRBY', stock_key, '_v', 1)
redis.call('XADD', stream, '*', 'type', 'stock.changed', 'product', product_id, 'warehouse', wid,
  'available', available, 'reason', reason)
return {'ok', available, version}
