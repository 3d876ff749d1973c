"""Projects: the body that creates one, and the answer read from its record."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from keyplane.api.schemas.base import FromRecord, Strict


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)


# Read from ``service.records.ProjectRecord``. (No docstrings on the wire models: they
# would become descriptions in the OpenAPI document.)
class ProjectOut(FromRecord):
    id: str
    name: str
    organization_id: str
    created_at: datetime
    created_by: str
