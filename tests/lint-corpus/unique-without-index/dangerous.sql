ALTER TABLE llm_providers ADD CONSTRAINT llm_providers_slug_key UNIQUE (slug);
