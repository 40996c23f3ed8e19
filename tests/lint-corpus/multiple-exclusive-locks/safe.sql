-- no-transaction
ALTER TABLE llm_providers ADD COLUMN region text;
ALTER TABLE mcp_servers ADD COLUMN region text;
