DROP VIEW IF EXISTS legacy_tokens_view;
