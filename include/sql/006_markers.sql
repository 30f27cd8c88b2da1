-- cbmflow activity markers (mowing, bare soil, ploughing, harvest, no evidence) and compliance.
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
-- One run = one detection pass over an AOI's season; a re-run of the same run_id replaces its rows
-- (cbmflow.markers.store.save_run deletes the run, cascading, and writes it again in one transaction).

CREATE TABLE marker_runs (
    run_id     text PRIMARY KEY,
    aoi        text NOT NULL,
    year       int  NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    params     jsonb NOT NULL DEFAULT '{}',
    n_parcels  int  NOT NULL DEFAULT 0,
    source     text NOT NULL DEFAULT 'postgis'       -- postgis | files
);
CREATE INDEX marker_runs_aoi_year_idx ON marker_runs (aoi, year, created_at DESC);

CREATE TABLE markers (
    run_id     text NOT NULL REFERENCES marker_runs ON DELETE CASCADE,
    aoi        text NOT NULL,
    year       int  NOT NULL,
    pid        int  NOT NULL,
    marker     text NOT NULL /* mowing|bare_soil|ploughing|harvest|no_evidence */
               CHECK (marker IN ('mowing', 'bare_soil', 'ploughing', 'harvest', 'no_evidence')),
    event_date date,
    start_date date,
    end_date   date,
    confidence real,
    sources    text[] NOT NULL DEFAULT '{}',
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX markers_aoi_year_pid_idx ON markers (aoi, year, pid);
CREATE INDEX markers_run_idx ON markers (run_id);

CREATE TABLE compliance (
    run_id text NOT NULL REFERENCES marker_runs ON DELETE CASCADE,
    aoi    text NOT NULL,
    year   int  NOT NULL,
    pid    int  NOT NULL,
    rule   text NOT NULL,
    status text NOT NULL /* compliant|not_compliant|not_monitored|not_enough_evidence */
           CHECK (status IN ('compliant', 'not_compliant', 'not_monitored', 'not_enough_evidence')),
    detail text,
    PRIMARY KEY (run_id, pid, rule)
);
CREATE INDEX compliance_aoi_year_pid_idx ON compliance (aoi, year, pid);
