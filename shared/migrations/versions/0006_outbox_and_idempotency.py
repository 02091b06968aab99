"""Ingest idempotency keys (an event id reused by another source, or with other content, is a
409 instead of silently suppressing an event) and the change outbox (change notifications
written in the transaction of the change, relayed to Kafka by the api).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_ids",
        # The company the event is for ('' for broadcast events) and the id its source gave it.
        sa.Column("company_key", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("digest", postgresql.BYTEA, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_ingest_ids_received", "ingest_ids", ["received_at"])
    # A broadcast event is stored under each recipient company with its own id: it must not take
    # an id a company event holds, nor a company event one a broadcast holds.
    op.create_index("ix_ingest_ids_id", "ingest_ids", ["id"])
    op.create_table(
        "change_outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("company_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("change_outbox")
    op.drop_index("ix_ingest_ids_id", table_name="ingest_ids")
    op.drop_index("ix_ingest_ids_received", table_name="ingest_ids")
    op.drop_table("ingest_ids")
