"""One profile of a network: parameters, MACs with a per-module breakdown, and per-size runtime.

This is what ``restore profile`` prints: the numbers a paper's efficiency table gives, measured on
the user's own device. Counting runs on the meta device; only latency and memory touch hardware.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from restorecli.engine.device import PRECISIONS, Precision, fallback_chain, is_out_of_memory, is_unsupported_operator
from restorecli.engine.device import precision_dtype, resolve_device
from restorecli.engine.padding import round_up
from restorecli.errors import ConfigError
from restorecli.profiling.counting import (
    CONVENTION,
    MacCount,
    ModuleCost,
    ParameterCount,
    breakdown,
    count_macs,
    count_parameters,
    tensor_bytes,
)
from restorecli.profiling.runtime import (
    Latency,
    PeakMemory,
    PeakRequest,
    measure_cpu_peak,
    measure_cuda_peak,
    measure_latency,
)
from restorecli.profiling.target import ProfileTarget, instantiate

Size = tuple[int, int]
DEFAULT_SIZE: Size = (256, 256)
_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


@dataclass(frozen=True)
class SizeResult:
    """Cost of one input size.

    Attributes:
        height / width: the requested image size.
        input_shape: the ``(N, C, H, W)`` actually run, after padding to the network's multiple.
        macs: MACs of one forward pass of the whole batch.
        latency / memory: measured on the device, or None when not asked for.
        error: why the size could not be run (``out of memory``), else None.
    """

    height: int
    width: int
    input_shape: tuple[int, ...]
    macs: int
    latency: Latency | None = None
    memory: PeakMemory | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProfileReport:
    """Everything ``restore profile`` reports, JSON-ready through :meth:`to_dict`.

    Attributes:
        model / arch / config / weights: what was profiled.
        device: where latency and memory were measured (None when neither was).
        precision / batch: how it was run.
        parameters / weights_bytes: parameter counts and the bytes weights and buffers occupy.
        macs: MACs at the main size, with per-operator totals.
        depth / breakdown: per-module parameters and MACs at that depth, most MACs first.
        sizes: runtime results, one per measured size.
        convention: what is and is not counted, and FLOPs = 2 x MACs.
        notes: padding, device fallback and other facts a reader needs to interpret the numbers.
    """

    model: str
    arch: str
    config: dict[str, Any]
    weights: str | None
    device: str | None
    precision: str
    batch: int
    parameters: ParameterCount
    weights_bytes: int
    macs: MacCount
    depth: int
    breakdown: list[ModuleCost]
    sizes: list[SizeResult]
    convention: str = CONVENTION
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; MACs come with their FLOPs so no reader has to guess the factor."""
        data = asdict(self)
        data["macs"] = {
            "input_shape": list(self.macs.input_shape),
            "macs": self.macs.total,
            "flops": self.macs.flops,
            "by_operator": self.macs.by_operator,
        }
        for size in data["sizes"]:
            size["flops"] = 2 * size["macs"]
        return data


@dataclass(frozen=True)
class _Plan:
    """How each size is run: precision, pass counts, and which measurements to take."""

    precision: Precision
    warmup: int
    repeats: int
    latency: bool
    memory: bool


def parse_size(text: str) -> Size:
    """``"256"`` -> ``(256, 256)``; ``"720x1280"`` -> ``(720, 1280)`` (height x width).

    Raises:
        ConfigError: not one or two positive integers.
    """
    match = _SIZE_PATTERN.match(text)
    if match is None or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ConfigError(f"Expected a size H or HxW of positive integers (e.g. 256 or 720x1280), but got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def parse_sizes(text: str) -> list[Size]:
    """``"128,256,512x768"`` -> ``[(128, 128), (256, 256), (512, 768)]``."""
    return [parse_size(part) for part in text.split(",") if part.strip()] or [parse_size(text)]


def profile(
    target: ProfileTarget,
    *,
    size: Size = DEFAULT_SIZE,
    sizes: Sequence[Size] = (),
    batch: int = 1,
    depth: int = 1,
    device: str = "auto",
    precision: Precision = "fp32",
    warmup: int = 2,
    repeats: int = 10,
    latency: bool = True,
    memory: bool = True,
) -> ProfileReport:
    """Profile ``target``: counts at ``size``, runtime at each of ``sizes`` (default: ``size``).

    Args:
        target: the network (see :func:`restorecli.profiling.resolve_target`).
        size: ``(H, W)`` for the MAC count and the per-module breakdown.
        sizes: sizes to measure MACs, latency and peak memory at; empty means ``[size]``.
        batch: images per forward pass.
        depth: hierarchy levels in the breakdown (1: encoder levels, latent, decoders...).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``, resolved as inference does.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast, as inference runs).
        warmup / repeats: untimed and timed passes per size.
        latency / memory: whether to time passes and measure peak memory.

    Raises:
        ConfigError: a non-positive batch, depth or repeat count, or an unsupported precision.
        DeviceError: the device is unavailable.
    """
    if batch < 1 or depth < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(
            f"Expected batch, depth, repeats >= 1 and warmup >= 0, but got {batch}, {depth}, {repeats}, {warmup}"
        )
    if precision not in PRECISIONS:
        raise ConfigError(f"Expected a precision among {', '.join(PRECISIONS)}, but got {precision!r}")
    shapes = target.module if target.module is not None else instantiate(target, torch.device("meta"))
    main_shape = input_shape(target, batch, size)
    macs = count_macs(shapes, main_shape)
    notes = _padding_notes(target, [size, *sizes])
    measured = list(sizes) or [size]
    results = [
        SizeResult(height=h, width=w, input_shape=shape, macs=count_macs(shapes, shape).total)
        for h, w in measured
        for shape in [input_shape(target, batch, (h, w))]
    ]
    used_device = None
    if latency or memory:
        plan = _Plan(precision=precision, warmup=warmup, repeats=repeats, latency=latency, memory=memory)
        used_device, results = _run_sizes(target, results, device, plan, notes)
    return ProfileReport(
        model=target.label,
        arch=target.arch,
        config=target.config,
        weights=target.weights,
        device=None if used_device is None else str(used_device),
        precision=precision,
        batch=batch,
        parameters=count_parameters(shapes),
        weights_bytes=tensor_bytes(shapes),
        macs=macs,
        depth=depth,
        breakdown=breakdown(shapes, macs, depth),
        sizes=results,
        notes=notes,
    )


def input_shape(target: ProfileTarget, batch: int, size: Size) -> tuple[int, int, int, int]:
    """The ``(N, C, H, W)`` inference would run for an ``H x W`` image (padded bottom/right)."""
    height, width = size
    return batch, target.in_channels, round_up(height, target.pad_multiple), round_up(width, target.pad_multiple)


def _padding_notes(target: ProfileTarget, sizes: Sequence[Size]) -> list[str]:
    odd = sorted({f"{h}x{w}" for h, w in sizes if h % target.pad_multiple or w % target.pad_multiple})
    if not odd:
        return []
    return [
        f"{', '.join(odd)} padded to multiples of {target.pad_multiple} as inference does; MACs, latency and "
        "memory are of the padded input, megapixels/s of the requested size"
    ]


def _run_sizes(
    target: ProfileTarget, results: list[SizeResult], device: str, plan: _Plan, notes: list[str]
) -> tuple[torch.device, list[SizeResult]]:
    """Measure every size on the resolved device; with ``auto``, move on when an operator is missing."""
    first = resolve_device(device)
    candidates = [first, *fallback_chain(first)] if device.strip().lower() == "auto" else [first]

    def measure_all(candidate: torch.device) -> list[SizeResult]:
        precision_dtype(candidate, plan.precision)
        module = instantiate(target, candidate)
        return [_measure(target, module, result, candidate, plan) for result in results]

    for candidate, fallback in zip(candidates, candidates[1:]):
        try:
            return candidate, measure_all(candidate)
        except (NotImplementedError, RuntimeError) as exc:
            if not is_unsupported_operator(exc):
                raise
            notes.append(f"{candidate} lacks an operator ({str(exc).splitlines()[0]}); measured on {fallback}")
    return candidates[-1], measure_all(candidates[-1])


def _measure(
    target: ProfileTarget, module: nn.Module, result: SizeResult, device: torch.device, plan: _Plan
) -> SizeResult:
    """One size's latency and peak memory; running out of memory is a result, not a failure."""
    x = torch.rand(result.input_shape, device=device)
    try:
        timing = (
            measure_latency(
                module,
                x,
                precision=plan.precision,
                warmup=plan.warmup,
                repeats=plan.repeats,
                pixels=result.height * result.width,
            )
            if plan.latency
            else None
        )
        peak = _peak_memory(target, module, x, plan.precision) if plan.memory else None
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        del x
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return replace(result, error="out of memory")
    return replace(result, latency=timing, memory=peak)


def _peak_memory(target: ProfileTarget, module: nn.Module, x: torch.Tensor, precision: Precision) -> PeakMemory:
    if x.device.type == "cuda":
        return measure_cuda_peak(module, x, precision=precision)
    if x.device.type == "cpu":
        request = PeakRequest(
            arch=target.arch,
            config=target.config,
            input_shape=list(x.shape),
            precision=precision,
            threads=torch.get_num_threads(),
        )
        return measure_cpu_peak(request)
    return PeakMemory(peak_bytes=None, method=f"unavailable: {x.device.type} has no peak-memory counter")

