"""The service layer: transactions, caching, usage buffering and audit. Knows nothing of HTTP."""
