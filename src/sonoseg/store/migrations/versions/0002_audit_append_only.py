"""Make the audit log append-only in the database itself: triggers refuse UPDATE and DELETE.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_append_only() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql")
        for ev in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{ev.lower()} BEFORE {ev} ON audit_events "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
    else:
        for ev in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{ev.lower()} BEFORE {ev} ON audit_events "
                       "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END")


def downgrade() -> None:
    for ev in ("update", "delete"):
        op.execute(f"DROP TRIGGER audit_no_{ev} ON audit_events" if op.get_bind().dialect.name == "postgresql"
                   else f"DROP TRIGGER audit_no_{ev}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_append_only()")
