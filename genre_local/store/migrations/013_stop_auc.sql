-- The per-epoch AUC of early stopping is scored on the run's stopping split (runs.stop_split,
-- migration 005): dev, or a hold-out of train where dev is the reported split. Its columns were
-- named dev_auc from before the hold-out existed; renamed so that a query never reads a
-- hold-out AUC as a dev one. Values are unchanged; no view or macro reads these columns.
-- (`report`'s epoch_curves.csv keeps its `dev_auc` column name, beside `stop_split`.)
ALTER TABLE run_epochs RENAME COLUMN dev_auc TO stop_auc;
ALTER TABLE runs RENAME COLUMN dev_auc TO stop_auc;
