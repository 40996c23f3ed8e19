ALTER TABLE llm_providers DROP COLUMN legacy_key;
