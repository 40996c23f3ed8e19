ALTER TYPE provider_kind ADD VALUE 'gemini';
