"""What is counted: per-key rate limits and quotas, usage, failed keys and failed sign-ins."""
