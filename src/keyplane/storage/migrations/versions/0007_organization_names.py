"""security: organization names are no longer unique (sign-up told which ones existed)

Revision ID: 0007_organization_names
Revises: 0006_jobs
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0007_organization_names"
down_revision = "0006_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_constraint(op.f("uq_organizations_name"), type_="unique")
        batch.create_index(op.f("ix_organizations_name"), ["name"], unique=False)


def downgrade() -> None:
    # Fails if two organizations share a name: rename one first.
    with op.batch_alter_table("organizations") as batch:
        batch.drop_index(op.f("ix_organizations_name"))
        batch.create_unique_constraint(op.f("uq_organizations_name"), ["name"])
