-- Generation sources (issue 9): the LLM and prompt set behind every output, imported outputs,
-- and the source each training run read. Existing rows keep their fingerprints: the prompt set
-- is a column beside the key, not part of it (every local prompt so far is set 'compact').
ALTER TABLE generations ADD COLUMN prompt_set VARCHAR DEFAULT 'compact';
ALTER TABLE generations ADD COLUMN provenance VARCHAR DEFAULT 'generated';  -- generated | imported
UPDATE generations SET prompt_set = 'compact' WHERE prompt_set IS NULL;
UPDATE generations SET provenance = 'generated' WHERE provenance IS NULL;
-- Imported outputs carry no token or engine costs unless their file gives them.
ALTER TABLE generations ALTER COLUMN prompt_tokens DROP NOT NULL;
ALTER TABLE generations ALTER COLUMN completion_tokens DROP NOT NULL;
ALTER TABLE generations ALTER COLUMN latency_s DROP NOT NULL;

ALTER TABLE generation_runs ADD COLUMN prompt_set VARCHAR DEFAULT 'compact';
UPDATE generation_runs SET prompt_set = 'compact' WHERE prompt_set IS NULL;

-- The views training reads keep the newest valid row per item PER SOURCE (model, prompt set):
-- outputs of different LLMs never mix; a variant filters on one source.
CREATE OR REPLACE VIEW enhanced_titles AS
SELECT dataset, input_id AS nid, parsed ->> 'title' AS title, model, prompt_set, prompt_version, round, created_at
FROM generations
WHERE task = 'summarize' AND valid
QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, input_id
                           ORDER BY round DESC, created_at DESC, fingerprint) = 1;

CREATE OR REPLACE VIEW user_profiles AS
SELECT dataset, input_id AS user_id,
       from_json(parsed -> 'topics', '["VARCHAR"]') AS topics,
       from_json(parsed -> 'regions', '["VARCHAR"]') AS regions,
       model, prompt_set, round, created_at
FROM generations
WHERE task = 'profile' AND valid
QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, input_id
                           ORDER BY round DESC, created_at DESC, fingerprint) = 1;

CREATE OR REPLACE VIEW synthetic_news AS
WITH latest AS (
    SELECT dataset, input_id AS user_id, task AS source_task, model, prompt_set, created_at, fingerprint,
           from_json(parsed -> 'items', '[{"title": "VARCHAR", "abstract": "VARCHAR", "category": "VARCHAR"}]') AS items
    FROM generations
    WHERE task IN ('news', 'chain') AND valid
    QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, input_id, task
                               ORDER BY round DESC, created_at DESC, fingerprint) = 1
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
       source_task, model, prompt_set, created_at
FROM exploded;

-- The generation source a training run read (runs of `original` have none). A table of its own
-- so code that inserts runs rows keeps its column list.
CREATE TABLE run_sources (
    run_id VARCHAR PRIMARY KEY,
    llm VARCHAR NOT NULL,                 -- generations.model
    prompt_set VARCHAR NOT NULL
);
