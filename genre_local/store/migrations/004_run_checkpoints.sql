-- Training hardening (issue 12): the store's identity, and the checkpoint each run's weights are in.
-- One random id, written once when the migration runs: checkpoints are kept per store id
-- (<checkpoints>/<store_id>/...) and record it, so another store in the same folder (or under
-- another config) never resumes from or predicts with them.
CREATE TABLE store_identity (
    store_id VARCHAR NOT NULL
);
INSERT INTO store_identity SELECT replace(CAST(uuid() AS VARCHAR), '-', '');

-- The checkpoint folder of a run (runs stored before this migration have none). A table of its
-- own rather than a new runs column: code that inserts runs rows keeps its column list.
CREATE TABLE run_checkpoints (
    run_id VARCHAR PRIMARY KEY,
    checkpoint VARCHAR NOT NULL
);
