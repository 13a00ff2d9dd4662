-- What an admin allows a user, over all of its keys: the models its keys may use (patterns
-- like keys': exact names, "*", or a prefix ending in "*"; each key's scope is its own within
-- this one) and spend caps per UTC day and month in micro-USD. Users cannot change them.
ALTER TABLE users ADD COLUMN models TEXT NOT NULL DEFAULT '["*"]';
ALTER TABLE users ADD COLUMN daily_budget_micros BIGINT;
ALTER TABLE users ADD COLUMN monthly_budget_micros BIGINT;
