-- One news per request (the `paper` prompt set, issue 9): a generator may store several rows per
-- user and round, one per `news_index` of the sampling key. The view keeps the newest valid row
-- per (source, user, task, request) and numbers the news across a user's requests; rows without
-- a news_index (one request for all of a user's news) read as before.
CREATE OR REPLACE VIEW synthetic_news AS
WITH latest AS (
    SELECT dataset, input_id AS user_id, task AS source_task, model, prompt_set, created_at, fingerprint,
           coalesce(try_cast(sampling ->> 'news_index' AS INTEGER), 0) AS request_index,
           from_json(parsed -> 'items', '[{"title": "VARCHAR", "abstract": "VARCHAR", "category": "VARCHAR"}]') AS items
    FROM generations
    WHERE task IN ('news', 'chain') AND valid
    QUALIFY row_number() OVER (PARTITION BY dataset, model, prompt_set, input_id, task,
                                            coalesce(sampling ->> 'news_index', '')
                               ORDER BY round DESC, created_at DESC, fingerprint) = 1
), exploded AS (
    SELECT *, unnest(range(len(items))) AS item_index FROM latest
), numbered AS (
    SELECT *, (row_number() OVER (PARTITION BY dataset, model, prompt_set, user_id, source_task
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
       source_task, model, prompt_set, created_at
FROM numbered;
