"""The audit log (issue 16): one append-only row per change a company, an operator or a source
token made, with who, when, from where and the non-secret fields before and after. And rate
limits (shared/ratelimit.py): a company's own limit per API key, and the token buckets every
replica shares.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(), primary_key=True),
        # None for operator-wide changes (sources, topics); no foreign key, so the record of a
        # deleted company's changes outlives it until retention removes it.
        sa.Column("company_id", sa.String(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor_kind", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=True),
        sa.Column("actor_name", sa.String(), nullable=True),
        sa.Column("client_address", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=True),
        sa.Column("before", postgresql.JSONB(), nullable=True),
        sa.Column("after", postgresql.JSONB(), nullable=True),
    )
    op.create_index("ix_audit_log_company_occurred", "audit_log", ["company_id", "occurred_at", "id"])
    op.create_index("ix_audit_log_occurred", "audit_log", ["occurred_at", "id"])
    # Append-only: a record cannot be rewritten, even by the api's own database user. Retention
    # deletes old rows (services/scheduler/retention.py), so DELETE stays allowed.
    op.execute("""
        CREATE FUNCTION audit_log_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: UPDATE refused' USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log "
               "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_update()")

    # Requests per minute for each of the company's API keys; null: EM_API_RATE_LIMIT_PER_MINUTE.
    op.add_column("companies", sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True))
    # UNLOGGED: updated on every request, so no WAL for it; a crash empties it, which only forgets
    # recent counts. A row per limited subject (key:<id>, source:<id>, address:<ip>).
    op.create_table(
        "rate_limit_buckets",
        sa.Column("subject", sa.String(), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
    op.drop_column("companies", "rate_limit_per_minute")
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION audit_log_refuse_update()")
