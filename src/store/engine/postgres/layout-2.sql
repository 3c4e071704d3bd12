-- Layout version 2: the schema history in a table of its own (version 1 kept it inside
-- `revolve_collections.meta`; connecting to a version 1 layout moves it here).

-- The schema history: every registration and accepted change of a collection, oldest first
-- (`seq` from 0). `record` is the entry as the metadata record on sled holds it, the other
-- columns copies for queries (NULL where a column cannot hold the value). Appended to, never
-- updated or deleted (dropped with the schema).
CREATE TABLE revolve_schema_history (
    collection integer NOT NULL REFERENCES revolve_collections (id),
    seq integer NOT NULL,
    version integer NOT NULL,
    event text NOT NULL,
    fingerprint text,
    recorded timestamptz,
    record bytea NOT NULL,
    PRIMARY KEY (collection, seq)
);

CREATE FUNCTION revolve_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'revolve: % rows are never updated or deleted', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER revolve_schema_history_is_append_only
    BEFORE UPDATE OR DELETE ON revolve_schema_history
    FOR EACH ROW EXECUTE FUNCTION revolve_refuse_change();

CREATE TRIGGER revolve_schema_history_is_never_truncated
    BEFORE TRUNCATE ON revolve_schema_history
    FOR EACH STATEMENT EXECUTE FUNCTION revolve_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON revolve_schema_history FROM PUBLIC;
