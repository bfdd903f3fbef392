"""Jobs, custom models and deployments: the schema of the last release without migrations.

A database that release created (``create_all``, no ``alembic_version``) already holds these
tables: only what it may lack is added (the ``details`` column and the one-active-job-per-model
index came late), so every row stays.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from tunesmith.statuses import JobStatus

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The active statuses as this revision knew them (a later change to the set needs its own revision).
ACTIVE_JOB = sa.text(f"status IN ('{JobStatus.IN_PROGRESS}', '{JobStatus.STOPPING}')")


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if "jobs" not in tables:
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(12), primary_key=True),
            sa.Column("arn", sa.String(1011), nullable=False, unique=True),
            sa.Column("name", sa.String(63), nullable=False, unique=True),
            sa.Column("client_token", sa.String(256), nullable=True, unique=True),
            sa.Column("request", sa.JSON(), nullable=False),
            sa.Column("base_model_arn", sa.String(1011), nullable=False),
            sa.Column("customization_type", sa.String(32), nullable=False),
            sa.Column("output_model_name", sa.String(63), nullable=False),
            sa.Column("output_model_arn", sa.String(1011), nullable=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("phases", sa.JSON(), nullable=False),
            sa.Column("failure_message", sa.Text(), nullable=True),
            sa.Column("training_loss", sa.Float(), nullable=True),
            sa.Column("validation_losses", sa.JSON(), nullable=False),
            sa.Column("checkpoints", sa.JSON(), nullable=False),
            sa.Column("stop_requested", sa.Boolean(), nullable=False),
            sa.Column("worker_pid", sa.Integer(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
            sa.Column("details", sa.JSON(), nullable=True),
        )
    elif "details" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}:
        with op.batch_alter_table("jobs") as batch:
            batch.add_column(sa.Column("details", sa.JSON(), nullable=True))
    if "uq_jobs_active_model_name" not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("jobs")}:
        op.create_index("uq_jobs_active_model_name", "jobs", ["output_model_name"], unique=True,
                        sqlite_where=ACTIVE_JOB, postgresql_where=ACTIVE_JOB)
    if "custom_models" not in tables:
        op.create_table(
            "custom_models",
            sa.Column("id", sa.String(12), primary_key=True),
            sa.Column("arn", sa.String(1011), nullable=False, unique=True),
            sa.Column("name", sa.String(63), nullable=False, unique=True),
            sa.Column("job_arn", sa.String(1011), nullable=False),
            sa.Column("job_name", sa.String(63), nullable=False),
            sa.Column("base_model_arn", sa.String(1011), nullable=False),
            sa.Column("customization_type", sa.String(32), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("folder", sa.Text(), nullable=True),
            sa.Column("details", sa.JSON(), nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        )
    if "deployments" not in tables:
        op.create_table(
            "deployments",
            sa.Column("id", sa.String(12), primary_key=True),
            sa.Column("arn", sa.String(1011), nullable=False, unique=True),
            sa.Column("name", sa.String(63), nullable=False, unique=True),
            sa.Column("model_arn", sa.String(1011), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("client_token", sa.String(256), nullable=True, unique=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("modified", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("deployments")
    op.drop_table("custom_models")
    op.drop_index("uq_jobs_active_model_name", table_name="jobs")
    op.drop_table("jobs")
