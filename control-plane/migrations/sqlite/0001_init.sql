CREATE TABLE providers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    models      TEXT NOT NULL DEFAULT '[]',
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE provider_keys (
    id            TEXT PRIMARY KEY,
    provider_id   TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    weight        INTEGER NOT NULL DEFAULT 1,
    qps           INTEGER,
    created_at    INTEGER NOT NULL,
    UNIQUE (provider_id, digest)
);

CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    strategy    TEXT NOT NULL,
    targets     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    prefix      TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    models      TEXT NOT NULL,
    rpm         INTEGER,
    tpm         INTEGER,
    credits     REAL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
