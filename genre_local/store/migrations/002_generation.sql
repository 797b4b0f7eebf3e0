-- The LLM stage (GENRE §3): every request, every run's cost, profile fidelity, and the views
-- the training stage reads.

-- One row per request. The fingerprint hashes (task, input id, model id, prompt version,
-- sampling parameters, round) and NOT the attempt: a retry of an invalid output rewrites the
-- same row in place (attempt counts the tries), so a key can never be stored twice and the
-- views never see stale failures beside a later success.
CREATE TABLE generations (
    fingerprint VARCHAR PRIMARY KEY,
    dataset VARCHAR NOT NULL,
    task VARCHAR NOT NULL,              -- summarize | profile | news | chain
    input_id VARCHAR NOT NULL,          -- nid for summarize, user_id otherwise
    model VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,    -- hash of the prompts/<task>.txt template
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,           -- 1 = first try
    run_id VARCHAR NOT NULL,            -- generation_runs.run_id that wrote the row last
    backend VARCHAR NOT NULL,
    sampling VARCHAR NOT NULL,          -- JSON of the sampling parameters in the fingerprint
    prompt VARCHAR NOT NULL,            -- the rendered conversation, as JSON messages
    raw_output VARCHAR NOT NULL,
    parsed JSON,                        -- normalized output; NULL when invalid
    valid BOOLEAN NOT NULL,
    error VARCHAR,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s DOUBLE NOT NULL,          -- the request's share of its batch's engine time
    created_at TIMESTAMP NOT NULL
);

-- One row per generate command, task and round: GENRE Table 8 in local terms.
CREATE TABLE generation_runs (
    run_id VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    round INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    requests BIGINT NOT NULL,           -- inputs the task asked for
    new BIGINT NOT NULL,                -- keys written by this run
    skipped BIGINT NOT NULL,            -- keys already stored valid
    valid BIGINT NOT NULL,              -- of the new keys, valid after retries
    invalid BIGINT NOT NULL,
    attempts BIGINT NOT NULL,           -- engine requests including retries
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    engine_seconds DOUBLE NOT NULL,     -- inside the backend's generate calls
    startup_seconds DOUBLE NOT NULL,    -- engine start, charged to the first task that used it
    wall_seconds DOUBLE NOT NULL,       -- the task's own wall time, startup excluded
    price_per_hour DOUBLE,
    cost DOUBLE,                        -- price_per_hour * (wall + startup) / 3600; NULL without a price
    PRIMARY KEY (run_id, task, round)
);

CREATE TABLE profile_fidelity (
    dataset VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    round INTEGER NOT NULL,
    precision_at_3 DOUBLE NOT NULL,
    recall DOUBLE NOT NULL,
    region_accuracy DOUBLE NOT NULL,
    users BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Latest valid enhanced title per news item: highest round, then newest.
CREATE VIEW enhanced_titles AS
SELECT dataset, input_id AS nid, parsed ->> 'title' AS title, model, prompt_version, round, created_at
FROM generations
WHERE task = 'summarize' AND valid
QUALIFY row_number() OVER (PARTITION BY dataset, input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1;

-- Latest valid profile per user.
CREATE VIEW user_profiles AS
SELECT dataset, input_id AS user_id,
       from_json(parsed -> 'topics', '["VARCHAR"]') AS topics,
       from_json(parsed -> 'regions', '["VARCHAR"]') AS regions,
       model, round, created_at
FROM generations
WHERE task = 'profile' AND valid
QUALIFY row_number() OVER (PARTITION BY dataset, input_id ORDER BY round DESC, created_at DESC, fingerprint) = 1;

-- Generated news for cold users, one row per item, from the latest valid output per
-- (dataset, user, task). Generated nids start with 'G' so they never clash with MIND's 'N...'.
CREATE VIEW synthetic_news AS
WITH latest AS (
    SELECT dataset, input_id AS user_id, task AS source_task, model, created_at, fingerprint,
           from_json(parsed -> 'items', '[{"title": "VARCHAR", "abstract": "VARCHAR", "category": "VARCHAR"}]') AS items
    FROM generations
    WHERE task IN ('news', 'chain') AND valid
    QUALIFY row_number() OVER (PARTITION BY dataset, input_id, task ORDER BY round DESC, created_at DESC, fingerprint) = 1
), exploded AS (
    SELECT *, unnest(range(len(items))) AS position FROM latest
)
SELECT dataset, user_id,
       'G' || left(md5(fingerprint || ':' || position::VARCHAR), 15) AS nid,
       position::INTEGER AS position,
       items[position + 1].title AS title,
       items[position + 1].abstract AS abstract,
       items[position + 1].category AS category,
       'generated' AS subcategory,
       source_task, model, created_at
FROM exploded;
