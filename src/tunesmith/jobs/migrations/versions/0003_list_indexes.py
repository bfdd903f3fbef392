"""Indexes for List pages and the supervisor's queue: a listing or a claim reads a page, not the table.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_created_id", "jobs", ["created", "id"])
    op.create_index("ix_jobs_status_created_id", "jobs", ["status", "created", "id"])
    op.create_index("ix_custom_models_created_id", "custom_models", ["created", "id"])


def downgrade() -> None:
    op.drop_index("ix_custom_models_created_id", table_name="custom_models")
    op.drop_index("ix_jobs_status_created_id", table_name="jobs")
    op.drop_index("ix_jobs_created_id", table_name="jobs")
