-- Orders and their status history: PostgreSQL is the system of record for orders.
-- Idempotent on purpose: ops/stack.sh applies it on every `up`, and docker-compose
-- runs it once at first start. Applied to both `fulfillment` and `fulfillment_test`.

CREATE TABLE IF NOT EXISTS orders (
    order_id            uuid PRIMARY KEY,
    product_id          text NOT NULL,
    warehouse_id        text NOT NULL,
    quantity            integer NOT NULL CHECK (quantity > 0),
    status              text NOT NULL,
    customer_lat        double precision NOT NULL,
    customer_lon        double precision NOT NULL,
    estimated_delivery  date NOT NULL,
    idempotency_key     text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_product_id_idx ON orders (product_id);
CREATE INDEX IF NOT EXISTS orders_status_updated_at_idx ON orders (status, updated_at);

-- One row per status change; the (order_id, event_id) key lets a writer replay the same
-- event safely (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS order_status_history (
    order_id  uuid NOT NULL,
    status    text NOT NULL,
    at        timestamptz NOT NULL,
    event_id  text NOT NULL,
    PRIMARY KEY (order_id, event_id)
);

-- Why an order moved, when a person should know (the sweeper's `failed`); NULL otherwise.
ALTER TABLE order_status_history ADD COLUMN IF NOT EXISTS reason text;

-- The order record's sequence number (engine/records.py) as of the last event applied: an event
-- is applied only when its seq is higher, so events arriving twice or out of order (two writers,
-- a reclaimed batch) never leave an older state behind.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS seq integer NOT NULL DEFAULT 0;

-- One order per (idempotency key, product): Redis answers a retry with the stored confirmation
-- for IDEMPOTENCY_TTL_S; a retry that comes later places a second order there, which the orders
-- writer finds here (the insert conflicts), records below, and cancels (README, Guarantees).
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency_key_idx
    ON orders (idempotency_key, product_id) WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS duplicate_orders (
    order_id           uuid PRIMARY KEY,
    original_order_id  uuid,
    idempotency_key    text NOT NULL,
    product_id         text NOT NULL,
    warehouse_id       text NOT NULL,
    quantity           integer NOT NULL,
    status             text NOT NULL,
    created_at         timestamptz NOT NULL,
    detected_at        timestamptz NOT NULL DEFAULT now()
);

-- Baskets (orders of several lines, engine/baskets.py): one `orders` row each, with product_id
-- and warehouse_id NULL (its lines and shipments are in the tables below), quantity the units
-- over all lines, estimated_delivery its latest shipment's, and the allocation rule that chose
-- its warehouses (exact | greedy). One-product orders keep both columns set and the rule NULL.
-- A basket's idempotency key never meets the unique index above (its product_id is NULL).
ALTER TABLE orders ALTER COLUMN product_id DROP NOT NULL;
ALTER TABLE orders ALTER COLUMN warehouse_id DROP NOT NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS allocation_rule text;

-- A basket's lines as the client sent them (line_no keeps their order); written once, with the
-- basket's confirmation.
CREATE TABLE IF NOT EXISTS order_lines (
    order_id    uuid NOT NULL,
    product_id  text NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    line_no     integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

-- A basket's shipments, one per warehouse that sends a part of it, as the basket's latest
-- persisted event left them (the orders writer replaces them with each newer one: a re-routed
-- shipment comes back under its new warehouse). position keeps the record's order, nearest
-- first.
CREATE TABLE IF NOT EXISTS shipments (
    order_id            uuid NOT NULL,
    warehouse_id        text NOT NULL,
    status              text NOT NULL,
    estimated_delivery  date NOT NULL,
    position            integer NOT NULL,
    PRIMARY KEY (order_id, warehouse_id)
);

-- What each shipment sends: units of one product (position keeps the record's order).
CREATE TABLE IF NOT EXISTS shipment_items (
    order_id      uuid NOT NULL,
    warehouse_id  text NOT NULL,
    product_id    text NOT NULL,
    quantity      integer NOT NULL CHECK (quantity > 0),
    position      integer NOT NULL,
    PRIMARY KEY (order_id, warehouse_id, product_id)
);

-- The shipment a basket's step was about (its warehouse); NULL for a step of the whole order.
ALTER TABLE order_status_history ADD COLUMN IF NOT EXISTS warehouse_id text;
