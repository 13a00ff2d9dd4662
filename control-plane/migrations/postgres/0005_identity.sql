-- Identity: who may log in (argon2id password hash; users made by keys or config have none
-- and cannot), their role and status. A disabled user cannot log in and their gateway keys stop.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE users ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_email ON users (email);

-- Private providers: an owner (NULL: the operator's), who sees them (private: the owner and the
-- users it is shared with; public: every key), and the review of a submission to the public pool
-- ('' none, pending, approved, rejected).
ALTER TABLE providers ADD COLUMN owner_id TEXT REFERENCES users(id);
ALTER TABLE providers ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
ALTER TABLE providers ADD COLUMN review TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN review_note TEXT NOT NULL DEFAULT '';

CREATE TABLE provider_shares (
    provider_id TEXT   NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    user_id     TEXT   NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (provider_id, user_id)
);

-- Every change made through the admin API, and every sign-in: who, what, when, from where.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    ip         TEXT   NOT NULL,
    user_agent TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    status     BIGINT NOT NULL,
    detail     TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor, at_ms);
