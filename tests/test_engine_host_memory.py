"""The CPU memory budget respects a container's memory cgroup (v2 and v1), read from a fake tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from restorecli.engine import host_memory

GIB = 1 << 30


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text, encoding="ascii")


def test_v2_limit_minus_usage_without_inactive_page_cache(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("0::/kubepods/pod1/box\n", encoding="utf-8")
    root = tmp_path / "fs"
    _write(root / "kubepods/pod1/box", memory_max=str(6 * GIB), memory_current=str(3 * GIB),
           memory_stat=f"anon 1\ninactive_file {1 * GIB}\nactive_file 5\n")  # fmt: skip
    _write(root / "kubepods/pod1", memory_max=str(5 * GIB), memory_current=str(4 * GIB))  # the tighter one
    _write(root / "kubepods", memory_max="max", memory_current=str(9 * GIB))
    assert host_memory.cgroup_memory_room(root, membership) == 1 * GIB
    assert host_memory.cpu_available_memory(root, membership) <= 1 * GIB


def test_v1_memory_controller_and_its_unlimited_value(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n", encoding="utf-8")
    root = tmp_path / "fs"
    _write(root / "memory/docker/abc", memory_limit_in_bytes=str(2 * GIB), memory_usage_in_bytes=str(GIB // 2),
           memory_stat=f"cache 9\ntotal_inactive_file {GIB // 4}\n")  # fmt: skip
    _write(root / "memory", memory_limit_in_bytes="9223372036854771712", memory_usage_in_bytes=str(20 * GIB))
    assert host_memory.cgroup_memory_room(root, membership) == 2 * GIB - (GIB // 2 - GIB // 4)
    _write(root / "memory/docker/abc", memory_limit_in_bytes="9223372036854771712")
    assert host_memory.cgroup_memory_room(root, membership) is None


@pytest.mark.parametrize("membership_text", [None, "0::/\n", "3:cpu:/x\n", "garbage"])
def test_no_limit_or_nothing_readable_leaves_the_kernel_figure(tmp_path: Path, membership_text: str | None) -> None:
    membership = tmp_path / "cgroup"
    if membership_text is not None:
        membership.write_text(membership_text, encoding="utf-8")
    root = tmp_path / "fs"
    root.mkdir()
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    3000000 kB\n", encoding="ascii")
    assert host_memory.cgroup_memory_room(root, membership) is None
    assert host_memory.cpu_available_memory(root, membership, meminfo) == 3000000 * 1024


def test_usage_above_the_limit_leaves_no_room(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("0::/\n", encoding="utf-8")
    _write(tmp_path / "fs", memory_max=str(GIB), memory_current=str(2 * GIB))
    assert host_memory.cgroup_memory_room(tmp_path / "fs", membership) == 0
