-- Stock levels: one hash per product, a field per warehouse holding its level, and a
-- version field that every change moves (the inventory writer mirrors a product when it moved).
local VERSION_FIELD = '_v'

local function bump_stock_version(stock_key)
  redis.call('HINCRBY', stock_key, VERSION_FIELD, 1)
end

-- Units back in stock at a warehouse (a released hold, a cancelled basket's part): the level,
-- the version, and a `stock.changed` event saying why, for the inventory writer. Returns the
-- new level. The caller checked the level is a whole number.
local function give_back(stream, stock_key, product_id, wid, quantity, reason)
  local level = redis.call('HINCRBY', stock_key, wid, quantity)
  bump_stock_version(stock_key)
  redis.call('XADD', stream, '*', 'type', 'stock.changed', 'product', product_id,
    'warehouse', wid, 'level', level, 'reason', reason)
  return level
end

-- `value` as a whole number Redis can add exactly (HINCRBY), or nil. Scripts check every number
-- they were given or read before their first write: Redis does not roll a script back, so an
-- error after a write would leave half a call applied.
local function whole_number(value)
  local n = tonumber(value)
  if n and n == math.floor(n) and n > -9007199254740992 and n < 9007199254740992 then return n end
  return nil
end

local function bad_argument(message)
  return redis.error_reply('BADARG ' .. message)
end
