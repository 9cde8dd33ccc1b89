#!lua flags=no-writes
-- Read the stock of some products of one partition and where the partition's event stream
-- stands, in one step. Every script that changes a level appends to that stream in the same
-- call, so the stream's last entry ID orders the states read: a later change has a larger one.
-- The inventory writer keeps the newest state in MongoDB by it.
--
-- KEYS[1] the partition's event stream, KEYS[2..] the products' stock hashes
-- Returns {lastEntryId ('0-0' before the stream's first entry), {field, value, ...} per hash}.

local last = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1]; break end
  end
end
local reply = {last}
for i = 2, #KEYS do reply[i] = redis.call('HGETALL', KEYS[i]) end
return reply
