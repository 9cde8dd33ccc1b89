#!lua flags=no-writes
-- Read the stock of some products of one partition and how far the partition's event stream has
-- come, in one step. Every script that changes a level appends to that stream in the same call,
-- so the count of entries ever added to it orders the states read: a later change has a larger
-- count, whatever the clocks did (entry IDs follow the clock) and whatever was trimmed or deleted
-- since. The inventory writer keeps the newest state in MongoDB by it.
--
-- KEYS[1] the partition's event stream, KEYS[2..] the products' stock hashes
-- Returns {entriesAdded, lastEntryId, {field, value, ...} per hash}; 0 and '0-0' before the
-- stream's first entry.

local added, last = 0, '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then added = info[i + 1]
    elseif info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local reply = {added, last}
for i = 2, #KEYS do reply[i + 1] = redis.call('HGETALL', KEYS[i]) end
return reply
