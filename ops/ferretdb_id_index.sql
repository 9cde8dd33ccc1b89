-- Applied by ops/stack.sh to the `ferretdb` database, where FerretDB keeps every MongoDB collection
-- as a table with one jsonb column, `_jsonb`. Idempotent: run on every `ops/stack.sh up`, before
-- FerretDB starts.
--
-- Why: FerretDB 1.24 finds the documents of an update (or a find) by `_id` with the containment
-- operator, `_jsonb->$1 @> $2` with '_id' bound to $1, which its own unique btree index on
-- `_jsonb->'_id'` cannot serve: every `update_one({_id: ...})` read the whole collection. The
-- inventory writer updates one document per product it mirrors, so its rate fell as the
-- catalogue grew (README, "The MongoDB mirror"). A GIN index on the same expression serves
-- containment once PostgreSQL plans the statement with its values (a custom plan, which its
-- default plan_cache_mode keeps choosing while the index makes it the cheaper one). fastupdate is
-- off: with it, every lookup also scans the index's list of not yet merged entries, which
-- constant updates keep long. A real MongoDB needs none of this (docker-compose.yml).
-- FerretDB's own metadata tables (`_ferretdb_...`) are small and looked up otherwise: left alone.

-- Gives one table the index, when it is a collection's (a permanent table with a jsonb `_jsonb`,
-- not FerretDB's metadata) and has no GIN index yet.
CREATE OR REPLACE FUNCTION ferretdb_index_id_lookup(collection regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_class t
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_jsonb'
            AND a.atttypid = 'jsonb'::regtype
        WHERE t.oid = collection AND t.relkind = 'r' AND t.relpersistence = 'p'
            AND t.relname NOT LIKE '\_ferretdb\_%'
    ) AND NOT EXISTS (
        SELECT FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_am m ON m.oid = i.relam
        WHERE x.indrelid = collection AND m.amname = 'gin'
    ) THEN
        EXECUTE format(
            'CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
            collection
        );
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ferretdb_index_id_lookups() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ferretdb_index_id_lookup(objid)
    FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE TABLE' AND object_type = 'table';
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'ferretdb_index_id_lookups') THEN
        CREATE EVENT TRIGGER ferretdb_index_id_lookups ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION ferretdb_index_id_lookups();
    END IF;
END
$$;

-- Collections made before the trigger existed.
DO $$
BEGIN
    PERFORM ferretdb_index_id_lookup(oid) FROM pg_class WHERE relkind = 'r';
END
$$;
