-- Health figures per target (provider, upstream model) and minute, added up from Envoy's access
-- log stream: every attempt, failed or not, with the time to the provider's first byte.
CREATE TABLE target_health (
    provider          TEXT   NOT NULL,
    model             TEXT   NOT NULL,
    minute            BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    failures          BIGINT NOT NULL DEFAULT 0,
    rate_limited      BIGINT NOT NULL DEFAULT 0,
    latency_ms_sum    BIGINT NOT NULL DEFAULT 0,
    latency_count     BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, model, minute)
);

-- Prices per provider model, in micro-USD per million tokens.
CREATE TABLE prices (
    provider        TEXT   NOT NULL,
    model           TEXT   NOT NULL,
    input_micros    BIGINT NOT NULL,
    output_micros   BIGINT NOT NULL,
    PRIMARY KEY (provider, model)
);
