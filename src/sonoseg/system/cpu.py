"""CPU model and the instruction-set features that change int8 numerics and speed.

Why it matters: onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights. With
VNNI (AVX512-VNNI or AVX-VNNI) the products are accumulated exactly in 32 bits; without it (plain
AVX2 / AVX-512F) the kernel uses ``vpmaddubsw``, whose int16 pair sums saturate when weights use
the full int8 range, so masks can differ from fp32. :mod:`sonoseg.runtime.quantize` picks its
scheme from :func:`has_vnni`.

Read from ``/proc/cpuinfo`` (Linux); elsewhere only the model string from :mod:`platform` is
known and the features are reported as absent, which selects the scheme that is exact everywhere.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str
    flags: frozenset = field(default_factory=frozenset, repr=False)

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        return any(f in self.flags for f in VNNI_FLAGS)

    def summary(self) -> dict:
        """What benchmarks and model files record: model string and the features that matter."""
        return {"model": self.model, "arch": self.arch, "avx2": self.avx2, "avx512": self.avx512,
                "vnni": self.vnni}

    def label(self) -> str:
        """Short human label, e.g. 'AMD EPYC (AVX2)' or 'Intel Xeon ... (AVX-512 VNNI)'."""
        isa = "AVX-512" if self.avx512 else "AVX2" if self.avx2 else self.arch
        return f"{self.model} ({isa}{' VNNI' if self.vnni else ''})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor block of a ``/proc/cpuinfo`` text."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return CpuInfo(model or platform.processor() or "unknown", platform.machine() or "unknown", flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return CpuInfo(platform.processor() or "unknown", platform.machine() or "unknown", frozenset())


def has_vnni(cpu: CpuInfo | None = None) -> bool:
    return (cpu or cpu_info()).vnni
