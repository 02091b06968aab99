"""Signing that rotates and test events: each company's ed25519 signing key (the private key
encrypted; the public key published), a configuration's opt-in to asymmetric (`v1a`) signatures,
and the attempts of test deliveries (kept apart from deliveries, so no counter or search sees them).

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("company_id", sa.String(), sa.ForeignKey("companies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("algorithm", sa.String(), nullable=False, server_default="ed25519"),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("company_id", name="uq_signing_keys_company_id"),
    )
    op.add_column("delivery_configurations", sa.Column("asymmetric_signing", sa.Boolean(), nullable=False,
                                                       server_default=sa.false()))
    op.create_table(
        "test_deliveries",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("company_id", sa.String(), sa.ForeignKey("companies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("delivery_configuration_id", sa.String(),
                  sa.ForeignKey("delivery_configurations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("attempts", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_test_deliveries_company_id", "test_deliveries", ["company_id"])
    op.create_index("ix_test_deliveries_delivery_configuration_id", "test_deliveries",
                    ["delivery_configuration_id"])


def downgrade() -> None:
    op.drop_table("test_deliveries")
    op.drop_column("delivery_configurations", "asymmetric_signing")
    op.drop_table("signing_keys")
