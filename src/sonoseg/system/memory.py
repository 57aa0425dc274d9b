"""Keep glibc from returning every large temporary to the kernel.

A 256x256 frame's pre/postprocessing allocates ~1 MB arrays (the ROI as float32, the probability
map in original pixels). glibc serves blocks above M_MMAP_THRESHOLD with a fresh mmap and unmaps
them on free, so every frame pays page faults for each of them: on a 2-core AMD EPYC that made
``normalize`` 1.6 ms instead of 0.12 ms and ``GridTransform.to_original`` 1.8 ms instead of 0.2 ms.
Raising the mmap and trim thresholds (what ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
do from the environment) keeps those pages in the heap for reuse. The results are bit-identical;
only the allocator's bookkeeping changes. The cost is that up to ``trim`` bytes of freed memory stay
with the process. No-op off glibc, or when ``SONOSEG_MALLOC_TUNE=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 128 << 20
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the thresholds once per process; True when they are in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SONOSEG_MALLOC_TUNE", "1").strip() == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
