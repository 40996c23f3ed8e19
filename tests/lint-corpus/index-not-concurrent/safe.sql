-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_providers_type_idx ON llm_providers (provider_type);
