"""The IonQ-compatible v0.4 surface, mounted at ``/v0.4``: IonQ's own clients run against it."""

from keyplane.ionq.app import create_ionq_app

__all__ = ["create_ionq_app"]
