"""Replay jobs: a bulk action of kind `replay` keeps its counts (events that matched, already had
a delivery for the subscription, deliveries created) in `bulk_actions.result`.

No new guard is needed against replaying twice: `deliveries` has had the unique constraint
`uq_delivery_event_subscription (company_id, event_id, subscription_id)` since 0001, so a replay
inserts with ON CONFLICT DO NOTHING, as the matcher does, and an event gets at most one delivery
per subscription whoever creates it first.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bulk_actions", sa.Column("result", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("bulk_actions", "result")
