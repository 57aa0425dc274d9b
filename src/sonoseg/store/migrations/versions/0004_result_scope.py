"""Results remember whether their input was in the model's scope, and why not: an out-of-scope result
carries no class (label NULL) and is kept out of the class and measurement filters.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as t:  # batch: SQLite cannot ALTER most things in place
        t.add_column(sa.Column("in_scope", sa.Boolean, nullable=True))  # NULL: no domain check ran
        t.add_column(sa.Column("scope_reason", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as t:
        t.drop_column("scope_reason")
        t.drop_column("in_scope")
