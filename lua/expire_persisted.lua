#!lua flags=allow-oom
-- The orders writer committed these orders' latest events to PostgreSQL: let their records leave
-- Redis, which keeps an order only while it is hot. A record leaves only if it is still at the
-- seq that was persisted (a newer change keeps it until that change is persisted too, and a SET
-- by any script drops the expiry again); an order in a final state leaves after a short linger
-- (resends and copies from PostgreSQL need it, see includes/order_record.lua), any other after
-- the hot window. It runs at maxmemory too (allow-oom): expiring records is how a full Redis
-- frees itself.
--
-- KEYS: the order keys, all of one partition
-- ARGV[1] hot window ms, ARGV[2] final-state linger ms, then the persisted seq of each order
-- Returns how many records got their expiry.

--- @include "includes/order_record"
--- @include "includes/stock"

local FINAL = {delivered = true, cancelled = true, failed = true}
local window_ms, linger_ms = whole_number(ARGV[1]), whole_number(ARGV[2])
if not window_ms or not linger_ms or window_ms < 1 or linger_ms < 1 then
  return bad_argument('window')
end
if #ARGV ~= #KEYS + 2 then return bad_argument('keys') end
for i = 1, #KEYS do
  if not whole_number(ARGV[i + 2]) then return bad_argument('seq of order ' .. i) end
end

local expiring = 0
for i, order_key in ipairs(KEYS) do
  local record = read_record(order_key)
  if record and (tonumber(record[RECORD.seq]) or 0) == whole_number(ARGV[i + 2]) then
    local ttl_ms = FINAL[record[RECORD.status]] and linger_ms or window_ms
    redis.call('PEXPIRE', order_key, ttl_ms)
    expiring = expiring + 1
  end
end
return expiring
