ALTER TABLE llm_providers ADD COLUMN retries integer NOT NULL DEFAULT 0;
