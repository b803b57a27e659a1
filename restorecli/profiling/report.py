"""One profile of a network: parameters, MACs with a per-module breakdown, and per-size runtime.

This is what ``restore profile`` prints: the numbers a paper's efficiency table gives, measured on
the user's own device. Counting runs on the meta device; only latency and memory touch hardware,
and before anything is allocated there, the memory a size needs is estimated (weights from the
meta build, activations from the engine's per-pixel estimate) and compared with what is free.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from restorecli.engine.device import is_out_of_memory, may_fall_back, precision_dtype, resolve_device
from restorecli.engine.host_memory import cpu_available_memory
from restorecli.engine.options import RunOptions
from restorecli.engine.padding import round_up
from restorecli.engine.runner import available_memory, estimate_bytes_per_pixel
from restorecli.engine.tiling import plan_tiles, validate_tile
from restorecli.errors import ConfigError, DeviceError
from restorecli.profiling.counting import (
    CONVENTION,
    COUNT_KINDS,
    MacCounts,
    ModuleCost,
    ParameterCount,
    breakdown,
    count_macs_three_ways,
    count_parameters,
    sum_counts,
    tensor_bytes,
)
from restorecli.profiling.runtime import (
    Latency,
    PeakMemory,
    PeakRequest,
    engine_announcements,
    make_forward,
    measure_cpu_peak,
    measure_cuda_peak,
    measure_latency,
)
from restorecli.profiling.target import ProfileTarget, instantiate
from restorecli.zoo.descriptor import ModelDescriptor

Size = tuple[int, int]
DEFAULT_SIZE: Size = (256, 256)
_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")
_FLOAT32_BYTES = 4


@dataclass(frozen=True)
class SizeResult:
    """Cost of one input size.

    Attributes:
        height / width: the requested image size.
        input_shape: the padded ``(N, C, H, W)`` inference covers (padded to the network's multiple).
        tiles: network passes per image (1 without tiling).
        macs: MACs of the whole batch, summed over tiles: the official formulation's count.
        paper_macs / restorecli_macs: the same pass under the paper convention and as restorecli runs it.
        device: where latency and memory were measured (after any fallback), or None.
        latency / memory: measured on the device, or None when not asked for.
        error: why the size could not be run (``out of memory ...``), else None.
    """

    height: int
    width: int
    input_shape: tuple[int, ...]
    tiles: int
    macs: int
    paper_macs: int
    restorecli_macs: int
    device: str | None = None
    latency: Latency | None = None
    memory: PeakMemory | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProfileReport:
    """Everything ``restore profile`` reports, JSON-ready through :meth:`to_dict`.

    Attributes:
        model / arch / config / weights: what was profiled.
        device: where latency and memory were measured last (None when neither was).
        precision / batch: how it was run.
        tile / overlap: the engine's tiling, or None for the whole image as one tile.
        parameters / weights_bytes: parameter counts and the bytes weights and buffers occupy.
        macs: MACs at the main size counted three ways (see :class:`~restorecli.profiling.MacCounts`);
            ``macs.official`` is the headline.
        depth / breakdown: per-module parameters and official MACs at that depth, most MACs first.
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
    overlap: int | None
    parameters: ParameterCount
    weights_bytes: int
    macs: MacCounts
    depth: int
    breakdown: list[ModuleCost]
    sizes: list[SizeResult]
    convention: str = CONVENTION
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; MACs come with their FLOPs so no reader has to guess the factor.

        ``macs`` holds the headline (official) count with its operators, and ``macs.counts`` all three:
        ``official``, ``paper`` and ``restorecli``, each with ``macs``, ``gmacs`` (10^9, 2 decimals,
        as papers print them) and ``flops``.
        """
        data = asdict(self)
        official = self.macs.official
        data["macs"] = {
            "input_shape": list(official.input_shape),
            **_count_entry(official.total),
            "by_operator": official.by_operator,
            "counts": {
                kind: {**_count_entry(total), "label": label, "counts": what}
                for (kind, label, what), total in zip(COUNT_KINDS, self.macs.totals().values(), strict=True)
            },
        }
        for size in data["sizes"]:
            size["flops"] = 2 * size["macs"]
        return data


def _count_entry(macs: int) -> dict[str, Any]:
    return {"macs": macs, "gmacs": round(macs / 1e9, 2), "flops": 2 * macs}


@dataclass(frozen=True)
class _Plan:
    """How each size is run: batch, the engine's options, and which measurements to take."""

    batch: int
    options: RunOptions
    warmup: int
    repeats: int
    latency: bool
    memory: bool

    def options_for(self, input_shape: Sequence[int]) -> RunOptions:
        """The engine's options for one size: the whole padded image as one tile, or the requested tiles."""
        if self.options.tile is None:  # one tile covering the image; all images of the batch in one pass
            return replace(self.options, tile=max(input_shape[-2:]), overlap=0, tile_batch=self.batch)
        return replace(self.options, tile_batch=1)


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
    options: RunOptions | None = None,
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
        options: how the engine runs each pass (default ``RunOptions()``): ``precision``; ``tile`` and
            ``overlap`` to run the engine's tiled inference instead of the whole image as one tile
            (MACs are then summed over the tiles); ``fallback`` None follows the one policy (only
            ``auto`` may move to another device, announced in the notes).
        warmup / repeats: untimed and timed passes per size.
        latency / memory: whether to time passes and measure peak memory.

    Raises:
        ConfigError: a non-positive batch, depth or repeat count, a tile too small for its overlap,
            a precision the device lacks, or a config the network cannot run.
        DeviceError: the device is unavailable, or the weights alone do not fit in its free memory.
    """
    if min(batch, depth, repeats) < 1 or warmup < 0:
        raise ConfigError(
            f"Expected batch, depth, repeats >= 1 and warmup >= 0, but got {batch}, {depth}, {repeats}, {warmup}"
        )
    options = options or RunOptions()
    if options.tile is not None:
        validate_tile(options.tile, options.overlap, target.pad_multiple)
    if options.fallback is None:
        options = replace(options, fallback=may_fall_back(device))
    plan = _Plan(batch, options, warmup, repeats, latency, memory)
    shapes = target.descriptor.module
    counter = _SizeCounter(target, plan)
    macs, _ = counter.count(size)
    results = []
    for height, width in sizes or [size]:
        counts, tiles = counter.count((height, width))
        results.append(
            SizeResult(
                height,
                width,
                input_shape(target, batch, (height, width)),
                tiles,
                counts.official.total,
                counts.paper,
                counts.restorecli.total,
            )
        )
    notes = _notes(target, plan, [size, *sizes])
    used_device = None
    if latency or memory:
        used_device, results = _run_sizes(target, results, device, plan, notes)
    return ProfileReport(
        model=target.label,
        arch=target.arch,
        config=target.config,
        weights=target.weights,
        device=used_device,
        precision=options.precision,
        batch=batch,
        tile=options.tile,
        overlap=None if options.tile is None else options.overlap,
        parameters=count_parameters(shapes),
        weights_bytes=tensor_bytes(shapes),
        macs=macs,
        depth=depth,
        breakdown=breakdown(shapes, macs.official, depth),
        sizes=results,
        notes=notes,
    )


def input_shape(target: ProfileTarget, batch: int, size: Size) -> tuple[int, int, int, int]:
    """The ``(N, C, H, W)`` inference covers for an ``H x W`` image (padded bottom/right)."""
    height, width = size
    return batch, target.in_channels, round_up(height, target.pad_multiple), round_up(width, target.pad_multiple)


class _SizeCounter:
    """MACs per image size, with the tiles of a tiled run counted once per distinct tile shape."""

    def __init__(self, target: ProfileTarget, plan: _Plan) -> None:
        self.target, self.plan = target, plan
        self.cache: dict[tuple[int, ...], MacCounts] = {}

    def count(self, size: Size) -> tuple[MacCounts, int]:
        """``(MACs of the whole batch, tiles per image)`` at ``size``."""
        batch, channels, height, width = full = input_shape(self.target, self.plan.batch, size)
        tile, overlap = self.plan.options.tile, self.plan.options.overlap
        if tile is None:
            return self._count(full), 1
        tiles = plan_tiles(height, width, tile, overlap, self.target.pad_multiple)
        parts = [self._count((batch, channels, t.height, t.width)) for t in tiles]
        official = sum_counts([part.official for part in parts], full)
        return MacCounts(official, sum_counts([part.restorecli for part in parts], full)), len(tiles)

    def _count(self, shape: tuple[int, ...]) -> MacCounts:
        if shape not in self.cache:
            try:
                self.cache[shape] = count_macs_three_ways(self.target.descriptor.module, shape)
            except (RuntimeError, ValueError) as exc:  # the meta pass is the first to run the config
                raise ConfigError(
                    f"Expected {self.target.label} to run on a {'x'.join(map(str, shape))} input, but it "
                    f"failed: {str(exc).splitlines()[0]}"
                ) from exc
        return self.cache[shape]


def _notes(target: ProfileTarget, plan: _Plan, sizes: Sequence[Size]) -> list[str]:
    notes = []
    odd = sorted({f"{h}x{w}" for h, w in sizes if h % target.pad_multiple or w % target.pad_multiple})
    if odd:
        notes.append(
            f"{', '.join(odd)} padded to multiples of {target.pad_multiple} as inference does; MACs, latency and "
            "memory are of the padded input, megapixels/s of the requested size"
        )
    if plan.options.tile is not None:
        notes.append(
            f"tiled: the engine's inference path (pad, tiles of {plan.options.tile} px sharing {plan.options.overlap} px, "
            "blend), input held on the CPU; MACs are summed over tiles, overlaps counted twice"
        )
    return notes


def _run_sizes(
    target: ProfileTarget, results: list[SizeResult], device: str, plan: _Plan, notes: list[str]
) -> tuple[str, list[SizeResult]]:
    """Measure every size through the engine's runner, which applies its own fallback policy.

    Memory is checked before anything is allocated: the weights (from the meta build) and each
    size's estimate against the device's free memory. A size that cannot fit is an ``out of
    memory`` row; the network is built only when some size fits.

    Raises:
        DeviceError: the device is unavailable, or the weights alone exceed its free memory.
    """
    first = resolve_device(device)
    precision_dtype(first, plan.options.precision)  # a precision the device lacks fails before any work
    weights = tensor_bytes(target.descriptor.module)
    # Loaded weights already sit in host memory; everything else is allocated on the device to come.
    pending = 0 if target.weights is not None and first.type == "cpu" else weights
    if pending > free_memory(first):
        raise DeviceError(
            f"Expected {target.label} to fit in {first} memory, but its weights alone need {_gib(pending)} "
            f"and {_gib(free_memory(first))} are free"
        )
    per_pixel = estimate_bytes_per_pixel(target.descriptor)  # on the meta device when no weights were loaded
    checked = [
        _checked(
            result, first, plan, per_pixel, target.descriptor.out_channels, pending + _child_copy(first, plan, weights)
        )
        for result in results
    ]
    if all(result.error for result in checked):
        return str(first), checked
    descriptor = instantiate(target, first)
    measured = []
    with engine_announcements() as announcements:
        for result in checked:
            seen = len(announcements)
            measured.append(result if result.error else _measure(target, descriptor, result, plan, per_pixel, weights))
            notes.extend(f"{result.height}x{result.width}: {message}" for message in announcements[seen:])
    return str(descriptor.device), measured


def _child_copy(device: torch.device, plan: _Plan, weights: int) -> int:
    """Bytes of the second copy of the weights that the CPU peak-memory process builds."""
    return weights if plan.memory and device.type == "cpu" else 0


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now: the whole free memory, where the engine's budget takes a share."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        return cpu_available_memory()
    return available_memory(device)


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def _checked(
    result: SizeResult, device: torch.device, plan: _Plan, per_pixel: float, out_channels: int, resident: int
) -> SizeResult:
    """``result`` with an ``out of memory`` error when its size cannot fit (estimated before allocating).

    The pass needs the engine's activation estimate for the pixels in flight plus ``resident`` bytes
    not yet allocated on ``device`` (weights); the images (input, padded copy, blended output and its
    weights) live on the device without tiling, on the CPU with.
    """
    batch, channels, height, width = result.input_shape
    planes = (2 * channels + out_channels + 1) * _FLOAT32_BYTES * batch * height * width
    tile = plan.options.tile
    in_flight = batch * height * width if tile is None else min(tile, height) * min(tile, width)
    needs: dict[torch.device, float] = defaultdict(float)
    needs[device] += per_pixel * in_flight + resident
    needs[device if tile is None else torch.device("cpu")] += planes
    for where, need in needs.items():
        free = free_memory(where)
        if need > free:
            error = f"out of memory: needs about {_gib(need)}, {where} has {_gib(free)} free"
            return replace(result, device=str(device), error=error)
    return result


def _measure(
    target: ProfileTarget, descriptor: ModelDescriptor, result: SizeResult, plan: _Plan, per_pixel: float, weights: int
) -> SizeResult:
    """One size's latency and peak memory; running out of memory is a result, not a failure."""
    device = descriptor.device
    checked = _checked(result, device, plan, per_pixel, descriptor.out_channels, _child_copy(device, plan, weights))
    if checked.error:  # free memory has shrunk since the first check, or the run fell back to another device
        return checked
    options = plan.options_for(result.input_shape)
    forward = make_forward(descriptor, options)
    # Without tiling the image lives on the device (the network's cost); tiled, on the CPU as inference holds it.
    where = descriptor.device if plan.options.tile is None else torch.device("cpu")
    x = torch.rand(plan.batch, target.in_channels, result.height, result.width, device=where)
    try:
        timing = (
            measure_latency(
                forward,
                x,
                device=descriptor.device,
                warmup=plan.warmup,
                repeats=plan.repeats,
                pixels=result.height * result.width,
            )
            if plan.latency
            else None
        )
        peak = _peak_memory(target, forward, x, descriptor.device, options) if plan.memory else None
    except (RuntimeError, DeviceError) as exc:
        if not (is_out_of_memory(exc) or "out of memory" in str(exc)):
            raise
        del x
        if descriptor.device.type == "cuda":
            torch.cuda.empty_cache()
        return replace(result, device=str(descriptor.device), error="out of memory")
    return replace(result, device=str(descriptor.device), latency=timing, memory=peak)


def _peak_memory(
    target: ProfileTarget, forward: Any, x: torch.Tensor, device: torch.device, options: RunOptions
) -> PeakMemory:
    if device.type == "cuda":
        return measure_cuda_peak(forward, x, device)
    if device.type == "cpu":
        request = PeakRequest(
            arch=target.arch,
            config=target.config,
            input_shape=list(x.shape),
            options=asdict(options),
            threads=torch.get_num_threads(),
        )
        return measure_cpu_peak(request)
    return PeakMemory(peak_bytes=None, method=f"unavailable: {device.type} has no peak-memory counter")
