-- cbmflow web (parcel view, flag list, scene problems): the read-only database role the API uses.
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
--
-- cbmflow_reader can log in (set a password with ALTER ROLE ... PASSWORD where the server does
-- not trust local connections), read every table of the public schema, and nothing else.
-- Roles are cluster-wide: creating it is idempotent and safe when two databases migrate at once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cbmflow_reader') THEN
        BEGIN
            CREATE ROLE cbmflow_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created concurrently by another database's migration
        END;
    END IF;
END
$$;
-- Every session of the role is read-only, even if a grant below were ever too wide.
DO $$
BEGIN
    ALTER ROLE cbmflow_reader SET default_transaction_read_only = on;
EXCEPTION WHEN OTHERS THEN
    -- another database's migration set it at the same moment ("tuple concurrently updated")
    RAISE NOTICE 'cbmflow_reader: default_transaction_read_only set concurrently (%)', SQLERRM;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO cbmflow_reader', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO cbmflow_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cbmflow_reader;
-- Tables later schema files create (005 extraction status, 006 markers, 009 flags ...) too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cbmflow_reader;
