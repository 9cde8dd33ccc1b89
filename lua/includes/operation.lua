-- Operation IDs: a command that may be sent twice (a resend after a lost reply) carries an ID
-- minted by its caller. Its first successful run stores the reply under the operation key; a
-- second run finds it and answers the same without changing anything. Refusals are not stored:
-- they changed nothing, so deciding them again is safe.
local function replayed_operation(op_key)
  local raw = redis.call('GET', op_key)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function remember_operation(op_key, ttl_s, reply)
  redis.call('SET', op_key, cjson.encode(reply), 'EX', ttl_s)
  return reply
end
