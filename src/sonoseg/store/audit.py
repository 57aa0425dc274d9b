"""Append-only audit trail: who did what to which internal id, when, from where. The database
refuses UPDATE/DELETE on this table (migration 0002)."""

from __future__ import annotations

from typing import Optional

from sqlalchemy.orm import Session

from sonoseg.store.models import AuditEvent


def record(s: Session, actor: str, action: str, target: Optional[str] = None, ip: Optional[str] = None,
           outcome: str = "ok", detail: Optional[str] = None) -> None:
    s.add(AuditEvent(actor=actor[:80], action=action[:32], target=(target or None) and target[:80],
                     ip=(ip or None) and ip[:64], outcome=outcome[:16], detail=detail))
