"""GitHub secret scanning: the report it sends, and the verdicts read from the service's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keyplane.api.schemas.base import FromRecord


class LeakReportItem(BaseModel):
    """One match in a GitHub secret scanning report.

    Unknown fields are ignored, not refused: GitHub may add fields to its
    reports, and a refused report would leave a leaked key alive.
    """

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=1000)
    type: str = Field(max_length=100)
    url: str = Field(max_length=4000)
    source: str | None = Field(default=None, max_length=100)


# From ``service.keys.leaks.TokenVerdict``.
class LeakVerdictOut(FromRecord):
    token_hash: str = Field(description="SHA-256 of the reported token, hex")
    token_type: str
    label: Literal["true_positive", "false_positive"]
