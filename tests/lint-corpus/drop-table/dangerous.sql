DROP TABLE legacy_tokens;
