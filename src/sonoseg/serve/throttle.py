"""Failed-login throttling that cannot lock the real owner of an account out.

* per (user name, client): after ``attempts`` failures that pair is refused (429) for ``lock_s``,
  doubling with every further failure up to ``max_lock_s``; a success forgets its failures;
* per user name, from all clients: past ``user_ceiling`` failures within ``lock_s`` every attempt for
  that name is slowed by ``slow_s`` but still answered, so the real user, from another client, gets in;
* per client, for all names: past ``client_ceiling`` failures within ``lock_s`` that client is refused
  (one address spraying many names).

In-process state (one ``sonoseg serve`` process per data folder), touched from the event loop only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

MAX_ENTRIES = 50_000  # a flood of made-up names cannot grow the tables without bound


@dataclass(frozen=True)
class LoginPolicy:
    attempts: int = 5
    lock_s: float = 60.0
    max_lock_s: float = 3600.0
    user_ceiling: int = 20
    slow_s: float = 2.0
    client_ceiling: int = 50


class LoginLimiter:
    def __init__(self, policy: LoginPolicy = LoginPolicy(), clock: Callable[[], float] = time.monotonic):
        self.p, self.clock = policy, clock
        self._pairs: dict[tuple[str, str], tuple[int, float]] = {}  # (user, client) -> (failures, last)
        self._users: dict[str, list[float]] = {}
        self._clients: dict[str, list[float]] = {}

    def _lock_for(self, failures: int) -> float:
        return min(self.p.max_lock_s, self.p.lock_s * 2 ** (failures - self.p.attempts))

    def _recent(self, table: dict, key: str, now: float) -> list[float]:
        ts = [t for t in table.get(key, ()) if now - t < self.p.lock_s]
        if ts:
            table[key] = ts
        else:
            table.pop(key, None)
        return ts

    def retry_after(self, user: str, client: str) -> Optional[int]:
        """Seconds until this (user, client) may try again; None when it may try now."""
        now = self.clock()
        waits = []
        n, last = self._pairs.get((user, client), (0, 0.0))
        if n >= self.p.attempts and now - last < self._lock_for(n):
            waits.append(self._lock_for(n) - (now - last))
        ts = self._recent(self._clients, client, now)
        if len(ts) >= self.p.client_ceiling:
            waits.append(self.p.lock_s - (now - ts[0]))
        return int(max(waits)) + 1 if waits else None

    def delay(self, user: str) -> float:
        """Seconds to wait before answering an attempt for this user name (0: none)."""
        return self.p.slow_s if len(self._recent(self._users, user, self.clock())) >= self.p.user_ceiling else 0.0

    def failed(self, user: str, client: str) -> None:
        now = self.clock()
        self._prune(now)
        n, last = self._pairs.get((user, client), (0, now))
        self._pairs[(user, client)] = (n + 1 if now - last < self.p.max_lock_s else 1, now)
        for table, key in ((self._users, user), (self._clients, client)):
            ts = self._recent(table, key, now)
            ts.append(now)
            table[key] = ts

    def succeeded(self, user: str, client: str) -> None:
        self._pairs.pop((user, client), None)

    def _prune(self, now: float) -> None:
        if len(self._pairs) > MAX_ENTRIES:
            self._pairs = {k: v for k, v in self._pairs.items() if now - v[1] < self.p.max_lock_s}
        for table in (self._users, self._clients):
            if len(table) > MAX_ENTRIES:
                for key in list(table):
                    self._recent(table, key, now)
