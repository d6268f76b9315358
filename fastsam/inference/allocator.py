"""Keep freed memory in the process so that each image's tensors reuse pages instead of faulting in fresh ones.

glibc's malloc hands large blocks back to the kernel when they are freed (``mmap`` above a threshold, heap
trimming below it), so every forward pass and every mask pass faults its activations in again, page by page. On
the 2-core VMs we measure on, a fault costs 1-2.5 us: 10-16 thousand faults per FastSAM-s pass at 1024 were
5-7% of the network's time. Raising glibc's thresholds (``mallopt``) keeps those pages mapped for the next pass;
the process's peak memory is unchanged, but its resident memory stays near that peak between images.

:class:`fastsam.inference.predictor.Predictor` calls :func:`keep_freed_memory` once per process; set
``FASTSAM_KEEP_FREED_MEMORY=0`` to leave the C allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses mmap thresholds above half its maximum heap size: 32 MiB on 64-bit systems. Larger blocks are
# still mapped and unmapped per use (only the x-sized network's first activations at imgsz 1024 are).
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30

OPT_OUT_VARIABLE = "FASTSAM_KEEP_FREED_MEMORY"
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once). Returns whether the setting is in effect:
    False on other C libraries, when ``FASTSAM_KEEP_FREED_MEMORY=0``, or if glibc refused it."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on a refused value.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
