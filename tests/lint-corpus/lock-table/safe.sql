UPDATE llm_providers SET status = 'active' WHERE status IS NULL;
