DROP INDEX llm_providers_status_idx;
