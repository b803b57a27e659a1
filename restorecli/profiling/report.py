"""One profile of a network: parameters, MACs with a per-module breakdown, and per-size runtime.

This is what ``restore profile`` prints: the numbers a paper's efficiency table gives, measured on
the user's own device. Counting runs on the meta device; only latency and memory touch hardware.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from restorecli.archs.nafnet import NAFNet
from restorecli.archs.official import OfficialForward
from restorecli.archs.restormer import Restormer
from restorecli.engine.device import (
    PRECISIONS,
    Precision,
    fallback_chain,
    is_out_of_memory,
    is_unsupported_operator,
    resolve_device,
)
from restorecli.engine.padding import round_up
from restorecli.engine.runner import DEFAULT_TILE_OVERLAP
from restorecli.engine.tiling import plan_tiles
from restorecli.errors import ConfigError
from restorecli.profiling.counting import (
    CONVENTION,
    MacCount,
    ModuleCost,
    ParameterCount,
    breakdown,
    count_macs,
    count_parameters,
    sum_counts,
    tensor_bytes,
)
from restorecli.profiling.runtime import (
    Forward,
    Latency,
    PeakMemory,
    PeakRequest,
    make_forward,
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
        input_shape: the padded ``(N, C, H, W)`` inference covers (padded to the network's multiple).
        tiles: network passes per image (1 without tiling).
        macs: MACs of the whole batch, summed over tiles.
        latency / memory: measured on the device, or None when not asked for.
        error: why the size could not be run (``out of memory``), else None.
    """

    height: int
    width: int
    input_shape: tuple[int, ...]
    tiles: int
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
        tile / tile_overlap: the engine's tiling, or None for the bare network on the whole input.
        parameters / weights_bytes: parameter counts and the bytes weights and buffers occupy.
        macs: MACs at the main size, with per-operator totals.
        depth / breakdown: per-module parameters and MACs at that depth, most MACs first.
        sizes: results per measured size.
        convention: what is and is not counted, and FLOPs = 2 x MACs.
        notes: padding, tiling, device fallback: what a reader needs to interpret the numbers.
    """

    model: str
    arch: str
    config: dict[str, Any]
    weights: str | None
    device: str | None
    precision: str
    batch: int
    tile: int | None
    tile_overlap: int | None
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
    """How each size is run: batch, precision, tiling, pass counts, and which measurements to take."""

    batch: int
    precision: Precision
    tile: int | None
    tile_overlap: int
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
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
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
        tile / tile_overlap: run the engine's tiled inference (tiles of ``tile`` pixels sharing
            ``tile_overlap``) instead of the bare network; MACs are summed over the tiles.
        warmup / repeats: untimed and timed passes per size.
        latency / memory: whether to time passes and measure peak memory.

    Raises:
        ConfigError: a non-positive batch, depth, repeat count or tile, an unknown or unsupported
            precision, or a tile too small for its overlap.
        DeviceError: the device is unavailable.
    """
    if min(batch, depth, repeats, tile or 1) < 1 or warmup < 0 or tile_overlap < 0:
        raise ConfigError(
            f"Expected batch, depth, repeats, tile >= 1 and warmup, tile overlap >= 0, but got "
            f"{batch}, {depth}, {repeats}, {tile}, {warmup}, {tile_overlap}"
        )
    if precision not in PRECISIONS:
        raise ConfigError(f"Expected a precision among {', '.join(PRECISIONS)}, but got {precision!r}")
    plan = _Plan(batch, precision, tile, tile_overlap, warmup, repeats, latency, memory)
    shapes = target.module if target.module is not None else instantiate(target, torch.device("meta"))
    counter = _SizeCounter(target, shapes, plan)
    macs, _ = counter.count(size)
    results = []
    for height, width in sizes or [size]:
        count, tiles = counter.count((height, width))
        results.append(SizeResult(height, width, input_shape(target, batch, (height, width)), tiles, count.total))
    notes = _notes(target, plan, [size, *sizes])
    if isinstance(shapes, Restormer | NAFNet):
        official = count_macs(OfficialForward(shapes), macs.input_shape).total
        if official != macs.total:
            notes.append(
                f"the official formulation does {official / 1e9:.2f} G MACs at {size[0]}x{size[1]}; restorecli's "
                f"forward regroups it ({(official - macs.total) / 1e9:.2f} G fewer: attention folded into its "
                "output projection), same weights and outputs"
            )
    used_device = None
    if latency or memory:
        used_device, results = _run_sizes(target, results, device, plan, notes)
    return ProfileReport(
        model=target.label,
        arch=target.arch,
        config=target.config,
        weights=target.weights,
        device=None if used_device is None else str(used_device),
        precision=precision,
        batch=batch,
        tile=tile,
        tile_overlap=None if tile is None else tile_overlap,
        parameters=count_parameters(shapes),
        weights_bytes=tensor_bytes(shapes),
        macs=macs,
        depth=depth,
        breakdown=breakdown(shapes, macs, depth),
        sizes=results,
        notes=notes,
    )


def input_shape(target: ProfileTarget, batch: int, size: Size) -> tuple[int, int, int, int]:
    """The ``(N, C, H, W)`` inference covers for an ``H x W`` image (padded bottom/right)."""
    height, width = size
    return batch, target.in_channels, round_up(height, target.pad_multiple), round_up(width, target.pad_multiple)


class _SizeCounter:
    """MACs per image size, with the tiles of a tiled run counted once per distinct tile shape."""

    def __init__(self, target: ProfileTarget, shapes: nn.Module, plan: _Plan) -> None:
        self.target, self.shapes, self.plan = target, shapes, plan
        self.cache: dict[tuple[int, ...], MacCount] = {}

    def count(self, size: Size) -> tuple[MacCount, int]:
        """``(MACs of the whole batch, tiles per image)`` at ``size``."""
        batch, channels, height, width = full = input_shape(self.target, self.plan.batch, size)
        if self.plan.tile is None:
            return self._count(full), 1
        tiles = plan_tiles(height, width, self.plan.tile, self.plan.tile_overlap, self.target.pad_multiple)
        return sum_counts([self._count((batch, channels, t.height, t.width)) for t in tiles], full), len(tiles)

    def _count(self, shape: tuple[int, ...]) -> MacCount:
        if shape not in self.cache:
            self.cache[shape] = count_macs(self.shapes, shape)
        return self.cache[shape]


def _notes(target: ProfileTarget, plan: _Plan, sizes: Sequence[Size]) -> list[str]:
    notes = []
    odd = sorted({f"{h}x{w}" for h, w in sizes if h % target.pad_multiple or w % target.pad_multiple})
    if odd:
        notes.append(
            f"{', '.join(odd)} padded to multiples of {target.pad_multiple} as inference does; MACs, latency and "
            "memory are of the padded input, megapixels/s of the requested size"
        )
    if plan.tile is not None:
        notes.append(
            f"tiled: the engine's inference path (pad, tiles of {plan.tile} px sharing {plan.tile_overlap} px, "
            "blend), input held on the CPU; MACs are summed over tiles, overlaps counted twice"
        )
    return notes


def _run_sizes(
    target: ProfileTarget, results: list[SizeResult], device: str, plan: _Plan, notes: list[str]
) -> tuple[torch.device, list[SizeResult]]:
    """Measure every size on the resolved device; with ``auto``, move on when an operator is missing."""
    first = resolve_device(device)
    candidates = [first, *fallback_chain(first)] if device.strip().lower() == "auto" else [first]

    def measure_all(candidate: torch.device) -> list[SizeResult]:
        module = instantiate(target, candidate)
        forward = make_forward(target, module, candidate, plan.precision, plan.tile, plan.tile_overlap)
        return [_measure(target, forward, result, candidate, plan) for result in results]

    for candidate, fallback in itertools.pairwise(candidates):
        try:
            return candidate, measure_all(candidate)
        except (NotImplementedError, RuntimeError) as exc:
            if not is_unsupported_operator(exc):
                raise
            notes.append(f"{candidate} lacks an operator ({str(exc).splitlines()[0]}); measured on {fallback}")
    return candidates[-1], measure_all(candidates[-1])


def _measure(
    target: ProfileTarget, forward: Forward, result: SizeResult, device: torch.device, plan: _Plan
) -> SizeResult:
    """One size's latency and peak memory; running out of memory is a result, not a failure."""
    if plan.tile is None:
        x = torch.rand(result.input_shape, device=device)
    else:  # the engine pads and tiles an image held on the CPU, as inference does
        x = torch.rand(plan.batch, target.in_channels, result.height, result.width)
    try:
        timing = (
            measure_latency(
                forward,
                x,
                device=device,
                warmup=plan.warmup,
                repeats=plan.repeats,
                pixels=result.height * result.width,
            )
            if plan.latency
            else None
        )
        peak = _peak_memory(target, forward, x, device, plan) if plan.memory else None
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        del x
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return replace(result, error="out of memory")
    return replace(result, latency=timing, memory=peak)


def _peak_memory(
    target: ProfileTarget, forward: Forward, x: torch.Tensor, device: torch.device, plan: _Plan
) -> PeakMemory:
    if device.type == "cuda":
        return measure_cuda_peak(forward, x, device)
    if device.type == "cpu":
        request = PeakRequest(
            arch=target.arch,
            config=target.config,
            input_shape=list(x.shape),
            precision=plan.precision,
            threads=torch.get_num_threads(),
            tile=plan.tile,
            tile_overlap=plan.tile_overlap,
        )
        return measure_cpu_peak(request)
    return PeakMemory(peak_bytes=None, method=f"unavailable: {device.type} has no peak-memory counter")
