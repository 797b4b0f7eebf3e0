-- Training hardening (issue 12): the store's identity, and the checkpoint each run's weights are in.
-- One random id, written once when the migration runs: checkpoints are kept per store id
-- (<checkpoints>/<store_id>/...) and record it, so another store in the same folder (or under
-- another config) never resumes from or predicts with them.
CREATE TABLE store_identity (
    store_id VARCHAR NOT NULL
);
INSERT INTO store_identity SELECT replace(CAST(uuid() AS VARCHAR), '-', '');

-- The checkpoint folder of the run (NULL for runs stored before this migration).
ALTER TABLE runs ADD COLUMN checkpoint VARCHAR;
