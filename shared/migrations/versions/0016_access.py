"""Access (issue 16): manageable source tokens (rotation with overlap, disable, a set of
companies), company API keys with scopes, expiry, revocation and rotation with overlap, and the
key a console session was signed in with.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("previous_token_digest", sa.String(), nullable=True, unique=True))
    op.add_column("sources", sa.Column("previous_token_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sources", sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("sources", sa.Column("company_ids", postgresql.ARRAY(sa.String()), nullable=True))
    op.add_column("sources", sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                                       nullable=False))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("company_id", sa.String(), sa.ForeignKey("companies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("application_id", sa.String(), sa.ForeignKey("applications.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("key_digest", sa.String(), nullable=False, unique=True),
        sa.Column("previous_key_digest", sa.String(), nullable=True, unique=True),
        sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("scopes <@ ARRAY['read', 'write', 'bulk']::varchar[] AND cardinality(scopes) > 0",
                           name="ck_api_keys_scopes"),
    )
    op.create_index("ix_api_keys_company_id", "api_keys", ["company_id"])
    op.create_index("ix_api_keys_application_id", "api_keys", ["application_id"])
    op.add_column("console_sessions", sa.Column("api_key_id", sa.String(),
                                                sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True))
    op.create_index("ix_console_sessions_api_key_id", "console_sessions", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_api_key_id", table_name="console_sessions")
    op.drop_column("console_sessions", "api_key_id")
    op.drop_table("api_keys")
    for column in ("updated_at", "company_ids", "enabled", "previous_token_expires_at", "previous_token_digest"):
        op.drop_column("sources", column)
