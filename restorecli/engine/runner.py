"""Run a restoration model on a tensor or an image array: padding, tiling, precision, recovery.

Memory. The full image, its padded copy and the blended result stay where the input lives
(normally the CPU); only one batch of tiles at a time goes to the model's device, so device memory
is bounded by ``tile_batch`` tiles, not by the image. With ``tile=None`` the tile is chosen from a
per-pixel memory estimate and the device's free memory: the whole image when it fits (on the
CPU, when it fits a fixed working budget: tiles are faster per pixel there and keep memory flat).

Recovery. When the device runs out of memory the same image is retried with fewer tiles per batch,
then with tiles half as large (down to :func:`~restorecli.engine.tiling.minimum_tile`); when even
that fails, or the device lacks an operator (MPS), the model moves to the next device of
:func:`~restorecli.engine.device.fallback_chain` and ``descriptor.device`` is updated, so later
calls start there. Each recovery is announced with one ``logging`` WARNING on the
``restorecli.engine`` logger (printed to stderr by Python's last-resort handler when the
application configures no logging). Logging rather than ``warnings.warn`` so the message is one
clean line in the CLI and can sit above a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from restorecli.engine.allocator import keep_freed_memory
from restorecli.engine.device import (
    PRECISION_DTYPES,
    fallback_chain,
    is_out_of_memory,
    is_unsupported_operator,
    precision_dtype,
    supported_precisions,
)
from restorecli.engine.padding import crop, pad_to_multiple, round_up
from restorecli.engine.tiling import Tile, merge_tiles, minimum_tile, plan_tiles, validate_tile
from restorecli.errors import ConfigError, DeviceError, ImageReadError
from restorecli.images import from_tensor, merge_alpha, split_alpha, to_tensor
from restorecli.zoo.descriptor import ModelDescriptor

logger = logging.getLogger("restorecli.engine")

DEFAULT_TILE_OVERLAP = 32
# Most tiles per forward pass when tile_batch is None. On the CPU batching measured no faster
# (bench/bench_inference.py) while multiplying memory, so it stays at one there.
MAX_AUTO_TILE_BATCH = {"cpu": 1, "cuda": 8, "mps": 8}
# Share of the device's free memory one batch of tiles may use; the CPU also holds the images.
_MEMORY_FRACTION = {"cpu": 0.5, "cuda": 0.8, "mps": 0.8}
_UNKNOWN_CPU_MEMORY = 4 << 30
# Most estimated work memory for one batch of tiles on the CPU, free memory permitting: tiles
# larger than this gain little speed per pixel, and memory grows with them. Measured whole-process
# peaks (bench/bench_performance.py): Restormer 1024x1024 in 3 x 3 tiles of 368 px 2,114 MiB,
# NAFNet-w32 1,210 MiB.
CPU_WORK_BUDGET = 2 << 30
_CONVOLUTIONS = frozenset(
    {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
)
# Peak memory of a forward pass in units of its widest convolution output: measured on the CPU
# (whole-process peak less the idle process) about 12x for Restormer (widest: a GDFN half) and for
# NAFNet (widest: the 2c-channel map before its gate; skips and gates stay alive).
_ACTIVATION_FACTOR = 12
_PROBE_SIDE = 32
_bytes_per_pixel_cache: weakref.WeakKeyDictionary[nn.Module, dict[str, float]] = weakref.WeakKeyDictionary()

_warned_tiling: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class _DeviceFailed(Exception):
    """The current device cannot run this model on this image; ``reason`` says why."""


@dataclass(frozen=True)
class _RunOptions:
    """What one restore call asks of every attempt: requested tiling, autocast dtype, memory format.

    ``tile``/``tile_batch`` None: sized to the device's free memory per attempt.
    """

    tile: int | None
    overlap: int
    tile_batch: int | None
    dtype: torch.dtype
    channels_last: bool


@dataclass(frozen=True)
class _Tiling:
    """Tile side (at least the image side means untiled) and how many tiles go into one forward pass."""

    tile: int
    batch: int

    def describe(self, height: int, width: int) -> str:
        size = "untiled" if self.tile >= max(height, width) else f"{self.tile}-pixel tiles"
        return f"{size}, {self.batch} per batch" if self.batch > 1 else size


def available_memory(device: torch.device) -> int:
    """Bytes the runner may use on ``device`` now: a fraction of its free memory.

    CUDA counts free device memory plus PyTorch's cached-but-unused blocks; MPS the recommended
    working set minus what the driver holds; the CPU the kernel's ``MemAvailable`` (4 GiB assumed
    where that cannot be read).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    elif device.type == "mps":
        free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    else:
        free = cpu_available_memory()
    return int(free * _MEMORY_FRACTION.get(device.type, _MEMORY_FRACTION["cpu"]))


def cpu_available_memory() -> int:
    """``MemAvailable`` from /proc/meminfo, else free physical pages, else a conservative guess."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return _UNKNOWN_CPU_MEMORY


def estimate_bytes_per_pixel(descriptor: ModelDescriptor) -> float:
    """Peak activation bytes per input pixel of one forward pass, from a small probe (cached per module).

    Runs the model in fp32 on a ``32 x 32`` (rounded up to the padding multiple) input, watching the
    output of every convolution, a module layer or a functional call through its weights (the maps
    are born in convolutions; weight-sized tensors must not count), and takes
    :data:`_ACTIVATION_FACTOR` times the widest one per pixel. Coarse by design: the estimate only
    sizes automatic tiles, and running out of memory anyway triggers smaller tiles. Every precision
    uses the fp32 estimate: autocast keeps norms and residual sums in fp32, so half precision does
    not halve the peak (Restormer at 1024x1024 on the CPU: 1222 MiB in bf16, 1314 MiB in fp32), and
    one tile plan per image keeps fp32 and bf16 outputs comparable.
    """
    key = str(descriptor.device)
    cached = _bytes_per_pixel_cache.setdefault(descriptor.module, {})
    if key not in cached:
        side = round_up(_PROBE_SIDE, descriptor.pad_multiple)
        probe = torch.zeros(1, descriptor.in_channels, side, side).to(descriptor.device)
        with torch.inference_mode(), _WidestConvolution() as watcher:
            descriptor.module(probe)
        widest = max(watcher.widest, probe.numel() * probe.element_size())
        cached[key] = _ACTIVATION_FACTOR * widest / (side * side)
    return cached[key]


class _WidestConvolution(TorchFunctionMode):
    """Inside the block, records the byte size of the largest convolution output."""

    def __init__(self) -> None:
        super().__init__()
        self.widest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]  # torch's protocol
        result = func(*args, **(kwargs or {}))
        if func in _CONVOLUTIONS:
            self.widest = max(self.widest, result.numel() * result.element_size())
        return result


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[object]:
    """Autocast to ``dtype`` on ``device``; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _release_cached_memory(device: torch.device) -> None:
    """Return the allocator's cached blocks so a retry starts from an empty device."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _choose_tiling(descriptor: ModelDescriptor, padded_shape: Sequence[int], options: _RunOptions) -> _Tiling:
    """Explicit choices win; what is left is sized so one batch of tiles fits the device's free memory."""
    height, width = padded_shape[-2:]
    multiple, overlap = descriptor.pad_multiple, options.overlap
    tile, tile_batch = options.tile, options.tile_batch
    if tile is not None and tile_batch is not None:
        return _Tiling(tile, tile_batch)
    budget = available_memory(descriptor.device)
    if descriptor.device.type == "cpu":
        budget = min(budget, CPU_WORK_BUDGET)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    if tile is None:
        tile = max(height, width)
        if height * width * per_pixel > budget:
            fitting = int(math.sqrt(budget / per_pixel)) // multiple * multiple
            tile = max(fitting, minimum_tile(overlap, multiple))
            # A local model's tiled output equals its untiled one; say so otherwise (once per model).
            if not descriptor.local and descriptor.module not in _warned_tiling:
                _warned_tiling.add(descriptor.module)
                logger.warning(
                    "%dx%d exceeds the %s memory budget: tiling at %d px; %s's global operators then see each "
                    "tile rather than the whole image (a larger --tile trades memory for that context)",
                    height, width, descriptor.device, tile, descriptor.name,
                )
    if tile_batch is None:
        tiles = padded_shape[0] * len(plan_tiles(height, width, tile, overlap, multiple))
        tile_pixels = min(tile, height) * min(tile, width)
        fitting = int(budget // (tile_pixels * per_pixel))
        most = MAX_AUTO_TILE_BATCH.get(descriptor.device.type, 1)
        tile_batch = max(min(fitting, tiles, most), 1)
    return _Tiling(tile, tile_batch)


def _smaller(tiling: _Tiling, height: int, width: int, overlap: int, multiple: int) -> _Tiling | None:
    """The next, smaller tiling to try after running out of memory, or None when none is left."""
    if tiling.batch > 1:
        return replace(tiling, batch=tiling.batch // 2)
    half = min(tiling.tile, max(height, width)) // 2 // multiple * multiple
    if half < minimum_tile(overlap, multiple):
        return None
    return replace(tiling, tile=half)


def _forward_tiles(
    descriptor: ModelDescriptor,
    padded: Tensor,
    jobs: list[tuple[int, Tile]],
    batch: int,
    options: _RunOptions,
) -> Iterator[tuple[int, Tile, Tensor]]:
    """Run the model on ``batch`` tiles at a time; yield ``(image index, tile, output (C, h, w))``."""
    device = descriptor.device
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        inputs = torch.stack([tile.window(padded[index]) for index, tile in chunk]).to(device)
        if options.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(device, options.dtype):
            outputs = descriptor.module(inputs)
        expected = (len(chunk), descriptor.out_channels, *inputs.shape[-2:])
        if tuple(outputs.shape) != expected:
            raise ConfigError(
                f"Expected model output of shape {expected}, but got {tuple(outputs.shape)} ({descriptor.name})"
            )
        for (index, tile), output in zip(chunk, outputs.float(), strict=True):
            yield index, tile, output


def _run(descriptor: ModelDescriptor, padded: Tensor, tiling: _Tiling, options: _RunOptions) -> Tensor:
    """One attempt: plan the tiles, run them, blend them into the padded-size output."""
    count, _, height, width = padded.shape
    plan = plan_tiles(height, width, tiling.tile, options.overlap, descriptor.pad_multiple)
    jobs = [(index, tile) for index in range(count) for tile in plan]
    pieces = _forward_tiles(descriptor, padded, jobs, tiling.batch, options)
    return merge_tiles(pieces, (count, descriptor.out_channels, height, width), options.overlap, padded.device)


def _run_on_device(descriptor: ModelDescriptor, padded: Tensor, options: _RunOptions) -> Tensor:
    """Run on ``descriptor.device``, shrinking the tiling after each out-of-memory error.

    Raises:
        _DeviceFailed: nothing fits even at the smallest tiles, or the device lacks an operator.
    """
    device = descriptor.device
    height, width = padded.shape[-2:]
    first: _Tiling | None = None
    tiling: _Tiling | None = None
    while True:
        try:
            if tiling is None:
                tiling = first = _choose_tiling(descriptor, padded.shape, options)
            result = _run(descriptor, padded, tiling, options)
        except Exception as exc:
            if is_unsupported_operator(exc) and device.type != "cpu":
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise _DeviceFailed(f"{device} lacks an operator the model needs ({detail})") from exc
            if not is_out_of_memory(exc):
                raise
        else:
            if tiling != first and first is not None:
                logger.warning(
                    "%s ran out of memory (%s); restored with %s",
                    device,
                    first.describe(height, width),
                    tiling.describe(height, width),
                )
            return result
        # Out of memory: the exception and its frames are gone here, so cached blocks can be released.
        _release_cached_memory(device)
        smaller = None if tiling is None else _smaller(tiling, height, width, options.overlap, descriptor.pad_multiple)
        if smaller is None:
            last = "the probe" if tiling is None else tiling.describe(height, width)
            raise _DeviceFailed(f"{device} ran out of memory even with {last}")
        tiling = smaller


def check_options(
    descriptor: ModelDescriptor, *, tile: int | None, tile_overlap: int, precision: str, tile_batch: int | None
) -> torch.dtype:
    """Validate the run options for ``descriptor`` before any work; returns the autocast dtype.

    Raises:
        ConfigError: a non-positive tile batch, a negative overlap, a tile not larger than the overlap
            by one padding multiple, or a precision the device lacks.
    """
    if tile is not None and tile < 1:
        raise ConfigError(f"Expected a positive tile size, but got {tile}")
    if tile_batch is not None and tile_batch < 1:
        raise ConfigError(f"Expected at least one tile per batch, but got {tile_batch}")
    if tile_overlap < 0:
        raise ConfigError(f"Expected a tile overlap of 0 or more pixels, but got {tile_overlap}")
    if tile is not None:
        validate_tile(tile, tile_overlap, descriptor.pad_multiple)
    return precision_dtype(descriptor.device, precision)


def restore_tensor(
    descriptor: ModelDescriptor,
    x: Tensor,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: str = "fp32",
    tile_batch: int | None = None,
    channels_last: bool | None = None,
    fallback: bool = True,
) -> Tensor:
    """Restore ``(N, C_in, H, W)`` float images in ``[0, 1]``; returns ``(N, C_out, H, W)`` float32 in ``[0, 1]``.

    Args:
        descriptor: the loaded model; ``descriptor.device`` changes if the run falls back.
        x: input on any device (the result is assembled there; tiles go to the model's device).
        tile: tile side in pixels (rounded down to the padding multiple), or None to tile only when
            the image would not fit in memory.
        tile_overlap: pixels shared by neighbouring tiles; a quarter of it on each side is pure
            context, the rest is blended (see :mod:`restorecli.engine.tiling`).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast); see
            :func:`~restorecli.engine.device.supported_precisions`.
        tile_batch: tiles per forward pass, or None for as many as fit (at most 8 on an accelerator, 1
            on the CPU).
        channels_last: feed tiles in channels-last memory format; None follows the architecture's
            preference (``descriptor.channels_last``), since the gain depends on the network: on the
            CPU it made NAFNet about 30% and Restormer 57% faster (``bench/bench_performance.py --levers``).
        fallback: move to the next device when this one fails (announced); False raises DeviceError.

    Raises:
        ConfigError: wrong shape or channel count, bad tile options, unsupported precision.
        DeviceError: the model fails on every device it may use.
    """
    if x.ndim != 4 or x.shape[1] != descriptor.in_channels or not x.is_floating_point():
        raise ConfigError(
            f"Expected a float tensor (N, {descriptor.in_channels}, H, W) for {descriptor.name}, "
            f"but got {x.dtype} {tuple(x.shape)}"
        )
    options = _RunOptions(
        tile=tile,
        overlap=tile_overlap,
        tile_batch=tile_batch,
        dtype=check_options(descriptor, tile=tile, tile_overlap=tile_overlap, precision=precision, tile_batch=tile_batch),
        channels_last=descriptor.channels_last if channels_last is None else channels_last,
    )
    keep_freed_memory()
    height, width = x.shape[-2:]
    padded = pad_to_multiple(x.float(), descriptor.pad_multiple, descriptor.pad_mode)
    while True:
        device = descriptor.device
        try:
            result = _run_on_device(descriptor, padded, options)
        except _DeviceFailed as failure:
            chain = fallback_chain(device) if fallback else []
            if not chain:
                raise DeviceError(f"Expected {descriptor.name} to run on {device}, but {failure}") from failure
            move_to(descriptor, chain[0])
            note = ""
            if precision not in supported_precisions(chain[0]):
                precision, note = "fp32", f" in fp32 ({chain[0]} has no {precision})"
            options = replace(options, dtype=PRECISION_DTYPES[precision])
            logger.warning("%s; continuing on %s%s", failure, chain[0], note)
            continue
        return crop(result, height, width).clamp_(0, 1)


def move_to(descriptor: ModelDescriptor, device: torch.device) -> None:
    """Move the model and record its new device (the descriptor is the engine's source of truth)."""
    _release_cached_memory(descriptor.device)
    descriptor.module.to(device)
    descriptor.device = device


def restore_array(
    descriptor: ModelDescriptor,
    array: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: str = "fp32",
    tile_batch: int | None = None,
    channels_last: bool | None = None,
    fallback: bool = True,
) -> np.ndarray:
    """Restore image pixels: ``(H, W)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W, 6)`` dual-pixel.

    The dtype (uint8 or uint16) is preserved and alpha is passed through unchanged. Channel
    adaptation, for images whose colour channels differ from the model's input:

    - a 1-channel (grey) model on RGB restores each channel as its own grey image;
    - a 3-channel model on a grey image sees the grey plane replicated to RGB, and its output is
      averaged back to one channel, so the result stays grey.

    A dual-pixel model (6 channels: left and right views stacked) takes ``(H, W, 6)`` and returns RGB.
    Options are those of :func:`restore_tensor`.

    Raises:
        ImageReadError: not uint8/uint16 pixels, or channels the model cannot take.
    """
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3):
        raise ImageReadError(f"Expected (H, W[, C]) uint8 or uint16 pixels, but got {array.dtype} {array.shape}")
    color, alpha = split_alpha(array)
    channels = 1 if color.ndim == 2 else color.shape[2]
    wanted = descriptor.in_channels
    x = to_tensor(color)

    def run(batch: Tensor) -> Tensor:
        return restore_tensor(
            descriptor,
            batch,
            tile=tile,
            tile_overlap=tile_overlap,
            precision=precision,
            tile_batch=tile_batch,
            channels_last=channels_last,
            fallback=fallback,
        )

    if channels == wanted:
        restored = run(x)
    elif wanted == 1 and channels == 3:
        restored = run(x.transpose(0, 1)).transpose(0, 1)
    elif wanted == 3 and channels == 1:
        restored = run(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
    else:
        raise ImageReadError(
            f"Expected an image with {wanted} colour channel(s) (or 1/3 to adapt) for {descriptor.name}, "
            f"but got {channels}"
        )
    return merge_alpha(from_tensor(restored, array.dtype), alpha)
