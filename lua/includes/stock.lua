-- Stock levels: one hash per product, a field per warehouse holding its level. Every script that
-- changes a level appends an event to the partition's stream in the same call: the count of
-- entries ever added to the stream orders the product's states (lua/read_stock.lua, for the
-- inventory writer).
-- Hashes written before that kept a version counter in this field; it is no warehouse.
local LEGACY_VERSION_FIELD = '_v'

-- Units back in stock at a warehouse (a released hold, a cancelled basket's part): the level and
-- a `stock.changed` event saying why, for the inventory writer. Returns the new level. The
-- caller checked the level is a whole number.
local function give_back(stream, stock_key, product_id, wid, quantity, reason)
  local level = redis.call('HINCRBY', stock_key, wid, quantity)
  redis.call('XADD', stream, '*', 'type', 'stock.changed', 'product', product_id,
    'warehouse', wid, 'level', level, 'reason', reason)
  return level
end

-- Beyond 2^53 a Lua number no longer holds every whole number.
local WHOLE_LIMIT = 9007199254740992

-- `value` as a whole number Redis can add exactly (HINCRBY), or nil. Scripts check every number
-- they were given or read before their first write: Redis does not roll a script back, so an
-- error after a write would leave half a call applied.
local function whole_number(value)
  local n = tonumber(value)
  if n and n == math.floor(n) and n > -WHOLE_LIMIT and n < WHOLE_LIMIT then return n end
  return nil
end

-- A checked whole number as text, by string.format's integer path (a C long: 64 bits on the
-- 64-bit builds this runs on): Lua's own number-to-text (`..`, tostring) prints through
-- '%.14g', the C library's floating-point printer, which costs more and turns 15 digits or more
-- into an exponent.
local function whole_text(n)
  return string.format('%d', n)
end

local function bad_argument(message)
  return redis.error_reply('BADARG ' .. message)
end
