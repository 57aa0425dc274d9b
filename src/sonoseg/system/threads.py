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


def _running_others() -> Optional[int]:
    """Threads of other processes running or runnable now: /proc/loadavg's running count minus this
    process's own running threads (None where /proc is not there)."""
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        tasks = list(Path("/proc/self/task").iterdir())
    except (OSError, IndexError, ValueError):
        return None
    own = 0
    for t in tasks:
        try:
            own += (t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return max(0, running - own)


def sustained_load(average: Optional[float] = None, now: Optional[list] = None, samples: int = 3) -> Optional[float]:
    """Load that other processes keep up: the 1-minute load average, capped by the threads of other
    processes running right now (fewest of ``samples`` readings 20 ms apart).

    The average alone remembers the past minute, so the user's own job that just finished (a training
    run, the previous verb) read as load 0.6 on an idle machine and took a core away from the default
    and warned about oversubscription; the cap counts only work that is still running."""
    import time

    average = _load() if average is None else average
    if average is None:
        return None
    if now is None:
        now = []
        for i in range(samples):
            if i:
                time.sleep(0.02)
            now.append(_running_others())
    if not now or any(n is None for n in now):
        return average
    return min(float(average), float(min(now)))


def default_threads(cpus: Optional[int] = None, load: Optional[float] = None) -> int:
    """``$SONOSEG_THREADS`` if set, else the available cores minus the ones other work already
    keeps busy (:func:`sustained_load`, rounded), at least 1."""
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
    load = sustained_load() if load is None else load
    busy = int(round(load)) if load is not None else 0
    return max(1, cpus - busy)


def oversubscription_warning(threads: int, cpus: Optional[int] = None, load: Optional[float] = None) -> Optional[str]:
    """A one-line warning when ``threads`` plus the load other processes keep up (:func:`sustained_load`)
    exceed the available cores."""
    cpus = available_cpus() if cpus is None else cpus
    load = sustained_load() if load is None else load
    if threads <= 1 or load is None:
        return None
    if threads > cpus or threads + load > cpus + 0.5:
        return (f"{threads} threads on {cpus} available core(s) with load {load:.1f} from other processes: "
                f"expect it to be slower than fewer threads (set --threads or ${ENV}, e.g. 1)")
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
