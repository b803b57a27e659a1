"""Latency and peak memory of real forward passes.

Latency: warm-up passes, then ``repeats`` timed passes, each ended by a device synchronisation, so
a sample is the wall time of one complete forward. Peak memory on CUDA is the caching allocator's
``max_memory_allocated`` around one pass; on the CPU it is the peak resident set size of a fresh
Python process (``python -m restorecli.profiling``) that builds the network, runs it and reports
``ru_maxrss`` above its own baseline, so nothing the parent did earlier inflates the number.
"""

from __future__ import annotations

import contextlib
import json
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

from restorecli.engine.device import Precision, precision_dtype
from restorecli.errors import DeviceError

Forward = Callable[[Tensor], Any]

try:
    import resource
except ImportError:  # Windows: no getrusage; CPU peak memory is reported as unavailable.
    resource = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Latency:
    """Timing of repeated forward passes on one input batch.

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
    """Peak memory of one forward pass: weights, input, activations and output.

    Attributes:
        peak_bytes: the peak, or None when this device offers no way to measure it.
        method: how it was measured (``cuda-allocator``, ``cpu-rss-subprocess``) or why it was not.
    """

    peak_bytes: int | None
    method: str


@dataclass(frozen=True)
class PeakRequest:
    """What the child process builds and runs (JSON on its command line)."""

    arch: str
    config: dict[str, Any]
    input_shape: list[int]
    precision: str
    threads: int


@contextlib.contextmanager
def inference_context(device: torch.device, precision: Precision) -> Iterator[None]:
    """``inference_mode`` plus autocast to ``precision`` (none for fp32), as inference runs.

    Raises:
        ConfigError: ``device`` does not support ``precision``.
    """
    dtype = precision_dtype(device, precision)
    with torch.inference_mode():
        if dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield


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
    precision: Precision = "fp32",
    warmup: int = 2,
    repeats: int = 10,
    pixels: int | None = None,
) -> Latency:
    """Time ``forward(x)``: ``warmup`` untimed passes, then ``repeats`` timed ones.

    Args:
        forward: the network (or any callable) to time.
        x: the ``(N, C, H, W)`` input batch, on the device to measure.
        pixels: pixels per image for the megapixels/s figure (default ``H * W`` of ``x``); pass the
            unpadded size so padding overhead lowers the throughput, as it does for users.
    """
    samples = np.array(_timed_runs(forward, x, precision, warmup, repeats))
    median = float(np.median(samples))
    batch = x.shape[0]
    pixels = pixels if pixels is not None else x.shape[-2] * x.shape[-1]
    return Latency(
        warmup=warmup,
        repeats=repeats,
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(samples, 90)) * 1e3,
        min_ms=float(samples.min()) * 1e3,
        images_per_second=batch / median,
        megapixels_per_second=batch * pixels / median / 1e6,
    )


def _timed_runs(forward: Forward, x: Tensor, precision: Precision, warmup: int, repeats: int) -> list[float]:
    with inference_context(x.device, precision):
        for _ in range(warmup):
            forward(x)
        synchronize(x.device)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward(x)
            synchronize(x.device)
            samples.append(time.perf_counter() - start)
    return samples


def measure_cuda_peak(forward: Forward, x: Tensor, *, precision: Precision = "fp32") -> PeakMemory:
    """Peak CUDA allocator memory (weights, input, activations, output) during one ``forward(x)``."""
    synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    with inference_context(x.device, precision):
        forward(x)
    synchronize(x.device)
    return PeakMemory(peak_bytes=int(torch.cuda.max_memory_allocated(x.device)), method="cuda-allocator")


def measure_cpu_peak(request: PeakRequest) -> PeakMemory:
    """Peak resident memory of building and running ``request`` in a fresh process.

    A failed child (typically killed by the kernel's out-of-memory killer) gives ``peak_bytes``
    None and a ``method`` that says why, so one size too large does not abort a scaling sweep.
    """
    if resource is None:
        return PeakMemory(peak_bytes=None, method="unavailable: no resource.getrusage on this platform")
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


def max_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    if resource is None:
        raise DeviceError("Expected resource.getrusage to measure memory, but this platform lacks it")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def peak_rss_of(request: PeakRequest) -> dict[str, int]:
    """In the child process: build, run twice, and return peak RSS above the post-import baseline.

    Two passes, because the first may also set up oneDNN/allocator caches that later passes reuse;
    the peak covers both.
    """
    from restorecli.zoo.architectures import build_model

    torch.set_num_threads(request.threads)
    baseline = max_rss_bytes()
    module = build_model(request.arch, request.config).eval()
    model_peak = max_rss_bytes()
    x = torch.rand(request.input_shape)
    with inference_context(torch.device("cpu"), request.precision):  # type: ignore[arg-type]
        for _ in range(2):
            module(x)
    return {"peak_bytes": max_rss_bytes() - baseline, "model_bytes": model_peak - baseline}

