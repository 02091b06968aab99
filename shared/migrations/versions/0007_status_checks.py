"""The database refuses a status no code knows: CHECK constraints on delivery, attempt and buffer
file statuses. The values are spelled out here, as they were when this revision was written;
tests/test_statuses.py fails when shared/statuses.py and the live schema disagree, so a new
status needs a migration of its own.

Added NOT VALID and then validated, so existing rows are checked without holding a lock that
blocks writes for the whole scan.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHECKS = {
    ("deliveries", "ck_deliveries_status"):
        "status IN ('queued', 'pending_retry', 'buffered', 'delivered', 'failed', 'handled')",
    ("delivery_attempts", "ck_delivery_attempts_outcome"): "outcome IN ('success', 'retryable', 'failed')",
    ("buffer_files", "ck_buffer_files_status"): "status IN ('writing', 'stored', 'failed', 'empty')",
}


def upgrade() -> None:
    for (table, name), condition in CHECKS.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for table, name in CHECKS:
        op.drop_constraint(name, table)
