-- no-transaction
-- Built concurrently so that production writes are not blocked while it builds;
-- CREATE INDEX CONCURRENTLY cannot run inside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_providers_status_idx ON llm_providers (status);
