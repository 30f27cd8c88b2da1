-- cbmflow issue 19: the inspector's decisions on flagged parcels, append-only.
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
--
-- One row per decision an inspector records in the workbench (the parcel page's form). A parcel
-- can have several: the newest one (highest decision_id) is its current decision, the older ones
-- are its history. Rows are never changed or deleted: a correction is a new decision.
--
-- The key of the parcel is (aoi, year, parcel_id), the declaration's own id, so a decision survives
-- a re-import of the parcels (which gives new pids); pid and run_id are kept for convenience and
-- point at the parcel and the classification run the inspector was looking at.
--
--   outcome          one of: confirmed (the declaration is right), wrong_declaration (the crop
--                    found is corrected_crop), field_visit (a visit is needed), photo_requested
--                    (a geotagged photo was asked for), not_enough_evidence
--   corrected_crop   the crop found (code or name), only with wrong_declaration
--   decided_by       the Airflow user who recorded it (from the api-server's login)
--
-- The web app writes with its own role `cbmflow_decider`, which may INSERT and SELECT decisions
-- and nothing else (no UPDATE, DELETE or TRUNCATE, no other table): enforced by the grants below,
-- and a trigger refuses UPDATE and DELETE even for the owner.
CREATE TABLE decisions (
    decision_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aoi            text        NOT NULL,
    year           smallint    NOT NULL,
    parcel_id      text        NOT NULL,
    pid            integer,
    run_id         bigint,
    outcome        text        NOT NULL CHECK (outcome IN ('confirmed', 'wrong_declaration', 'field_visit',
                                                           'photo_requested', 'not_enough_evidence')),
    corrected_crop text        CHECK (corrected_crop IS NULL OR length(btrim(corrected_crop)) BETWEEN 1 AND 100),
    note           text        NOT NULL DEFAULT '' CHECK (length(note) <= 4000),
    decided_by     text        NOT NULL CHECK (length(btrim(decided_by)) BETWEEN 1 AND 200),
    decided_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (outcome = 'wrong_declaration' OR corrected_crop IS NULL)
);
CREATE INDEX decisions_parcel_idx ON decisions (aoi, year, parcel_id, decision_id DESC);
CREATE INDEX decisions_pid_idx ON decisions (pid, decision_id DESC);
CREATE INDEX decisions_run_idx ON decisions (run_id);

CREATE FUNCTION decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decisions are append-only: record a new decision instead of changing one'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION decisions_append_only();

-- The role the web app records decisions with (cluster-wide; creation idempotent and safe when two
-- databases migrate at once, like cbmflow_reader in 007).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cbmflow_decider') THEN
        BEGIN
            CREATE ROLE cbmflow_decider LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO cbmflow_decider', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO cbmflow_decider;
REVOKE ALL ON decisions FROM PUBLIC;
GRANT SELECT, INSERT ON decisions TO cbmflow_decider;
-- the readers (the pages) see every decision; 007's default privileges already grant this.
GRANT SELECT ON decisions TO cbmflow_reader;
