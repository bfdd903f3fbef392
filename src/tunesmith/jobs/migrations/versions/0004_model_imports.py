"""Model import jobs (CreateModelImportJob): a result folder registered as a custom model.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_imports",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("arn", sa.String(1011), nullable=False, unique=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("client_token", sa.String(256), nullable=True, unique=True),
        sa.Column("model_name", sa.String(63), nullable=False),
        sa.Column("model_arn", sa.String(1011), nullable=True),
        sa.Column("role_arn", sa.String(2048), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_model_imports_created_id", "model_imports", ["created", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_imports_created_id", table_name="model_imports")
    op.drop_table("model_imports")
