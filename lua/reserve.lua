-- Reserve stock for a micro-batch of orders that share one partition (one hash slot).
--
-- For each order, in arrival order: replay the stored answer if its idempotency key was seen,
-- else walk the candidate warehouses (nearest H3 ring first, exact distance inside a ring, as
-- ranked by the caller), take the first with available >= quantity, decrement it, record the
-- order, append an `order.confirmed` event to the partition's stream and remember the key.
-- Everything for one order happens inside this call, so no unit can be sold twice.
--
-- KEYS[1]            the partition's event stream
-- KEYS[2 + 3*(i-1)]  order i: stock hash (field per warehouse -> available units; `_v` version)
-- KEYS[3 + 3*(i-1)]  order i: order hash
-- KEYS[4 + 3*(i-1)]  order i: idempotency key (any key of the partition when the order has none)
-- ARGV[1] now in ms, ARGV[2] idempotency TTL in s, ARGV[3] number of orders, then per order:
--   orderId, productId, quantity, idempotencyKey ('' = none), fingerprint, lat, lon,
--   candidateCount, then candidateCount pairs of (warehouseId, deliveryDays).
--
-- Returns one reply per order:
--   {'ok', orderId, warehouseId, deliveryDays, createdMs, replayed(0|1)}
--   {'far', warehouseId...}  stock only at warehouses that were not candidates
--   {'out_of_stock'} | {'unknown_product'} | {'key_conflict'}

local now_ms = ARGV[1]
local idem_ttl_s = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local stream = KEYS[1]
local replies = {}
local a = 4

local function stocked_elsewhere(stock_key, qty, candidates)
  local found = {}
  local flat = redis.call('HGETALL', stock_key)
  for j = 1, #flat, 2 do
    local wid = flat[j]
    if wid ~= '_v' and not candidates[wid] and tonumber(flat[j + 1]) >= qty then
      found[#found + 1] = wid
    end
  end
  return found
end

for i = 1, n do
  local stock_key, order_key, idem_key = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local order_id, product_id = ARGV[a], ARGV[a + 1]
  local qty = tonumber(ARGV[a + 2])
  local idem, fingerprint = ARGV[a + 3], ARGV[a + 4]
  local lat, lon = ARGV[a + 5], ARGV[a + 6]
  local ncand = tonumber(ARGV[a + 7])
  local first = a + 8
  a = first + 2 * ncand

  local seen = idem ~= '' and redis.call('GET', idem_key)
  if seen then
    -- stored as orderId|warehouseId|deliveryDays|createdMs|fingerprint
    local oid, wid, days, created, fp = string.match(seen, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if fp == fingerprint then
      replies[i] = {'ok', oid, wid, days, created, 1}
    else
      replies[i] = {'key_conflict'}
    end
  elseif redis.call('EXISTS', stock_key) == 0 then
    replies[i] = {'unknown_product'}
  else
    local ids = {}
    for j = 0, ncand - 1 do ids[j + 1] = ARGV[first + 2 * j] end
    local levels = ncand > 0 and redis.call('HMGET', stock_key, unpack(ids)) or {}
    local pick = nil
    for j = 1, ncand do
      if levels[j] and tonumber(levels[j]) >= qty then pick = j; break end
    end
    if pick then
      local wid, days = ids[pick], ARGV[first + 2 * (pick - 1) + 1]
      local left = redis.call('HINCRBY', stock_key, wid, -qty)
      local version = redis.call('HINCRBY', stock_key, '_v', 1)
      redis.call('HSET', order_key, 'product', product_id, 'warehouse', wid, 'quantity', qty,
        'status', 'confirmed', 'eta_days', days, 'created_ms', now_ms, 'lat', lat, 'lon', lon,
        'idem', idem)
      redis.call('XADD', stream, '*', 'type', 'order.confirmed', 'order', order_id,
        'product', product_id, 'warehouse', wid, 'quantity', qty, 'eta_days', days,
        'created_ms', now_ms, 'lat', lat, 'lon', lon, 'idem', idem,
        'available', left, 'version', version)
      if idem ~= '' then
        redis.call('SET', idem_key, order_id .. '|' .. wid .. '|' .. days .. '|' .. now_ms .. '|' ..
          fingerprint, 'EX', idem_ttl_s)
      end
      replies[i] = {'ok', order_id, wid, days, now_ms, 0}
    else
      local candidates = {}
      for _, wid in ipairs(ids) do candidates[wid] = true end
      local far = stocked_elsewhere(stock_key, qty, candidates)
      if #far > 0 then
        table.insert(far, 1, 'far')
        replies[i] = far
      else
        replies[i] = {'out_of_stock'}
      end
    end
  end
end
return replies
