"""Append-only, tamper-evident audit trail: who did what to which internal id, when, from where.

The database refuses UPDATE/DELETE (and REPLACE on SQLite, TRUNCATE on PostgreSQL; migrations 0002,
0003). Beyond that, each row carries ``mac`` = HMAC-SHA256(key, previous row's mac + its own fields),
the key derived from the service secret: a row altered, inserted or removed in the middle breaks the
chain at that point, and nobody without the secret can re-seal it. ``verify`` walks the chain and
reports the first broken link; a break the service was told to accept is acknowledged by a sealed
``audit:acknowledge`` event, so later checks pass while still listing it. Removing the newest rows
leaves a valid shorter chain: compare ``sonoseg audit verify``'s head against a copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import timezone
from typing import Optional

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sonoseg.errors import SonosegError
from sonoseg.store.models import AuditEvent, utcnow

KEY_INFO = "sonoseg_audit_key"  # Session.info entry holding the chain key (set by Store)
PG_LOCK = 0x534F4E4F  # advisory lock: one appender at a time, so the chain never forks
ACK = "audit:acknowledge"


class AuditChainBroken(SonosegError):
    pass


def chain_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"audit-chain", hashlib.sha256).digest()


def _ts(at) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seal(key: bytes, prev: Optional[str], at, actor, action, target, ip, outcome, detail) -> str:
    fields = (prev or "", _ts(at), actor, action, target or "", ip or "", outcome, detail or "")
    return hmac.new(key, "\x1f".join(fields).encode(), hashlib.sha256).hexdigest()


def record(s: Session, actor: str, action: str, target: Optional[str] = None, ip: Optional[str] = None,
           outcome: str = "ok", detail: Optional[str] = None) -> None:
    key = s.info.get(KEY_INFO)
    if key is None:
        raise RuntimeError("audit events must be written through a Store session (it holds the chain key)")
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK})  # held until commit
    prev = s.scalar(select(AuditEvent.mac).order_by(AuditEvent.id.desc()).limit(1))
    e = AuditEvent(at=utcnow(), actor=actor[:80], action=action[:32], target=(target or None) and target[:80],
                   ip=(ip or None) and ip[:64], outcome=outcome[:16], detail=detail)
    e.mac = seal(key, prev, e.at, e.actor, e.action, e.target, e.ip, e.outcome, e.detail)
    s.add(e)
    s.flush()  # the next record() in this transaction chains onto this row


@dataclass
class ChainReport:
    events: int = 0
    unsealed: int = 0  # rows older than the chain (written before migration 0003, no key to seal them)
    breaks: list = field(default_factory=list)  # (event id, time, why), in chain order
    acknowledged: set = field(default_factory=set)
    head: Optional[tuple[int, str]] = None

    @property
    def open_breaks(self) -> list:
        return [b for b in self.breaks if b[0] not in self.acknowledged]

    @property
    def ok(self) -> bool:
        return not self.open_breaks

    def first_line(self) -> str:
        b = self.open_breaks[0]
        return (f"audit chain broken at event {b[0]} ({_ts(b[1])}): {b[2]}"
                + (f"; {len(self.open_breaks) - 1} more break(s) after it" if len(self.open_breaks) > 1 else ""))


def verify(s: Session, key: bytes) -> ChainReport:
    """Walk the whole chain in id order (streamed), re-anchoring after each break so one tampered
    row is reported once, not as the start of an endless break."""
    r, prev, started = ChainReport(), None, False
    cols = (AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.target, AuditEvent.ip,
            AuditEvent.outcome, AuditEvent.detail, AuditEvent.mac)
    for eid, at, actor, action, target, ip, outcome, detail, mac in s.execute(
            select(*cols).order_by(AuditEvent.id).execution_options(yield_per=2000)):
        r.events += 1
        if mac is None:
            if started:
                r.breaks.append((eid, at, "event without a MAC after the chain began (inserted by hand)"))
            else:
                r.unsealed += 1
            continue
        started = True
        if not hmac.compare_digest(mac, seal(key, prev, at, actor, action, target, ip, outcome, detail)):
            r.breaks.append((eid, at, "its MAC does not match: this event was altered, or the one before it "
                                      "was removed or altered"))
        elif action == ACK and detail and detail.startswith("event "):
            r.acknowledged.add(int(detail.split()[1]))
        prev = mac
        r.head = (eid, mac)
    return r


def acknowledge(s: Session, report: ChainReport, actor: str = "serve") -> None:
    """Record (sealed) that the service was told to start despite these breaks."""
    for eid, _, why in report.open_breaks:
        record(s, actor, ACK, f"audit:{eid}", "local", "accepted", f"event {eid} break accepted at start-up: {why}"[:300])
