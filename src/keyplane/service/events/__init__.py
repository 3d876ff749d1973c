"""Key hygiene: events, their fan-out to webhooks and mail, policies, the scheduler."""
