ALTER TABLE llm_providers ADD COLUMN token uuid DEFAULT gen_random_uuid();
