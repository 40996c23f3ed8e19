TRUNCATE llm_providers CASCADE;
