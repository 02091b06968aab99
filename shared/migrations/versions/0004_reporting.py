"""Reporting: delivery counters kept by statement-level triggers (the dashboard reads a few rows
instead of counting millions), last success/failure per configuration, bulk action jobs, and the
indexes search, endpoint health and retention need.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# One function for insert, update and delete: it nets the statement's transition tables, so an
# UPDATE that leaves the status alone (a retry's bookkeeping) writes no counter row at all.
COUNT_FUNCTION = """
CREATE FUNCTION em_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_status_counts AS c (delivery_configuration_id, status, count)
        SELECT delivery_configuration_id, status, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (delivery_configuration_id, status) DO UPDATE SET count = c.count + EXCLUDED.count;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE delivery_status_counts c SET count = c.count - o.n
        FROM (SELECT delivery_configuration_id, status, count(*) AS n FROM old_rows GROUP BY 1, 2) o
        WHERE c.delivery_configuration_id = o.delivery_configuration_id AND c.status = o.status;
    ELSE
        INSERT INTO delivery_status_counts AS c (delivery_configuration_id, status, count)
        SELECT delivery_configuration_id, status, sum(delta) FROM (
            SELECT delivery_configuration_id, status, 1 AS delta FROM new_rows
            UNION ALL
            SELECT delivery_configuration_id, status, -1 FROM old_rows
        ) changes GROUP BY 1, 2 HAVING sum(delta) <> 0 ORDER BY 1, 2
        ON CONFLICT (delivery_configuration_id, status) DO UPDATE SET count = c.count + EXCLUDED.count;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO delivery_configuration_activity AS a (delivery_configuration_id, last_success_at, last_failure_at)
        SELECT delivery_configuration_id,
               max(delivered_at) FILTER (WHERE status = 'delivered'),
               max(last_attempt_at) FILTER (WHERE status IN ('failed', 'pending_retry'))
        FROM new_rows WHERE status IN ('delivered', 'failed', 'pending_retry')
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (delivery_configuration_id) DO UPDATE SET
            last_success_at = GREATEST(a.last_success_at, EXCLUDED.last_success_at),
            last_failure_at = GREATEST(a.last_failure_at, EXCLUDED.last_failure_at);
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "delivery_status_counts",
        sa.Column("delivery_configuration_id", sa.String(), primary_key=True),
        sa.Column("status", sa.String(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "delivery_configuration_activity",
        sa.Column("delivery_configuration_id", sa.String(), primary_key=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("last_failure_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "bulk_actions",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("company_id", sa.String(), nullable=False, index=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("filter", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("processed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cursor", sa.String()),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.execute(COUNT_FUNCTION)
    op.execute("""CREATE TRIGGER em_count_delivery_inserts AFTER INSERT ON deliveries
                  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION em_count_deliveries()""")
    op.execute("""CREATE TRIGGER em_count_delivery_updates AFTER UPDATE ON deliveries
                  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                  FOR EACH STATEMENT EXECUTE FUNCTION em_count_deliveries()""")
    op.execute("""CREATE TRIGGER em_count_delivery_deletes AFTER DELETE ON deliveries
                  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION em_count_deliveries()""")
    op.create_index("ix_attempts_endpoint_health", "delivery_attempts", ["company_id", "endpoint_url", "started_at"])
    op.create_index("ix_events_received", "events", ["received_at"])
    op.create_index("ix_attempts_started", "delivery_attempts", ["started_at"])
    op.create_index("ix_deliveries_company_status", "deliveries", ["company_id", "status", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_company_status", table_name="deliveries")
    op.drop_index("ix_attempts_started", table_name="delivery_attempts")
    op.drop_index("ix_events_received", table_name="events")
    op.drop_index("ix_attempts_endpoint_health", table_name="delivery_attempts")
    for trigger in ("em_count_delivery_inserts", "em_count_delivery_updates", "em_count_delivery_deletes"):
        op.execute(f"DROP TRIGGER {trigger} ON deliveries")
    op.execute("DROP FUNCTION em_count_deliveries()")
    op.drop_table("bulk_actions")
    op.drop_table("delivery_configuration_activity")
    op.drop_table("delivery_status_counts")
