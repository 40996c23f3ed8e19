-- everruns-admin:allow drop-column
ALTER TABLE llm_providers DROP COLUMN legacy_key;
