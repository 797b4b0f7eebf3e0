-- Core tables: datasets, news, impressions and the synthetic generator's ground truth.
CREATE TABLE datasets (
    name VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    splits VARCHAR[] NOT NULL,
    news_count BIGINT NOT NULL,
    impression_count BIGINT NOT NULL,
    has_truth BOOLEAN NOT NULL
);

-- Text columns are byte-exact copies of news.tsv; empty fields are empty strings, not NULL.
CREATE TABLE news (
    dataset VARCHAR NOT NULL,
    nid VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    subcategory VARCHAR NOT NULL,
    title VARCHAR NOT NULL,
    abstract VARCHAR NOT NULL,
    url VARCHAR NOT NULL,
    title_entities VARCHAR NOT NULL,
    abstract_entities VARCHAR NOT NULL
);

-- One row per behaviors.tsv line. history is ordered oldest first as in the file;
-- labels[i] belongs to candidates[i] and is NULL where the file has a bare nid (unlabeled test).
CREATE TABLE impressions (
    dataset VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    impression_id BIGINT NOT NULL,
    user_id VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    history VARCHAR[] NOT NULL,
    candidates VARCHAR[] NOT NULL,
    labels TINYINT[] NOT NULL
);

-- Ground truth written by `genre-local data synth` (truth.tsv): a user's real interest topics
-- (GENRE's 19 profile topics, most important first) and home state.
CREATE TABLE user_truth (
    dataset VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    topics VARCHAR[] NOT NULL,
    region VARCHAR NOT NULL
);
