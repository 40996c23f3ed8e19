-- no-transaction
REINDEX INDEX CONCURRENTLY llm_providers_status_idx;
