"""security: indexes for the job limits and the fair claim (issue 11)

A submission counts its key's and its project's open jobs, and a claim looks
up each waiting project's running jobs and last start; these indexes keep
those lookups to a few index entries however many finished jobs a project keeps.

Revision ID: 0006_jobs
Revises: 0005
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006_jobs"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_project_id_status", ["project_id", "status"], unique=False)
        batch_op.create_index("ix_jobs_key_id_status", ["key_id", "status"], unique=False)
        batch_op.create_index(
            "ix_jobs_project_id_started_at", ["project_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_project_id_started_at")
        batch_op.drop_index("ix_jobs_key_id_status")
        batch_op.drop_index("ix_jobs_project_id_status")
