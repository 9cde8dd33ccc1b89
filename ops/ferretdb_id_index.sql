-- Applied by ops/stack.sh to the `ferretdb` database, where FerretDB keeps every MongoDB collection
-- as a table with one jsonb column, `_jsonb`. Idempotent: run on every `ops/stack.sh up`.
--
-- Why: FerretDB 1.24 finds the documents of an update (or a find) by `_id` with the containment
-- operator, `_jsonb->'_id' @> '"..."'`, which its own unique btree index on `_jsonb->'_id'`
-- cannot serve: every `update_one({_id: ...})` read the whole collection. The inventory writer
-- updates one document per product it mirrors, so its rate fell as the catalogue grew (README,
-- "The MongoDB mirror"). A GIN index on the same expression serves containment. fastupdate is
-- off: with it, every lookup also scans the index's list of not yet merged entries, which
-- constant updates keep long. A real MongoDB needs none of this (docker-compose.yml).

CREATE OR REPLACE FUNCTION ferretdb_index_id_lookups() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT objid, object_identity FROM pg_event_trigger_ddl_commands()
        WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
    LOOP
        IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = created.objid AND attname = '_jsonb') THEN
            EXECUTE format(
                'CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
                created.object_identity
            );
        END IF;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS ferretdb_index_id_lookups;
CREATE EVENT TRIGGER ferretdb_index_id_lookups ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION ferretdb_index_id_lookups();

-- Collections made before this file was applied.
SELECT format(
    'CREATE INDEX ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops) WITH (fastupdate = off)',
    t.oid::regclass
)
FROM pg_class t
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_jsonb'
WHERE t.relkind = 'r'
  AND NOT EXISTS (
      SELECT FROM pg_index i JOIN pg_am m ON m.oid = (SELECT relam FROM pg_class WHERE oid = i.indexrelid)
      WHERE i.indrelid = t.oid AND m.amname = 'gin'
  )
\gexec
