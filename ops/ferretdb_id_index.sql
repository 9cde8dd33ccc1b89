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

CREATE OR REPLACE FUNCTION ferretdb_index_id_lookups() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT c.objid, c.object_identity
        FROM pg_event_trigger_ddl_commands() c
        JOIN pg_class t ON t.oid = c.objid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_jsonb'
            AND a.atttypid = 'jsonb'::regtype
        WHERE c.command_tag = 'CREATE TABLE' AND c.object_type = 'table'
            AND t.relname NOT LIKE '\_ferretdb\_%'
    LOOP
        EXECUTE format(
            'CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
            created.object_identity
        );
    END LOOP;
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
SELECT format(
    'CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
    t.oid::regclass
)
FROM pg_class t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_jsonb' AND a.atttypid = 'jsonb'::regtype
WHERE t.relkind = 'r'
    AND t.relpersistence = 'p'
    AND t.relname NOT LIKE '\_ferretdb\_%'
    AND NOT EXISTS (
        SELECT FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_am m ON m.oid = i.relam
        WHERE x.indrelid = t.oid AND m.amname = 'gin'
    )
\gexec
