ALTER TABLE llm_providers ADD COLUMN secret bytea;
