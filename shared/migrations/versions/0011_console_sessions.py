"""Console sessions: the web console's cookie sessions and the operator's one-time console links,
kept server-side so that any api replica can check them, sign-out ends them at once, and a link
works once (services/api/sessions.py).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        # SHA-256 of the cookie's (or the link's) random token: the token itself is never stored.
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("company_id", sa.String(), sa.ForeignKey("companies.id", ondelete="CASCADE"), nullable=True),
        sa.Column("application_id", sa.String(), sa.ForeignKey("applications.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("credential_digest", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('session', 'link')", name="ck_console_sessions_kind"),
        sa.CheckConstraint("role IN ('company', 'operator')", name="ck_console_sessions_role"),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])
    op.create_index("ix_console_sessions_company_id", "console_sessions", ["company_id"])
    op.create_index("ix_console_sessions_application_id", "console_sessions", ["application_id"])


def downgrade() -> None:
    op.drop_table("console_sessions")
