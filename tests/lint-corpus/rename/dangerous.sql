ALTER TABLE llm_providers RENAME COLUMN api_key_encrypted TO secret;
