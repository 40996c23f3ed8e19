ALTER TABLE llm_providers ADD COLUMN legacy_note text;
