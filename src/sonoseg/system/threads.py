"""One thread setting for every verb: ``--threads`` or ``$SONOSEG_THREADS``, else the cores this
process may actually use.

"Cores available" = the CPU affinity mask (``taskset``, container cpusets) capped by a cgroup CPU
quota (``cpu.max`` v2 or ``cpu.cfs_quota_us`` v1), not ``os.cpu_count()``, which counts the host.
On a machine already busy with other work, more threads than free cores make torch and
onnxruntime *slower* (threads spin waiting for each other): a 2-thread training ran 3-5x slower
than a 1-thread one on two busy cores. So the default also subtracts the load already present when
the process starts, and an explicit setting that oversubscribes the machine gets a warning.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional

from sonoseg.errors import ConfigError

ENV = "SONOSEG_THREADS"


def _cgroup_quota() -> Optional[float]:
    """CPUs allowed by the cgroup quota, or None when unlimited / unknown."""
    try:
        v2 = Path("/sys/fs/cgroup/cpu.max")
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        p = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.is_file() and p.is_file():
            quota = int(q.read_text())
            return None if quota <= 0 else quota / int(p.read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """Cores this process may run on: affinity mask capped by the cgroup quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def _load() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cpus: Optional[int] = None, load: Optional[float] = None) -> int:
    """``$SONOSEG_THREADS`` if set, else the available cores minus the ones other work already
    keeps busy (1-minute load average, rounded), at least 1."""
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ConfigError(f"${ENV}={env!r} is not a whole number of threads") from None
        if n < 1:
            raise ConfigError(f"${ENV}={env!r}: threads must be >= 1")
        return n
    cpus = available_cpus() if cpus is None else cpus
    load = _load() if load is None else load
    busy = int(round(load)) if load is not None else 0
    return max(1, cpus - busy)


def oversubscription_warning(threads: int, cpus: Optional[int] = None, load: Optional[float] = None) -> Optional[str]:
    """A one-line warning when ``threads`` plus the load already present exceed the available cores."""
    cpus = available_cpus() if cpus is None else cpus
    load = _load() if load is None else load
    if threads <= 1 or load is None:
        return None
    if threads > cpus or threads + load > cpus + 0.5:
        return (f"{threads} threads on {cpus} available core(s) with load {load:.1f} already: expect it to be "
                f"slower than fewer threads (set --threads or ${ENV}, e.g. 1)")
    return None


def resolve_threads(threads: Optional[int] = None, warn: Optional[Callable[[str], None]] = None) -> int:
    """The thread count to use: the explicit value, else :func:`default_threads`. ``warn`` receives
    the oversubscription warning for an explicit value, if any."""
    if threads is None:
        return default_threads()
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    msg = oversubscription_warning(threads)
    if msg and warn is not None:
        warn(msg)
    return int(threads)


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads (when torch is installed) and return the count, which
    onnxruntime sessions take as ``intra_op_num_threads``."""
    try:
        import torch
    except ImportError:
        return threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
