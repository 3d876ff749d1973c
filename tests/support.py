"""Helpers shared by the test suites."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from keyplane.service.services import BootstrapResult


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass(frozen=True)
class Tenant:
    """A bootstrapped organization: its ids and its management key (scope ``*``)."""

    organization_id: str
    project_id: str
    user_id: str
    key_id: str
    key: str

    @classmethod
    def of(cls, result: BootstrapResult) -> Tenant:
        return cls(
            organization_id=result.accounts.organization.id,
            project_id=result.accounts.project.id,
            user_id=result.accounts.owner.id,
            key_id=result.key.record.id,
            key=result.key.secret.reveal(),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
