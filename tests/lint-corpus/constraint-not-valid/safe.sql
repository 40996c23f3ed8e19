ALTER TABLE mcp_servers ADD CONSTRAINT mcp_servers_provider_fk FOREIGN KEY (provider_id) REFERENCES llm_providers (id) NOT VALID;
