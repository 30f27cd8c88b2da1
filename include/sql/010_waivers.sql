-- cbmflow extraction waivers: an operator's recorded decision that a failed (scene, AOI, year)
-- may stay without rows. Applied by `cbmflow db upgrade`; never edit an applied file.
--
-- A failed extraction is re-planned by every run over its scope (and keeps that run red) until it
-- is extracted or waived here (`cbmflow extract waive --scene ... --aoi ... --reason ...`). A waived
-- pair is not re-planned (unless `reprocess`), is listed in the run summary, and does not fail
-- `verify`. Deleting the waiver (`cbmflow extract waive --undo`) makes it count again.
CREATE TABLE extraction_waivers (
    obsid      integer     NOT NULL,
    aoi        text        NOT NULL,
    year       smallint    NOT NULL,
    reason     text        NOT NULL CHECK (length(btrim(reason)) > 0),
    waived_by  text        NOT NULL,
    waived_at  timestamptz NOT NULL DEFAULT now(),
    error      text,                               -- the extraction's last_error when it was waived
    PRIMARY KEY (obsid, aoi, year),
    FOREIGN KEY (obsid, aoi, year) REFERENCES extractions (obsid, aoi, year) ON DELETE CASCADE
);
