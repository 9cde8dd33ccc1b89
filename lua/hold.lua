-- Hold units of one product at one named warehouse (POST /inventory/reserve): decrement, record
-- the hold with its expiry and append a `stock.held` event, atomically.
--
-- KEYS[1] the partition's event stream, KEYS[2] the product's stock hash, KEYS[3] the hold hash,
-- KEYS[4] the partition's hold-expiry sorted set (score = expiry in ms)
-- ARGV: holdId, productId, warehouseId, units, now in ms, ttl in ms
-- Returns {'ok', available, expiresMs} | {'unknown_product'} | {'out_of_stock', available}

local stream, stock_key, hold_key, expiries = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hold_id, product_id, wid = ARGV[1], ARGV[2], ARGV[3]
local units, now_ms, ttl_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

if redis.call('EXISTS', stock_key) == 0 then return {'unknown_product'} end
local current = tonumber(redis.call('HGET', stock_key, wid) or '0')
if current < units then return {'out_of_stock', current} end

local available = redis.call('HINCRBY', stock_key, wid, -units)
local version = redis.call('HINCRBY', stock_key, '_v', 1)
local expires_ms = now_ms + ttl_ms
redis.call('HSET', hold_key, 'product', product_id, 'warehouse', wid, 'quantity', units,
  'expires_ms', expires_ms)
redis.call('ZADD', expiries, expires_ms, hold_id)
redis.call('XADD', stream, '*', 'type', 'stock.held', 'hold', hold_id, 'product', product_id,
  'warehouse', wid, 'quantity', units, 'available', available)
return {'ok', available, expires_ms}
