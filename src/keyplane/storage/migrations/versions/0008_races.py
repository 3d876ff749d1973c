"""security: a key has at most one successor (a unique index on rolled_from_id)

Before this index two concurrent rolls of one key could both succeed. A
database that already holds such a fork keeps its oldest successor linked;
the later ones stay as they are (live or not) but lose the link, since no
key may name two successors. The audit log still records every roll.

Revision ID: 0008_races
Revises: 0007_organization_names
Create Date: 2026-12-02 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_races"
down_revision = "0007_organization_names"
branch_labels = None
depends_on = None

INDEX = "ix_api_keys_rolled_from_id"


def upgrade() -> None:
    api_keys = sa.table(
        "api_keys", sa.column("pk", sa.Integer()), sa.column("rolled_from_id", sa.String())
    )
    first_successors = (
        sa.select(sa.func.min(api_keys.c.pk))
        .where(api_keys.c.rolled_from_id.is_not(None))
        .group_by(api_keys.c.rolled_from_id)
    )
    op.execute(
        api_keys.update()
        .where(
            api_keys.c.rolled_from_id.is_not(None),
            api_keys.c.pk.not_in(sa.select(first_successors.subquery().c[0])),
        )
        .values(rolled_from_id=None)
    )
    op.drop_index(INDEX, table_name="api_keys")
    op.create_index(INDEX, "api_keys", ["rolled_from_id"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="api_keys")
    op.create_index(INDEX, "api_keys", ["rolled_from_id"], unique=False)
