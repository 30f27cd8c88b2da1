-- cbmflow issue 16: each red/yellow flag explained (docs/analytics.md section 4).
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
-- Rows of runs made before this version keep NULL in the new columns (the web copes).
--   predicted_name  the name of best_other (the most probable crop other than the declared one)
--   evidence        for red and yellow parcels (NULL for green): a JSON list, most contradicting first,
--                   at most 5 items, at most 2 per band:
--                   {"period": "YYYY-MM-DD", "band": "VH", "value": float, "declared_p25": float,
--                    "declared_p75": float, "predicted_median": float|null, "z": float}
--                   z = (value - median of the parcels declaring the same crop) / (their IQR / 1.349)
-- score (009) stays on 0..1; what it means is in docs/analytics.md and in the run's params.score.
ALTER TABLE parcel_flags
    ADD COLUMN IF NOT EXISTS predicted_name text,
    ADD COLUMN IF NOT EXISTS evidence       jsonb;
