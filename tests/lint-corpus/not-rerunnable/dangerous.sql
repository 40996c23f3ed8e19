-- no-transaction
CREATE INDEX CONCURRENTLY llm_providers_type_idx ON llm_providers (provider_type);
