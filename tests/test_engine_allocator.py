"""glibc keeps freed memory mapped after :func:`keep_freed_memory`: re-allocations fault no new pages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from restorecli.engine import allocator

# Runs in a fresh interpreter: the setting is process-wide and other tests may have made it already.
_PROBE = textwrap.dedent(
    """
    import ctypes, json, resource
    from restorecli.engine.allocator import keep_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

    def faults(size=64 << 20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        libc.memset(block, 1, size)
        libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    default = [faults(), faults()]
    applied = keep_freed_memory()
    kept = [faults(), faults()]
    print(json.dumps({"default": default, "applied": applied, "kept": kept}))
    """
)


def test_freed_blocks_are_reused_without_page_faults() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(done.stdout)
    pages = (64 << 20) // 4096
    # glibc's default: a 64 MiB block is mmap-ed, unmapped on free and faulted in again each time.
    assert min(result["default"]) > pages // 2
    assert result["applied"] is True
    # Kept: the first block grows the heap (faults once), the second reuses it.
    assert result["kept"][1] < pages // 50


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator.keep_freed_memory.cache_clear()
    allocator._glibc.cache_clear()
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    try:
        assert allocator.keep_freed_memory() is False
        assert allocator.release_freed_memory() is False
    finally:
        allocator.keep_freed_memory.cache_clear()
        allocator._glibc.cache_clear()
