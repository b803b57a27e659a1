"""Latency and peak memory of real passes through the engine, as inference runs them.

What runs: the engine's runner (:func:`restorecli.engine.runner.restore_tensor`) on the zoo's
descriptor, so padding, memory format (channels-last where the architecture prefers it),
precision and the device fallback policy are inference's own. Without tiling the image is one
tile on the device (the network's cost, no host transfers); with a tile size the image is held on
the CPU and run tile by tile, as ``restore derain ... --tile`` runs it.

Latency: warm-up passes, then ``repeats`` timed passes, each ended by a device synchronisation, so a
sample is the wall time of one complete pass. Peak memory on CUDA is the caching allocator's
``max_memory_allocated`` around one pass; on the CPU it is the resident-set peak of a fresh Python
process (``python -m restorecli.profiling``) that builds the network and runs it, above its own
post-import baseline, so nothing the parent did earlier inflates the number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from restorecli.engine.options import RunOptions
from restorecli.engine.runner import restore_tensor
from restorecli.errors import DeviceError
from restorecli.profiling.target import instantiate, target_from_config
from restorecli.zoo.descriptor import ModelDescriptor

Forward = Callable[[Tensor], Any]

try:
    import resource
except ImportError:  # Windows: no getrusage; CPU peak memory is reported as unavailable.
    resource = None  # type: ignore[assignment]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_ENGINE_LOGGER = "restorecli.engine"


@dataclass(frozen=True)
class Latency:
    """Timing of repeated passes over one input batch.

    Attributes:
        warmup / repeats: untimed and timed passes.
        median_ms / p90_ms / min_ms: per-pass wall time (p90 by linear interpolation).
        images_per_second: batch size / median time.
        megapixels_per_second: batch x requested H x W (before padding) / median time, in 10^6 px/s.
    """

    warmup: int
    repeats: int
    median_ms: float
    p90_ms: float
    min_ms: float
    images_per_second: float
    megapixels_per_second: float


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one pass: weights, input, activations and output.

    Attributes:
        peak_bytes: the peak, or None when it could not be measured.
        method: how it was measured (``cuda-allocator``, ``cpu-rss-subprocess``) or why it was not.
    """

    peak_bytes: int | None
    method: str


@dataclass(frozen=True)
class PeakRequest:
    """What the CPU memory process builds and runs (JSON on its command line).

    ``input_shape`` is the image batch ``(N, C, H, W)`` before padding (the engine pads);
    ``options`` the fields of the :class:`~restorecli.engine.options.RunOptions` to run it with.
    """

    arch: str
    config: dict[str, Any]
    input_shape: list[int]
    options: dict[str, Any]
    threads: int


def make_forward(descriptor: ModelDescriptor, options: RunOptions) -> Forward:
    """The pass to measure: one call of the engine's runner, as inference makes it."""
    return lambda x: restore_tensor(descriptor, x, options)


@contextlib.contextmanager
def engine_announcements() -> Iterator[list[str]]:
    """Within the block, collect the engine's warnings (device fallback, re-tiling) instead of printing them.

    A profile reports them as notes beside the numbers they explain.
    """
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    engine = logging.getLogger(_ENGINE_LOGGER)
    handler, propagate = Collect(logging.WARNING), engine.propagate
    engine.addHandler(handler)
    engine.propagate = False
    try:
        yield messages
    finally:
        engine.removeHandler(handler)
        engine.propagate = propagate


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so a wall-clock reading covers the work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_latency(
    forward: Forward,
    x: Tensor,
    *,
    device: torch.device | None = None,
    warmup: int = 2,
    repeats: int = 10,
    pixels: int | None = None,
) -> Latency:
    """Time ``forward(x)``: ``warmup`` untimed passes, then ``repeats`` timed ones.

    Args:
        forward: the pass to time (see :func:`make_forward`), or any callable.
        x: the ``(N, C, H, W)`` input batch.
        device: where the work runs, to synchronise on (default: ``x.device``).
        pixels: pixels per image for the megapixels/s figure (default ``H * W`` of ``x``); pass the
            unpadded size so padding overhead lowers the throughput, as it does for users.
    """
    device = x.device if device is None else device
    for _ in range(warmup):
        forward(x)
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x)
        synchronize(device)
        samples.append(time.perf_counter() - start)
    seconds = np.array(samples)
    median = float(np.median(seconds))
    batch = x.shape[0]
    pixels = pixels if pixels is not None else x.shape[-2] * x.shape[-1]
    return Latency(
        warmup=warmup,
        repeats=repeats,
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(seconds, 90)) * 1e3,
        min_ms=float(seconds.min()) * 1e3,
        images_per_second=batch / median,
        megapixels_per_second=batch * pixels / median / 1e6,
    )


def measure_cuda_peak(forward: Forward, x: Tensor, device: torch.device) -> PeakMemory:
    """Peak CUDA allocator memory on ``device`` during one ``forward(x)``.

    It covers everything this process holds there: weights, input, activations and output (with
    tiling, only the tiles in flight: the image stays on the CPU).
    """
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    forward(x)
    synchronize(device)
    return PeakMemory(peak_bytes=int(torch.cuda.max_memory_allocated(device)), method="cuda-allocator")


def measure_cpu_peak(request: PeakRequest) -> PeakMemory:
    """Peak resident memory of building and running ``request`` in a fresh process.

    A failed child (typically killed by the kernel's out-of-memory killer) gives ``peak_bytes``
    None and a ``method`` that says why, so one size too large does not abort a scaling sweep.
    """
    if resource is None and not _STATUS.exists():
        return PeakMemory(peak_bytes=None, method="unavailable: no /proc or resource.getrusage on this platform")
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "restorecli.profiling", json.dumps(asdict(request))]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        if done.returncode < 0:
            reason = f"killed by signal {-done.returncode} (out of memory?)"
        return PeakMemory(peak_bytes=None, method=f"failed: {reason}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return PeakMemory(peak_bytes=int(result["peak_bytes"]), method="cpu-rss-subprocess")


def resident_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident set size of this process, in bytes.

    Linux: ``VmRSS``/``VmHWM`` from ``/proc/self/status``. Not ``ru_maxrss``, which Linux carries
    over ``execve`` from the forked parent, so a child would report its parent's peak. Elsewhere
    ``ru_maxrss`` (bytes on macOS, KiB on other systems) stands for both.

    Raises:
        DeviceError: the platform offers neither (Windows).
    """
    try:
        status = _STATUS.read_text(encoding="ascii")
    except OSError:
        if resource is None:
            raise DeviceError(
                "Expected /proc or resource.getrusage to measure memory, but this platform lacks both"
            ) from None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = int(peak) if sys.platform == "darwin" else int(peak) * 1024
        return peak, peak
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def reset_peak_resident() -> None:
    """Restart the peak-RSS record at the current size (Linux ``clear_refs``), when the kernel allows."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5", encoding="ascii")


def peak_rss_of(request: PeakRequest) -> dict[str, int]:
    """In the child process: build, run twice, and return the resident peak above the baseline.

    The baseline is the resident size after imports, with the peak record reset there, so import
    transients do not count. Two passes, because the first may also set up oneDNN and allocator
    caches that later passes reuse; the peak covers both.
    """
    torch.set_num_threads(request.threads)
    reset_peak_resident()
    baseline, _ = resident_bytes()
    descriptor = instantiate(target_from_config(request.arch, request.config), torch.device("cpu"))
    _, model_peak = resident_bytes()
    forward = make_forward(descriptor, RunOptions(**request.options))
    x = torch.rand(request.input_shape)
    for _ in range(2):
        forward(x)
    _, peak = resident_bytes()
    return {"peak_bytes": peak - baseline, "model_bytes": model_peak - baseline}
