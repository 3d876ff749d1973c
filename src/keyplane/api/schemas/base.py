"""What every body of the API shares: the time type, strict requests, answers read from
service records, and the page of a list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


def _iso_8601_only(value: Any) -> Any:
    # Pydantic would also take a number (or a numeric string) as Unix time; the
    # schema promises an RFC 3339 date-time, so hold to it.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("a time must be an RFC 3339 date-time string")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("a time must be an RFC 3339 date-time string")
    return value


#: A timestamp with a time zone, normalized to UTC; one that overflows is a 422, not a
#: 500; a number is a 422, not Unix time.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only), AfterValidator(_to_utc)]


class Strict(BaseModel):
    """A request body: a member the API does not know is a 422, not ignored."""

    model_config = ConfigDict(extra="forbid")


class FromRecord(BaseModel):
    """An answer read from a service record's attributes (``Model.model_validate(record)``):
    the record's fields are the answer's, so they are written down once, here, as the
    wire format; only what differs (a renamed or computed field) is spelled out."""

    model_config = ConfigDict(from_attributes=True)


# One page of a list, read from ``service.records.Page``. (A docstring here would become
# the description of every page schema in the OpenAPI document.)
class PageOut(FromRecord, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last."
    )


class Health(BaseModel):
    status: Literal["ok"]
