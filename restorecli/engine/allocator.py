"""Keep freed activation memory inside the process instead of handing it back to the kernel.

glibc serves large requests (over 128 KiB, a threshold that adapts up to 32 MiB) with fresh
``mmap`` pages and unmaps them on ``free``; it also trims the top of the heap once 128 KiB are free.
A network's forward pass frees and re-allocates the same few large activations layer after layer,
so with those defaults every layer's output is faulted in page by page again, and system time
rivals the arithmetic (the "keep freed memory" lever of ``bench/bench_performance.py --levers``).

:func:`keep_freed_memory` makes glibc serve every size from its heap and never trim it. The cost is
that the process keeps its peak footprint until it exits, which suits a restoration run; PyTorch's
CUDA and MPS allocators already cache device memory the same way. Where memory is the constraint,
:func:`release_freed_memory` hands the free pages back at chosen points.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

logger = logging.getLogger("restorecli.engine")

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # an int: mallopt takes a C int (about 2 GiB of free heap before trimming)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError on a C library that is not glibc
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from returning freed memory to the kernel (once per process).

    Returns:
        True when the setting took effect; False where the C library is not glibc (macOS, Windows,
        musl), which is harmless: those allocators differ and the setting does not apply.
    """
    libc = _glibc()
    if libc is None:
        return False
    applied = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    if not applied:
        logger.debug("glibc refused the mallopt settings; freed memory goes back to the kernel")
    return applied


def release_freed_memory() -> bool:
    """Hand the free pages of the heap back to the kernel now (glibc's ``malloc_trim``).

    With :func:`keep_freed_memory` the heap only grows: a stage whose temporaries do not fit the holes
    earlier stages left adds pages, so the peak becomes the sum of every stage's leftovers rather than
    the most memory live at once. A streamed forward over a large image calls this between stages
    (its whole maps stay; the pages its strips freed go), at the cost of faulting them in again once
    per stage instead of once per layer. Returns False where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
