-- The recommender stage (GENRE §4): one row per trained (model, dataset, variant, seed) run and
-- its metrics per split and user group, everything `genre-local report` needs.
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    experiment_id VARCHAR NOT NULL,       -- one `genre-local train` command (all its seeds)
    model VARCHAR NOT NULL,               -- naml | lstur | nrms | plmnr | bst | dcn | pnn | din
    kind VARCHAR NOT NULL,                -- matching | ranking
    dataset VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,             -- original | ns | up | ng | chain | ns+up | ns+up+ng ...
    features VARCHAR NOT NULL,            -- comma-separated, canonical order (title,abstract,...)
    ng_k INTEGER NOT NULL,                -- synthetic news per cold user (0 without ng/chain)
    seed INTEGER NOT NULL,
    config JSON NOT NULL,                 -- every hyper-parameter of the run
    data_fingerprint VARCHAR NOT NULL,    -- hash of the store rows the variant was built from
    variant_stats JSON NOT NULL,          -- e.g. enhanced titles used / kept, ng users, profiles
    eval_split VARCHAR NOT NULL,          -- test when labeled, otherwise dev
    epochs_run INTEGER NOT NULL,
    best_epoch INTEGER NOT NULL,
    stopped_early BOOLEAN NOT NULL,
    epoch_seconds DOUBLE[] NOT NULL,      -- wall seconds of each training epoch
    train_samples_per_s DOUBLE[] NOT NULL,-- per epoch, all processes together
    dev_auc DOUBLE[] NOT NULL,            -- per epoch (early stopping curve)
    eval_impressions_per_s DOUBLE NOT NULL,
    processes INTEGER NOT NULL,           -- accelerate processes
    device VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Long format: one row per (run, split, user group, metric). user_group: all | new | warm
-- (new = history of at most 5 items before any synthetic news, GENRE Table 6).
CREATE TABLE run_metrics (
    run_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    user_group VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,              -- auc | mrr | ndcg@5 | ndcg@10 | impressions
    value DOUBLE,                         -- NULL when no impression of the group qualifies
    PRIMARY KEY (run_id, split, user_group, metric)
);

-- One row per trained epoch (the lists in runs, long format, plus the data-loading wait).
CREATE TABLE run_epochs (
    run_id VARCHAR NOT NULL,
    epoch INTEGER NOT NULL,               -- 1-based
    seconds DOUBLE NOT NULL,              -- training wall time of the epoch
    samples_per_s DOUBLE NOT NULL,        -- all processes together
    data_wait_seconds DOUBLE NOT NULL,    -- rank 0's time waiting for its next batch
    dev_auc DOUBLE,                       -- NULL without a labeled dev split
    PRIMARY KEY (run_id, epoch)
);

-- The report's usual question: each run's metrics on its reported split.
CREATE VIEW run_results AS
SELECT r.run_id, r.experiment_id, r.model, r.kind, r.dataset, r.variant, r.features, r.ng_k, r.seed,
       r.eval_split AS split, m.user_group, m.metric, m.value, r.created_at
FROM runs r JOIN run_metrics m ON m.run_id = r.run_id AND m.split = r.eval_split;
