-- Usage rollups: the request log summed per time bucket and (key, user, model, provider), kept
-- as records arrive (in the transaction that stores them), so that a report over any range
-- reads a number of rows that does not grow with traffic. Three grains: a minute (60000; kept
-- as long as the request log), an hour (3600000) and a UTC day (86400000), both kept for ever.
-- errors: status >= 400 or no answer (0); cost_micros: unpriced requests count 0.
CREATE TABLE usage_rollup (
    grain_ms           BIGINT NOT NULL,
    start_ms           BIGINT NOT NULL,
    key_id             TEXT   NOT NULL,
    user_name          TEXT   NOT NULL,
    model              TEXT   NOT NULL,
    provider           TEXT   NOT NULL,
    requests           BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    prompt_tokens      BIGINT NOT NULL,
    completion_tokens  BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_micros        BIGINT NOT NULL,
    PRIMARY KEY (grain_ms, start_ms, key_id, user_name, model, provider)
) PARTITION BY LIST (grain_ms);
-- One partition per grain: a report reads whole days from a table of days only (in one table
-- the day rows were scattered among the minute rows, and a 30-day report scanned them all).
CREATE TABLE usage_rollup_minute PARTITION OF usage_rollup FOR VALUES IN (60000);
CREATE TABLE usage_rollup_hour PARTITION OF usage_rollup FOR VALUES IN (3600000);
CREATE TABLE usage_rollup_day PARTITION OF usage_rollup FOR VALUES IN (86400000);
CREATE INDEX usage_rollup_user ON usage_rollup (grain_ms, user_name, start_ms);

-- Backfill from the rows already logged.
INSERT INTO usage_rollup (grain_ms, start_ms, key_id, user_name, model, provider, requests,
    errors, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
    reasoning_tokens, cost_micros)
SELECT 60000, at_ms / 60000 * 60000, key_id, user_name, model, provider, COUNT(*),
    SUM(CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END), SUM(prompt_tokens),
    SUM(completion_tokens), SUM(cached_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens),
    COALESCE(SUM(cost_micros), 0)
FROM request_log GROUP BY at_ms / 60000, key_id, user_name, model, provider;
INSERT INTO usage_rollup (grain_ms, start_ms, key_id, user_name, model, provider, requests,
    errors, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
    reasoning_tokens, cost_micros)
SELECT 3600000, at_ms / 3600000 * 3600000, key_id, user_name, model, provider, COUNT(*),
    SUM(CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END), SUM(prompt_tokens),
    SUM(completion_tokens), SUM(cached_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens),
    COALESCE(SUM(cost_micros), 0)
FROM request_log GROUP BY at_ms / 3600000, key_id, user_name, model, provider;
INSERT INTO usage_rollup (grain_ms, start_ms, key_id, user_name, model, provider, requests,
    errors, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
    reasoning_tokens, cost_micros)
SELECT 86400000, at_ms / 86400000 * 86400000, key_id, user_name, model, provider, COUNT(*),
    SUM(CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END), SUM(prompt_tokens),
    SUM(completion_tokens), SUM(cached_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens),
    COALESCE(SUM(cost_micros), 0)
FROM request_log GROUP BY at_ms / 86400000, key_id, user_name, model, provider;
