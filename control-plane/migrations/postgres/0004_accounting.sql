-- Every request's record, written once per request id (the filter's id; records sent twice
-- are stored once). Times in Unix milliseconds; money in micro-USD.
CREATE TABLE request_log (
    request_id         TEXT PRIMARY KEY,
    at_ms              BIGINT NOT NULL,
    api                TEXT   NOT NULL DEFAULT '',
    status             BIGINT NOT NULL DEFAULT 0,
    error              TEXT   NOT NULL DEFAULT '',
    key_id             TEXT   NOT NULL DEFAULT '',
    user_name          TEXT   NOT NULL DEFAULT '',
    model              TEXT   NOT NULL DEFAULT '',
    provider           TEXT   NOT NULL DEFAULT '',
    upstream_model     TEXT   NOT NULL DEFAULT '',
    attempts           BIGINT NOT NULL DEFAULT 0,
    failed             TEXT   NOT NULL DEFAULT '',
    stream             BIGINT NOT NULL DEFAULT 0,
    complete           BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_micros        BIGINT,
    duration_ms        BIGINT,
    upstream_ms        BIGINT,
    ttft_ms            BIGINT
);
CREATE INDEX request_log_at ON request_log (at_ms);
CREATE INDEX request_log_key ON request_log (key_id, at_ms);
CREATE INDEX request_log_user ON request_log (user_name, at_ms);
CREATE INDEX request_log_model ON request_log (model, at_ms);
CREATE INDEX request_log_provider ON request_log (provider, at_ms);

-- Prices by token kind (micro-USD per million tokens); unset: the input (cache) or output
-- (reasoning) price.
ALTER TABLE prices ADD COLUMN cache_read_micros BIGINT;
ALTER TABLE prices ADD COLUMN cache_write_micros BIGINT;
ALTER TABLE prices ADD COLUMN reasoning_micros BIGINT;

-- Spend caps per gateway key, and request/token limits per user.
ALTER TABLE api_keys ADD COLUMN daily_budget_micros BIGINT;
ALTER TABLE api_keys ADD COLUMN monthly_budget_micros BIGINT;
ALTER TABLE users ADD COLUMN rpm BIGINT;
ALTER TABLE users ADD COLUMN tpm BIGINT;

-- Credit accounts (one per user that is metered) and their ledger: every change of a balance
-- is an entry; usage debits name their request, once.
CREATE TABLE credit_accounts (
    user_id             TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    balance_micros      BIGINT NOT NULL DEFAULT 0,
    low_balance_micros  BIGINT,
    topup_below_micros  BIGINT,
    topup_amount_micros BIGINT,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE credit_ledger (
    id            TEXT PRIMARY KEY,
    user_id       TEXT   NOT NULL,
    amount_micros BIGINT NOT NULL,
    kind          TEXT   NOT NULL,
    request_id    TEXT UNIQUE,
    note          TEXT   NOT NULL DEFAULT '',
    at_ms         BIGINT NOT NULL
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id, at_ms);
