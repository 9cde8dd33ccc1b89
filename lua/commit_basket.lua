#!lua
-- Commit a basket (POST /orders with `items`): every line is already held in its own partition
-- (lua/hold.lua, naming the basket), and this call, in the basket's own slot, decides. The
-- decision key is where the placing worker and the hold sweeper meet: whichever writes it first
-- decides, so a basket whose holds the sweeper gave up on can no longer be committed, and holds
-- of a committed basket are never given back (lua/resolve_basket.lua, settle_basket_hold.lua).
--
-- On commit, atomically: the record (written once under its ID), the decision `committed`, the
-- idempotency key's stored answer, and one `basket.confirmed` event. A resend of the same basket
-- answers the record it wrote.
--
-- KEYS[1] the partition's event stream, KEYS[2] the basket's record key, KEYS[3] its decision
-- key, KEYS[4] its idempotency key (the record key when none)
-- ARGV[1] order ID, ARGV[2] the record (engine/records.py, BasketRecord) as JSON text,
-- ARGV[3] the idempotency key's answer `orderId|fingerprint` ('' when none), ARGV[4] idempotency
-- TTL s
-- Returns {'ok', record} | {'aborted'} | {'key_conflict'} | {'duplicate', orderId} (another
-- request under the same key and with the same basket was committed first)

--- @include "includes/stock"

local stream, record_key, decision_key, idem_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local order_id, record, answer = ARGV[1], ARGV[2], ARGV[3]
local idem_ttl_s = whole_number(ARGV[4])
if not idem_ttl_s or idem_ttl_s < 1 then return bad_argument('ttl') end

local written = redis.call('GET', record_key)
if written then return {'ok', written} end
if redis.call('GET', decision_key) == 'aborted' then return {'aborted'} end
if answer ~= '' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local other, fingerprint = string.match(seen, '^([^|]*)|(.*)$')
    if fingerprint ~= string.match(answer, '^[^|]*|(.*)$') then return {'key_conflict'} end
    return {'duplicate', other}
  end
  redis.call('SET', idem_key, answer, 'EX', idem_ttl_s)
end

redis.call('SET', record_key, record)
-- No expiry: the worker deletes it once every hold is settled; until then the sweeper needs it.
redis.call('SET', decision_key, 'committed')
redis.call('XADD', stream, '*', 'type', 'basket.confirmed', 'order_id', order_id, 'record', record)
return {'ok', record}
