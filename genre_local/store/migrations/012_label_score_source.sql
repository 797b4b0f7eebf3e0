-- `--profile-method label-score` (issue 9 part 6) is a source method of its own: its profiles
-- carry sampling 'method' = 'label-score' (read by 010's rule already), and its per-news step,
-- task `label_scores` (each clicked news' decoded label plus every topic's probability),
-- belongs to it as the `label` task belongs to 'label'. Only the macro changes: the views of
-- 010 call it by name, so they read the new rule; no stored row changes.
CREATE OR REPLACE MACRO source_method(task, sampling) AS
    CASE task
        WHEN 'profile' THEN coalesce(sampling ->> 'method', 'generate')
        WHEN 'chain' THEN coalesce(sampling ->> 'profile_method', 'generate')
        WHEN 'label' THEN 'label'
        WHEN 'label_scores' THEN 'label-score'
        ELSE 'generate'
    END;
