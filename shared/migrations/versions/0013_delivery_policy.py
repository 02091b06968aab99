"""Delivery policy per configuration (custom headers, timeout, method, retry schedule, which
status classes to retry), and the effective policy recorded with each attempt.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("delivery_configurations", sa.Column("policy", postgresql.JSONB(), nullable=True))
    op.add_column("delivery_attempts", sa.Column("policy", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery_attempts", "policy")
    op.drop_column("delivery_configurations", "policy")
