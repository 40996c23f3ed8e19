TRUNCATE llm_providers, mcp_servers;
