ALTER TABLE llm_providers ADD CONSTRAINT llm_providers_status_nn CHECK (status IS NOT NULL) NOT VALID;
ALTER TABLE llm_providers VALIDATE CONSTRAINT llm_providers_status_nn;
ALTER TABLE llm_providers ALTER COLUMN status SET NOT NULL;
