ALTER TABLE mcp_servers ALTER COLUMN url TYPE varchar(200);
