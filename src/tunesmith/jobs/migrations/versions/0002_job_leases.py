"""Job leases: the node and server that claimed a job, and until when (several servers, one database).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker_node", sa.String(255), nullable=True))
        batch.add_column(sa.Column("server_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expires")
        batch.drop_column("server_id")
        batch.drop_column("worker_node")
