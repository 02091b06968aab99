"""The system topic EM-Operations in the catalog, and endpoint health: since when each endpoint
has been failing without a success in between, what was announced about it, so that an endpoint
failing for days is disabled and the company is told.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

EVENT_TYPES = [
    ("endpoint.failing", "An endpoint has been failing without a success for longer than a threshold"),
    ("endpoint.disabled", "An endpoint was disabled: it answered 410 Gone, or failed continuously for too long"),
    ("endpoint.recovered", "An endpoint that was announced failing succeeded again"),
    ("delivery.exhausted", "A delivery used up its retry schedule and failed"),
    ("buffer_file.failed", "A scheduled configuration's buffer file could not be written"),
    ("oauth.token_refused", "The token endpoint refused the configuration's OAuth credentials"),
]


def upgrade() -> None:
    op.execute("INSERT INTO topics (name, service, description, requires_event_type, broadcast) VALUES "
               "('EM-Operations', 'Event Manager', 'What Event Manager tells a company about its own deliveries: "
               "failing, disabled and recovered endpoints, exhausted deliveries, failed buffer files', false, false)")
    event_types = sa.table("event_types", sa.column("topic"), sa.column("name"), sa.column("description"))
    op.bulk_insert(event_types, [{"topic": "EM-Operations", "name": name, "description": description}
                                 for name, description in EVENT_TYPES])
    op.create_table(
        "endpoint_health",
        sa.Column("delivery_configuration_id", sa.String(),
                  sa.ForeignKey("delivery_configurations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("endpoint_id", sa.String(), primary_key=True),
        sa.Column("company_id", sa.String(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("announced_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_endpoint_health_failing", "endpoint_health", ["failing_since"],
                    postgresql_where=sa.text("failing_since IS NOT NULL OR announced_seconds > 0"))


def downgrade() -> None:
    op.drop_index("ix_endpoint_health_failing", table_name="endpoint_health")
    op.drop_table("endpoint_health")
    op.execute("DELETE FROM event_types WHERE topic = 'EM-Operations'")
    op.execute("DELETE FROM topics WHERE name = 'EM-Operations'")
