"""Tamper-evident audit trail: a chained HMAC per event (``mac``), existing events sealed in order with
the service's key; TRUNCATE refused on PostgreSQL (trigger, and the privilege revoked from the role
that owns the table). On SQLite the engine turns on recursive_triggers, so INSERT OR REPLACE's
implicit delete hits the 0002 trigger.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _seal_existing(key: bytes) -> None:
    """Seal the rows written before the chain existed, oldest first (the UPDATE trigger is lifted
    for this one transaction and restored before it ends)."""
    from sonoseg.store.audit import seal
    from sonoseg.store.models import AuditEvent

    bind = op.get_bind()
    t = AuditEvent.__table__
    rows = bind.execute(sa.select(t.c.id, t.c.at, t.c.actor, t.c.action, t.c.target, t.c.ip, t.c.outcome,
                                  t.c.detail).order_by(t.c.id)).all()
    if not rows:
        return
    if _pg():
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_no_update")
    else:
        op.execute("DROP TRIGGER audit_no_update")
    prev = None
    for r in rows:
        prev = seal(key, prev, r.at, r.actor, r.action, r.target, r.ip, r.outcome, r.detail)
        bind.execute(t.update().where(t.c.id == r.id).values(mac=prev))
    if _pg():
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_no_update")
    else:
        op.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events "
                   "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END")


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("mac", sa.String(64), nullable=True))
    key = context.config.attributes.get("audit_key")
    if key:
        _seal_existing(key)
    if _pg():
        op.execute("CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
        op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC, CURRENT_USER")


def downgrade() -> None:
    if _pg():
        op.execute("GRANT UPDATE, DELETE, TRUNCATE ON audit_events TO CURRENT_USER")
        op.execute("DROP TRIGGER audit_no_truncate ON audit_events")
    op.drop_column("audit_events", "mac")  # plain ALTER TABLE: a batch copy would drop the 0002 triggers
