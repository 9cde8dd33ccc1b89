-- The order record (engine/records.py, OrderRecord): one JSON array per order, read and written
-- through these named fields and functions only. Every write moves the record's sequence number,
-- which every order event carries, so a reader can tell which of two events is newer.
local RECORD = {
  product = 1, warehouse = 2, quantity = 3, status = 4, eta_days = 5, created_ms = 6,
  lat = 7, lon = 8, idempotency_key = 9, seq = 10,
}

local function new_record(product, warehouse, quantity, eta_days, created_ms, lat, lon, idem)
  local record = {}
  record[RECORD.product], record[RECORD.warehouse], record[RECORD.quantity] = product, warehouse, quantity
  record[RECORD.status], record[RECORD.eta_days], record[RECORD.created_ms] = 'confirmed', eta_days, created_ms
  record[RECORD.lat], record[RECORD.lon], record[RECORD.idempotency_key] = lat, lon, idem
  record[RECORD.seq] = 0
  return record
end

-- The record at `order_key`, or nil when the order is not (or no longer) in Redis.
local function read_record(order_key)
  local raw = redis.call('GET', order_key)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- Writes the record with its sequence number moved on; returns the JSON text as written.
local function save_record(order_key, record)
  record[RECORD.seq] = (tonumber(record[RECORD.seq]) or 0) + 1
  local encoded = cjson.encode(record)
  redis.call('SET', order_key, encoded)
  return encoded
end
