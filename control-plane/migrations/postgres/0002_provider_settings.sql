-- Kind-specific provider settings (preset, api_version, ...) as one JSON object.
ALTER TABLE providers ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
