"""When a buffer file was last (re)tried, so failed and abandoned files can be taken up again.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("buffer_files", sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_buffer_files_unfinished", "buffer_files", ["attempted_at"],
                    postgresql_where=sa.text("status IN ('failed', 'writing')"))


def downgrade() -> None:
    op.drop_index("ix_buffer_files_unfinished", table_name="buffer_files")
    op.drop_column("buffer_files", "attempted_at")
