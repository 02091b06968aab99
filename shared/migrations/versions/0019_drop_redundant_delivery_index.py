"""Drops `ix_deliveries_company_event (company_id, event_id)`: `uq_delivery_event_subscription
(company_id, event_id, subscription_id)` begins with the same columns and serves every lookup it
served, so it only cost one more index entry to write for every delivery the matcher inserts
(issue 13).

Revision ID: 0019
Revises: 0018
"""
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_company_event", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_company_event", "deliveries", ["company_id", "event_id"], unique=False)
