LOCK TABLE llm_providers IN ACCESS EXCLUSIVE MODE;
UPDATE llm_providers SET status = 'active' WHERE status IS NULL;
