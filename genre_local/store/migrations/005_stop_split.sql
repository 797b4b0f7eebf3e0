-- Evaluation protocol (issue 9 item 3): the split early stopping scored, recorded with each run,
-- never the reported split (runs.eval_split). 'dev' when test is labelled and reported;
-- 'train-holdout' (a hash-picked slice of train impressions, recsys/stopping.py) when dev is
-- reported; NULL when nothing stopped the run early (the last epoch's weights count).
ALTER TABLE runs ADD COLUMN stop_split VARCHAR;

-- Runs stored before this migration stopped on dev whenever dev had labels, which is exactly
-- when they recorded a per-epoch dev AUC.
UPDATE runs SET stop_split = CASE WHEN len(dev_auc) > 0 THEN 'dev' END;
