-- The profile method is part of a generation source (issue 9): profiles written, scored or
-- labelled by one (LLM, prompt set) are three sources, and the chain's news belong to the
-- method of the profiles they were generated from. `source_method` is the one rule, used by
-- the views below and by the code's queries (store/generations.py):
--   profile: the profiler's method (sampling key 'method'; rows stored before methods existed
--            have none and are 'generate');
--   chain:   the method of the profiles the chain read (sampling key 'profile_method', written
--            since this migration; chain rows stored before it read as 'generate');
--   label:   the labelling profiler's first step, 'label';
--   summarize, news: 'generate' (they read no profile).
CREATE OR REPLACE MACRO source_method(task, sampling) AS
    CASE task
        WHEN 'profile' THEN coalesce(sampling ->> 'method', 'generate')
        WHEN 'chain' THEN coalesce(sampling ->> 'profile_method', 'generate')
        WHEN 'label' THEN 'label'
        ELSE 'generate'
    END;

-- The newest valid profile per (source, user), the source now with its method: a newer scored
-- profile never replaces a generated one.
CREATE OR REPLACE VIEW user_profiles AS
SELECT dataset, input_id AS user_id,
       from_json(parsed -> 'topics', '["VARCHAR"]') AS topics,
       from_json(parsed -> 'regions', '["VARCHAR"]') AS regions,
       model, prompt_set, round, created_at,
       source_method(task, sampling) AS method
FROM generations
WHERE task = 'profile' AND valid
QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, source_method(task, sampling), input_id
                           ORDER BY round DESC, created_at DESC, fingerprint) = 1;

-- 007's view, per method as well (news rows are always 'generate').
CREATE OR REPLACE VIEW synthetic_news AS
WITH latest AS (
    SELECT dataset, input_id AS user_id, task AS source_task, model, prompt_set, created_at, fingerprint,
           source_method(task, sampling) AS method,
           coalesce(try_cast(sampling ->> 'news_index' AS INTEGER), 0) AS request_index,
           from_json(parsed -> 'items', '[{"title": "VARCHAR", "abstract": "VARCHAR", "category": "VARCHAR"}]') AS items
    FROM generations
    WHERE task IN ('news', 'chain') AND valid
    QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, source_method(task, sampling), input_id, task,
                                            coalesce(sampling ->> 'news_index', '')
                               ORDER BY round DESC, created_at DESC, fingerprint) = 1
), exploded AS (
    SELECT *, unnest(range(len(items))) AS item_index FROM latest
), numbered AS (
    SELECT *, (row_number() OVER (PARTITION BY dataset, model, prompt_set, method, user_id, source_task
                                  ORDER BY request_index, item_index) - 1) AS position
    FROM exploded
)
SELECT dataset, user_id,
       'G' || left(md5(fingerprint || ':' || item_index::VARCHAR), 15) AS nid,
       position::INTEGER AS position,
       items[item_index + 1].title AS title,
       items[item_index + 1].abstract AS abstract,
       items[item_index + 1].category AS category,
       'generated' AS subcategory,
       source_task, model, prompt_set, created_at, method
FROM numbered;

-- The source a training run read, with its method; runs stored before read 'generate'.
ALTER TABLE run_sources ADD COLUMN method VARCHAR DEFAULT 'generate';
UPDATE run_sources SET method = 'generate' WHERE method IS NULL;

-- A generation run's cost belongs to its source's method (the report's cost per source). Runs
-- stored before: the method of the rows of the same task the run wrote (none written: 'generate').
ALTER TABLE generation_runs ADD COLUMN method VARCHAR DEFAULT 'generate';
UPDATE generation_runs SET method = 'generate' WHERE method IS NULL;
UPDATE generation_runs r SET method = g.method
FROM (SELECT run_id, dataset, task, round, any_value(source_method(task, sampling)) AS method
      FROM generations WHERE task IN ('profile', 'chain') GROUP BY ALL) g
WHERE r.run_id = g.run_id AND r.dataset = g.dataset AND r.task = g.task AND r.round = g.round;
