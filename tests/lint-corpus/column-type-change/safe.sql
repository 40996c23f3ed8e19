ALTER TABLE mcp_servers ADD COLUMN url_v2 varchar(200);
