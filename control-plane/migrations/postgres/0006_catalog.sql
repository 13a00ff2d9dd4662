-- The models of each provider: listed in its static list, found by discovery, or both. Rows are
-- never deleted by discovery: a model a later listing no longer names is marked vanished (and
-- no longer served) and keeps its settings should it come back. `configured`: the config file
-- sets something of it (`model_settings`), which holds even before discovery finds it.
CREATE TABLE provider_models (
    provider_id             TEXT   NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    model                   TEXT   NOT NULL,
    static_listed           BIGINT NOT NULL DEFAULT 0,
    discovered              BIGINT NOT NULL DEFAULT 0,
    vanished_at             BIGINT,
    configured              BIGINT NOT NULL DEFAULT 0,
    enabled                 BIGINT NOT NULL DEFAULT 1,
    detected_tags           TEXT   NOT NULL DEFAULT '[]',
    tags_from_metadata      BIGINT NOT NULL DEFAULT 0,
    tags_override           TEXT,
    display_name            TEXT,
    context_window          BIGINT,
    context_window_override BIGINT,
    base_model              TEXT,
    created                 BIGINT NOT NULL,
    first_seen              BIGINT NOT NULL,
    seen_at                 BIGINT,
    PRIMARY KEY (provider_id, model)
);

-- More names for what clients may ask for: an exact name for another model name, or a glob
-- (`claude-*`) for a provider's models of matching names.
CREATE TABLE aliases (
    name       TEXT   PRIMARY KEY,
    target     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
