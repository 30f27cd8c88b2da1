-- cbmflow issue 11: the evidence behind each flag, for the inspector and the parcel view.
-- Applied by `cbmflow db upgrade`; never edit an applied file, add a new numbered one.
-- Rows of runs made before this version keep NULL in the new columns.
--   declared_name          the declared crop's name (the crop code is in `declared`)
--   best_other             the most probable crop other than the declared one
--   best_other_probability its mean out-of-fold probability
--   score                  suspicion score (1 + best_other_probability - declared_probability) / 2:
--                          0 = declared crop certain, 0.5 = tie, 1 = another crop certain
--   suspicion_rank         1 = most suspicious parcel of the run
--   reason                 why the parcel is red/yellow, in words ('' for green)
-- declared_probability (004) is now the declared crop's probability also for rare crops without a
-- class of their own: 1 - best_other_probability (their declared_class is the crop itself).
ALTER TABLE parcel_flags
    ADD COLUMN IF NOT EXISTS declared_name          text,
    ADD COLUMN IF NOT EXISTS best_other             text,
    ADD COLUMN IF NOT EXISTS best_other_probability real,
    ADD COLUMN IF NOT EXISTS score                  real,
    ADD COLUMN IF NOT EXISTS suspicion_rank         integer,
    ADD COLUMN IF NOT EXISTS reason                 text;
CREATE INDEX IF NOT EXISTS parcel_flags_run_score_idx ON parcel_flags (run_id, score DESC);
