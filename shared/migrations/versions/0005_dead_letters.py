"""Dead letters: messages and rows a worker could not handle, set aside with the reason and the
original bytes so one bad input never stops or loops a shared worker. Operators list and requeue
them through /v1/admin/dead-letters.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("company_id", sa.String, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", postgresql.BYTEA, nullable=False),
        sa.Column("key", postgresql.BYTEA, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
