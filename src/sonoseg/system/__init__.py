"""Facts about the machine sonoseg runs on: CPU instruction sets (which int8 scheme is exact here)
and how many cores this process may really use (affinity, cgroup quota, load)."""

from sonoseg.system.cpu import CpuInfo, cpu_info, has_vnni
from sonoseg.system.threads import apply_threads, available_cpus, default_threads, resolve_threads

__all__ = ["CpuInfo", "apply_threads", "available_cpus", "cpu_info", "default_threads", "has_vnni",
           "resolve_threads"]
