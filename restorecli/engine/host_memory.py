"""What the host lets this process allocate on the CPU: the kernel's available memory, capped by the
memory cgroup the process runs in (a Docker or Kubernetes limit), which ``MemAvailable`` does not show.

Sizing strips or tiles from the host's figure inside a container would let the kernel's OOM killer end
the process, which no retry can catch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")
MEMINFO = Path("/proc/meminfo")
# Where neither /proc/meminfo nor sysconf answers.
UNKNOWN_CPU_MEMORY = 4 << 30
# cgroup v1 writes "no limit" as 2**63 - 1 rounded down to a page; v2 writes "max".
_UNLIMITED = 1 << 60
# (folder under the root, limit file, usage file, inactive page cache counted in the usage) per version.
_V2 = ("", "memory.max", "memory.current", "inactive_file")
_V1 = ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def cpu_available_memory(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP, meminfo_path: Path = MEMINFO) -> int:
    """``MemAvailable`` from /proc/meminfo (else free physical pages, else :data:`UNKNOWN_CPU_MEMORY`),
    capped by :func:`cgroup_memory_room`."""
    available = UNKNOWN_CPU_MEMORY
    with contextlib.suppress(AttributeError, OSError, ValueError):
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError), open(meminfo_path, encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    room = cgroup_memory_room(root, membership)
    return available if room is None else min(available, room)


def cgroup_memory_room(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int | None:
    """Bytes the memory cgroups of this process still allow: the least ``limit - usage`` over its cgroup
    and each ancestor (cgroup v2 or v1), reclaimable inactive page cache not counted as used. None where
    no limit applies or nothing can be read (not Linux, no cgroup filesystem)."""
    try:
        lines = membership.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:
            layout = _V2
        elif "memory" in controllers.split(","):
            layout = _V1
        else:
            continue
        base = root / layout[0]
        folder = base / path.lstrip("/")
        while True:
            room = _room(folder, *layout[1:])
            if room is not None:
                rooms.append(room)
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return min(rooms) if rooms else None


def _room(folder: Path, limit_name: str, usage_name: str, inactive_name: str) -> int | None:
    """``limit - (usage - inactive page cache)`` of one cgroup folder; None without a limit there."""
    try:
        limit = (folder / limit_name).read_text(encoding="ascii").strip()
        usage = int((folder / usage_name).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    if not limit.isdigit() or int(limit) >= _UNLIMITED:
        return None
    inactive = 0
    with contextlib.suppress(OSError, ValueError):
        for line in (folder / "memory.stat").read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_name:
                inactive = int(value)
                break
    return max(int(limit) - max(usage - inactive, 0), 0)
