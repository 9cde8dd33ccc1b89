-- The warehouses a script may take an order's units at, as every caller sends them (engine/
-- commands.py, candidates_text): one text, 'warehouseId days,warehouseId days', nearest first.
-- One match of CANDIDATE per candidate (string.gmatch): its warehouse ID and its delivery days
-- as digits (at most four: 27 years). IDs follow the API's ID pattern: no space, no comma. The
-- caller checks each candidate once and sends only candidates that read so.
-- Placing reads the text only as far as the candidate it takes, and answers a placed order by
-- its candidate's number, counted over the matches: text that did not read would be no
-- candidate, rather than an error after a call's first write.
local CANDIDATE = '([^ ,]+) (%d%d?%d?%d?)%f[,%z]'
