"""Event contracts: each event type may carry a JSON Schema and an example, and each topic says
how ingest treats data that violates the schema (off, warn, enforce).

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_types", sa.Column("json_schema", postgresql.JSONB(), nullable=True))
    op.add_column("event_types", sa.Column("example", postgresql.JSONB(), nullable=True))
    op.add_column("topics", sa.Column("validation_mode", sa.String(), nullable=False, server_default="off"))
    op.create_check_constraint("ck_topics_validation_mode", "topics", "validation_mode IN ('off', 'warn', 'enforce')")


def downgrade() -> None:
    op.drop_constraint("ck_topics_validation_mode", "topics")
    op.drop_column("topics", "validation_mode")
    op.drop_column("event_types", "example")
    op.drop_column("event_types", "json_schema")
