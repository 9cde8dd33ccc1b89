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
