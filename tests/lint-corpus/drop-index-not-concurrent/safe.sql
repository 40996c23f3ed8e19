-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS llm_providers_status_idx;
