#!lua flags=allow-oom
-- Settle one line hold of a decided basket: `commit` keeps its units sold (the hold is only
-- forgotten), `abort` gives them back to their warehouse with a `stock.changed` event. The hold
-- is gone afterwards either way, so a second settle of it (a resend, the placing worker and the
-- sweeper both) changes nothing. It runs at maxmemory too (allow-oom), like every release.
--
-- KEYS[1] the partition's event stream, KEYS[2] the hold hash, KEYS[3] the partition's
-- hold-expiry sorted set, KEYS[4] the hold's product's stock hash
-- ARGV[1] hold ID, ARGV[2] 'commit' | 'abort', ARGV[3] its owner (a basket's or re-route's ID)
-- Returns {'kept'} | {'returned', level} | {'gone'}

--- @include "includes/stock"

local stream, hold_key, expiries, stock_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hold_id, outcome, owner_id = ARGV[1], ARGV[2], ARGV[3]
if outcome ~= 'commit' and outcome ~= 'abort' then return bad_argument('outcome') end

local h = redis.call('HMGET', hold_key, 'product', 'warehouse', 'quantity', 'owner')
if not h[1] then
  redis.call('ZREM', expiries, hold_id)
  return {'gone'}
end
-- Another owner's hold: not this caller's to settle (its expiry entry stays for the sweeper).
if h[4] ~= owner_id then return {'gone'} end
local quantity = whole_number(h[3])
if not quantity or not whole_number(redis.call('HGET', stock_key, h[2]) or '0') then
  return bad_argument('hold ' .. hold_id)
end
redis.call('DEL', hold_key)
redis.call('ZREM', expiries, hold_id)
if outcome == 'commit' then return {'kept'} end
return {'returned', give_back(stream, stock_key, h[1], h[2], quantity, 'basket released')}
