-- The order record (engine/records.py, OrderRecord): one JSON array per order, read and rewritten
-- through these named fields and functions; a new one is written from the caller's pieces
-- (includes/confirm_order.lua, write_new_record). Every write moves the record's sequence number,
-- which every order event carries, so a reader can tell which of two events is newer.
local RECORD = {
  product = 1, warehouse = 2, quantity = 3, status = 4, eta_days = 5, created_ms = 6,
  lat = 7, lon = 8, idempotency_key = 9, seq = 10,
}

-- The record at `order_key`, or nil when the order is not (or no longer) in Redis.
local function read_record(order_key)
  local raw = redis.call('GET', order_key)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- An order whose hot window passed lives in PostgreSQL only. A command on it carries the copy its
-- caller read from there (the same JSON array) and when it read it: the copy stands in for the
-- record when the key is gone, and is written back by the change. Redis lets a record go only
-- once PostgreSQL holds its latest seq (lua/expire_persisted.lua) and keeps every record at least
-- ORDER_FINAL_LINGER_S (6 x COPY_MAX_AGE_MS) after that, so a copy this fresh cannot predate a newer record that came
-- and went meanwhile. Returns the record (or nil), or nil and 'stale_copy'.
local COPY_MAX_AGE_MS = 10000

local function read_or_restore(order_key, copy, copy_read_ms)
  local record = read_record(order_key)
  if record or copy == '' then return record, nil end
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  if now_ms - tonumber(copy_read_ms) > COPY_MAX_AGE_MS then return nil, 'stale_copy' end
  return cjson.decode(copy), nil
end

-- Writes the record with its sequence number moved on; returns the JSON text as written. A plain
-- SET drops any expiry: a changed record stays until the writer has persisted this seq.
local function save_record(order_key, record)
  record[RECORD.seq] = (tonumber(record[RECORD.seq]) or 0) + 1
  local encoded = cjson.encode(record)
  redis.call('SET', order_key, encoded)
  return encoded
end
