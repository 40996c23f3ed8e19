-- LLM providers the application talks to. `api_key_encrypted` holds an envelope
-- payload (format v1, see README); `api_key_set` lets the UI show that a key exists
-- without reading it.
CREATE TABLE llm_providers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name TEXT NOT NULL,
    provider_type TEXT NOT NULL
        CHECK (provider_type IN ('openai', 'anthropic', 'azure_openai', 'llmsim')),
    base_url TEXT,
    api_key_encrypted BYTEA,
    api_key_set BOOLEAN NOT NULL DEFAULT FALSE,
    settings JSONB NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX llm_providers_name_key ON llm_providers (name);
