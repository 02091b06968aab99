"""`notice_claims`: when a notice sent at most once a period per configuration
(`delivery.exhausted`, `oauth.token_refused`) was last sent, by any dispatcher replica. Every
replica now shares a configuration's deliveries (shared/messages.py delivery_key), so a period
kept in each replica's memory alone would let each of them send one. `pending`: what the
replicas that did not send the last notice counted since (exhausted deliveries), for the next.

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notice_claims",
        sa.Column("delivery_configuration_id", sa.String(),
                  sa.ForeignKey("delivery_configurations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_type", sa.String(), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("notice_claims")
