"""Paused delivery configurations: their deliveries are `held` (nothing is sent) until resumed.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATUSES_BEFORE = "'queued', 'pending_retry', 'buffered', 'delivered', 'failed', 'handled'"


def upgrade() -> None:
    op.add_column("delivery_configurations",
                  sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.drop_constraint("ck_deliveries_status", "deliveries")
    op.execute(f"ALTER TABLE deliveries ADD CONSTRAINT ck_deliveries_status "
               f"CHECK (status IN ({STATUSES_BEFORE}, 'held')) NOT VALID")
    op.execute("ALTER TABLE deliveries VALIDATE CONSTRAINT ck_deliveries_status")
    # Resume releases a configuration's held deliveries oldest first.
    op.create_index("ix_deliveries_held", "deliveries", ["delivery_configuration_id", "created_at"],
                    postgresql_where=sa.text("status = 'held'"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_held", table_name="deliveries")
    op.execute("UPDATE deliveries SET status = 'queued', next_attempt_at = now() WHERE status = 'held'")
    op.drop_constraint("ck_deliveries_status", "deliveries")
    op.execute(f"ALTER TABLE deliveries ADD CONSTRAINT ck_deliveries_status CHECK (status IN ({STATUSES_BEFORE}))")
    op.drop_column("delivery_configurations", "paused")
