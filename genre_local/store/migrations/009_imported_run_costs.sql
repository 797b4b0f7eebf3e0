-- Imported generations get a generation_runs row (issue 9 part 2). Their cost is unknown unless
-- the file gave it, so the cost columns take NULL (= unknown, never 0), and a provenance column
-- tells imported runs from generated ones. Numbered 009 so it stays apart from another branch's 008.
ALTER TABLE generation_runs ALTER COLUMN attempts DROP NOT NULL;
ALTER TABLE generation_runs ALTER COLUMN prompt_tokens DROP NOT NULL;
ALTER TABLE generation_runs ALTER COLUMN completion_tokens DROP NOT NULL;
ALTER TABLE generation_runs ALTER COLUMN engine_seconds DROP NOT NULL;
ALTER TABLE generation_runs ALTER COLUMN startup_seconds DROP NOT NULL;
ALTER TABLE generation_runs ALTER COLUMN wall_seconds DROP NOT NULL;
ALTER TABLE generation_runs ADD COLUMN provenance VARCHAR DEFAULT 'generated';  -- generated | imported
UPDATE generation_runs SET provenance = 'generated' WHERE provenance IS NULL;

-- Imports made before this migration wrote no run row: one per import run, from its stored
-- rows. A total is known only when every row of the run gave it.
INSERT INTO generation_runs BY NAME
SELECT run_id, dataset, task, model, any_value(backend) AS backend, round,
       min(created_at) AS started_at,
       count(*) AS requests, count(*) AS new, 0 AS skipped,
       count(*) FILTER (WHERE valid) AS valid, count(*) FILTER (WHERE NOT valid) AS invalid,
       NULL AS attempts,
       CASE WHEN bool_and(prompt_tokens IS NOT NULL) THEN sum(prompt_tokens) END AS prompt_tokens,
       CASE WHEN bool_and(completion_tokens IS NOT NULL) THEN sum(completion_tokens) END AS completion_tokens,
       CASE WHEN bool_and(latency_s IS NOT NULL) THEN sum(latency_s) END AS engine_seconds,
       NULL AS startup_seconds, NULL AS wall_seconds, NULL AS price_per_hour, NULL AS cost,
       prompt_set, 'imported' AS provenance
FROM generations
WHERE provenance = 'imported'
  AND run_id NOT IN (SELECT run_id FROM generation_runs)
GROUP BY run_id, dataset, task, model, round, prompt_set;
