-- everruns-admin:allow drop-column no release reads legacy_key since 2026-10 (#412)
ALTER TABLE llm_providers DROP COLUMN legacy_key;
