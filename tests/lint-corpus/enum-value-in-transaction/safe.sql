-- no-transaction
ALTER TYPE provider_kind ADD VALUE IF NOT EXISTS 'gemini';
