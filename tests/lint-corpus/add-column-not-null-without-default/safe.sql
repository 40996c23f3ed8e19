ALTER TABLE llm_providers ADD COLUMN region TEXT NOT NULL DEFAULT 'us-east-1';
