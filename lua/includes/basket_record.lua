-- The basket record (engine/records.py, BasketRecord): a JSON array like the order record, its
-- status and seq where an order record has them (so includes/order_record's read_or_restore and
-- save_record serve both), its shipments each [warehouseId, etaDays, status, items].
local BASKET = {lines = 1, shipments = 2, status = 4, eta_days = 5, seq = 10}
local SHIPMENT = {warehouse = 1, eta_days = 2, status = 3, items = 4}

-- The basket's status: its least advanced shipment's, in `progress` (engine/lifecycle.py's
-- order, the statuses a shipment goes through, as the caller sent it).
local function least_advanced(record, progress)
  local rank = {}
  for i, status in ipairs(progress) do rank[status] = i end
  local least = nil
  for _, shipment in ipairs(record[BASKET.shipments]) do
    local status = shipment[SHIPMENT.status]
    if least == nil or (rank[status] or 0) < (rank[least] or 0) then least = status end
  end
  return least
end
