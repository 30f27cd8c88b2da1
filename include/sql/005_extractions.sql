-- cbmflow exactly-once extraction: one status row per (scene, AOI, parcel year).
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
--
-- The catalogue's status is the CARD queue (discovered -> processing -> ready; 'extracted' now only
-- says "extracted for at least one AOI"). Which AOI has which scene's rows is recorded here:
--   pending   planned (or interrupted by an outage / a killed worker): the next attempt does it
--   extracted rows written (rows > 0); when the AOI's parcels change (aois.parcels_version grows)
--             the next plan extracts the scene again for the new parcel set
--   no_data   the scene was read but no parcel of the AOI has a valid pixel in it (all nodata,
--             no overlap): 0 rows, reported by the run, never silent
--   failed    a reproducible bad input (corrupt or unreadable file, missing band): last_error, band
-- There is no 'processing' status: a worker's claim is a row lock (SELECT ... FOR UPDATE) held by
-- the one transaction that deletes the old rows, COPYs the new ones and sets the status. A worker
-- that dies rolls that transaction back (no partial rows) and releases the claim at once.
CREATE TABLE extractions (
    obsid      integer     NOT NULL REFERENCES catalogue(id) ON DELETE CASCADE,
    aoi        text        NOT NULL REFERENCES aois(name) ON DELETE CASCADE,
    year       smallint    NOT NULL,              -- the parcel year (parcels.year)
    status     text        NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'extracted', 'no_data', 'failed')),
    attempts   integer     NOT NULL DEFAULT 0,    -- finished or interrupted tries
    last_error text,                              -- failed: the error; pending: the last outage
    band       text,                              -- the band whose read failed, when known
    rows       integer     NOT NULL DEFAULT 0,    -- signature rows written (all bands)
    run_id     text,                              -- the run that last set the status
    parcels_version integer NOT NULL DEFAULT 0,   -- aois.parcels_version the rows were computed for
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (obsid, aoi, year)
);
CREATE INDEX extractions_aoi_status_idx ON extractions (aoi, year, status);
CREATE INDEX extractions_problems_idx ON extractions (updated_at) WHERE status IN ('failed', 'no_data');

-- Existing data: every (scene, AOI, year) that has signature rows was extracted.
INSERT INTO extractions (obsid, aoi, year, status, attempts, rows, run_id, parcels_version, updated_at)
SELECT s.obsid, p.aoi, p.year, 'extracted', 1, count(*), 'migrated-005', max(a.parcels_version), max(c.updated_at)
FROM signatures s
JOIN parcels p ON p.pid = s.pid
JOIN aois a ON a.name = p.aoi
JOIN catalogue c ON c.id = s.obsid
GROUP BY s.obsid, p.aoi, p.year;

-- Extraction failures used to mark the catalogue scene 'failed' although its CARD rasters exist, and
-- a killed worker left it in 'processing'. Both go back to 'ready': every AOI without rows for them
-- plans them again (as 'pending') and the next run records a per-AOI outcome.
UPDATE catalogue SET status = 'ready', updated_at = now(),
       last_error = 'migrated-005: was ' || status || coalesce(': ' || last_error, '')
WHERE status IN ('failed', 'processing') AND assets <> '{}'::jsonb;
