#!lua flags=allow-oom
-- Decide a basket that its placing worker did not see through (the sweeper found one of its line
-- holds expired): committed if lua/commit_basket.lua got there first, else aborted from now on,
-- so a commit still on its way is refused. Both writers of the decision run in the basket's slot,
-- so exactly one of them wins. It runs at maxmemory too (allow-oom): it lets held units go back.
--
-- KEYS[1] the basket's decision key, KEYS[2] its record key
-- ARGV[1] decision TTL s
-- Returns 'committed' | 'aborted'

--- @include "includes/stock"

local decision_key, record_key = KEYS[1], KEYS[2]
local decision_ttl_s = whole_number(ARGV[1])
if not decision_ttl_s or decision_ttl_s < 1 then return bad_argument('ttl') end

local decided = redis.call('GET', decision_key)
if decided then return decided end
if redis.call('EXISTS', record_key) == 1 then return 'committed' end
redis.call('SET', decision_key, 'aborted', 'EX', decision_ttl_s)
return 'aborted'
