"""The REST management API under ``/api/v1``, plus health checks."""
