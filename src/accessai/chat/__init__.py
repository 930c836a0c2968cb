"""Token-priced chat: an OpenAI-compatible /v1/chat/completions billed by hold and settle."""
