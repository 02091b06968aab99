"""The W3C trace context an event arrived with (or ingest started), so retries, republished and
replayed deliveries, rebuilt from the database, stay in the event's trace (shared/tracing.py).
Null for events stored before this revision: their attempts start a new trace.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing, whatever the table's size.
    op.add_column("events", sa.Column("trace_parent", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "trace_parent")
