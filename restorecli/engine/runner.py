"""Run a restoration model on a tensor or an image array: padding, tiling, precision, recovery.

Every entry point takes one :class:`~restorecli.engine.options.RunOptions` record, built once by the
CLI or the API.

Memory. The full image, its padded copy and the blended result stay where the input lives
(normally the CPU); only one batch of tiles at a time goes to the model's device, so device memory
is bounded by the tile batch, not by the image. With ``tile=None`` the image runs whole when a
per-pixel estimate of its forward pass fits a share of the device's free memory (or
``max_memory``), and is tiled otherwise, announced: no network here has a receptive field that a
tile's margin covers, so tiles change the output.
Models that support streaming (Restormer, NAFNet: :mod:`restorecli.archs.streaming`) are not tiled
automatically: every block runs over horizontal strips of the whole image, sized to the same budget,
and the output equals the whole-image forward; tiles remain for them only when not even the
smallest strip fits, or when ``tile`` is given.

Scale. A super-resolution model (``descriptor.scale > 1``) returns images ``scale`` times larger:
tiles are planned on the input and blended in output coordinates (the overlap scaled alike, see
:mod:`restorecli.engine.tiling`), and the result is cropped to ``scale`` times the input size. Inputs
are padded to the model's size rule (multiple, minimum side, square: :func:`padded_size`), with the
descriptor's padding mode.

Precision. A half-precision (fp16/bf16) batch of tiles whose output holds NaN or Inf (an overflow)
is run again in fp32, announced once per model.

Recovery. When the device runs out of memory the same image is retried with fewer tiles per batch,
then with tiles half as large (down to :func:`~restorecli.engine.tiling.minimum_tile`); when even
that fails, or the device lacks an operator (MPS), the model moves to the next device of
:func:`~restorecli.engine.device.fallback_chain` if the options allow it (by default: only a device
chosen by ``auto``, see :func:`~restorecli.engine.device.may_fall_back`), so later calls start
there. Each recovery is announced with one ``logging`` WARNING on the ``restorecli.engine`` logger
(printed to stderr by Python's last-resort handler when the application configures no logging).
Logging rather than ``warnings.warn`` so the message is one clean line in the CLI and can sit above
a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from restorecli.archs.streaming import (
    largest_strip_height,
    streamed_forward,
    streams_faster_on_cpu,
    supports_streaming,
)
from restorecli.engine.allocator import keep_freed_memory, release_freed_memory
from restorecli.engine.device import (
    PRECISION_DTYPES,
    fallback_chain,
    is_out_of_memory,
    is_unsupported_operator,
    precision_dtype,
    supported_precisions,
)
from restorecli.engine.host_memory import cpu_available_memory
from restorecli.engine.options import RunOptions
from restorecli.engine.padding import crop, pad_to, padded_size, round_up
from restorecli.engine.tiling import Tile, merge_tiles, minimum_tile, plan_tiles, validate_tile
from restorecli.errors import ConfigError, DeviceError, ImageReadError
from restorecli.images import from_tensor, merge_alpha, split_alpha, to_tensor
from restorecli.zoo.descriptor import ModelDescriptor

logger = logging.getLogger("restorecli.engine")

# Most tiles per forward pass when tile_batch is None. On the CPU batching measured no faster
# (bench/bench_inference.py) while multiplying memory, so it stays at one there.
MAX_AUTO_TILE_BATCH = {"cpu": 1, "cuda": 8, "mps": 8}
# Share of the device's free memory one batch of tiles may use; the CPU also holds the images.
_MEMORY_FRACTION = {"cpu": 0.5, "cuda": 0.8, "mps": 0.8}
# How a model streams on the CPU (restorecli.archs.streaming): the temporaries of one piece of a strip
# should stay in the caches, and the halo pixels recomputed around it should stay few. Pieces of about
# 64 x 128 pixels do both (bench/bench_streaming.py --modes strip-48x8,strip-64x8); fewer rows when the
# memory budget allows fewer. Accelerators take the largest strip that fits instead: fewer, larger kernels.
STREAM_CPU_STRIP_ROWS = 64
STREAM_CPU_PIECE_WIDTH = 128
_CONVOLUTIONS = frozenset({F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d})
# Peak memory of a forward pass in units of its widest convolution output (skips, gates and attention
# intermediates stay alive beside the widest map), calibrated on the CPU against measured peaks of
# untiled runs of Restormer and NAFNet: bench/bench_memory_estimate.py, bench/results/memory-estimate.txt.
_ACTIVATION_FACTOR = 8
_PROBE_SIDE = 32
_bytes_per_pixel_cache: weakref.WeakKeyDictionary[nn.Module, dict[str, float]] = weakref.WeakKeyDictionary()

_warned_tiling: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_warned_non_finite: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class _DeviceFailed(Exception):
    """The current device cannot run this model on this image; ``reason`` says why."""


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
    working set minus what the driver holds; the CPU the kernel's ``MemAvailable`` capped by the
    process's memory cgroup (:func:`~restorecli.engine.host_memory.cpu_available_memory`).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    elif device.type == "mps":
        free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    else:
        free = cpu_available_memory()
    return int(free * _MEMORY_FRACTION.get(device.type, _MEMORY_FRACTION["cpu"]))


def estimate_bytes_per_pixel(descriptor: ModelDescriptor) -> float:
    """Peak activation bytes per input pixel of one forward pass, from a small probe (cached per module).

    Runs the model in fp32 on a ``32 x 32`` (grown to the model's size rule) input, watching the
    output of every convolution, a module layer or a functional call through its weights (the maps
    are born in convolutions; weight-sized tensors must not count), and takes
    :data:`_ACTIVATION_FACTOR` times the widest one per pixel. Coarse by design: the estimate only
    sizes automatic tiles, and running out of memory anyway triggers smaller tiles. Every precision
    uses the fp32 estimate: autocast keeps norms and residual sums in fp32, so half precision does
    not halve the peak (Restormer at 1024x1024 on the CPU: 1222 MiB in bf16, 1314 MiB in fp32), and
    one tile plan per image keeps fp32 and bf16 outputs comparable. A descriptor that knows its
    figure (``ModelDescriptor.bytes_per_pixel``: an ONNX graph, opaque to the probe) gives it instead.
    """
    if descriptor.bytes_per_pixel is not None:
        return descriptor.bytes_per_pixel
    key = str(descriptor.device)
    cached = _bytes_per_pixel_cache.setdefault(descriptor.module, {})
    if key not in cached:
        side = round_up(max(_PROBE_SIDE, descriptor.min_size), descriptor.pad_multiple)
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


def memory_budget(descriptor: ModelDescriptor, options: RunOptions) -> int:
    """Bytes one batch of tiles may use: a share of the free memory, within ``options.max_memory``.

    No fixed cap: tiles change the output, so an image runs whole whenever it fits.
    """
    budget = available_memory(descriptor.device)
    if options.max_memory is not None:
        budget = min(budget, options.max_memory)
    return budget


def _choose_tiling(descriptor: ModelDescriptor, padded_shape: Sequence[int], options: RunOptions) -> _Tiling:
    """Explicit choices win; what is left is sized so one batch of tiles fits :func:`memory_budget`."""
    height, width = padded_shape[-2:]
    multiple, overlap = descriptor.pad_multiple, options.overlap
    tile, tile_batch = options.tile, options.tile_batch
    if tile is not None and tile + multiple > max(height, width):
        tile = max(height, width)  # --tile 100 on a 100x100 image padded to 104: one whole pass, not four tiles
    if tile is not None and tile_batch is not None:
        return _Tiling(tile, tile_batch)
    budget = memory_budget(descriptor, options)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    if tile is None:
        tile = max(height, width)
        if height * width * per_pixel > budget:
            fitting = int(math.sqrt(budget / per_pixel)) // multiple * multiple
            tile = max(fitting, minimum_tile(overlap, multiple, descriptor.min_size))
            # The networks here see further than a tile's margin (attention, global pooling, deep
            # receptive fields), so their tiled output differs: say so (once per model).
            if _first_time(_warned_tiling, descriptor.module):
                logger.warning(
                    "%dx%d needs about %s but %s allows %s: tiling at %d px; %s then sees each tile rather "
                    "than the whole image, so the output differs from an untiled run (a larger --tile or "
                    "--max-memory trades memory for that context)",
                    height,
                    width,
                    _gib(height * width * per_pixel),
                    descriptor.device,
                    _gib(budget),
                    tile,
                    descriptor.name,
                )
    if tile_batch is None:
        tiles = padded_shape[0] * len(plan_tiles(height, width, tile, overlap, multiple, descriptor.min_size))
        tile_pixels = min(tile, height) * min(tile, width)
        fitting = int(budget // (tile_pixels * per_pixel))
        most = MAX_AUTO_TILE_BATCH.get(descriptor.device.type, 1)
        tile_batch = max(min(fitting, tiles, most), 1)
    return _Tiling(tile, tile_batch)


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def _first_time(warned: weakref.WeakSet[nn.Module], module: nn.Module) -> bool:
    """True the first time ``module`` is seen by ``warned``: one warning per model, not per image."""
    if module in warned:
        return False
    warned.add(module)
    return True


def _smaller(tiling: _Tiling, height: int, width: int, overlap: int, descriptor: ModelDescriptor) -> _Tiling | None:
    """The next, smaller tiling to try after running out of memory, or None when none is left."""
    if tiling.batch > 1:
        return replace(tiling, batch=tiling.batch // 2)
    multiple = descriptor.pad_multiple
    half = min(tiling.tile, max(height, width)) // 2 // multiple * multiple
    if half < minimum_tile(overlap, multiple, descriptor.min_size):
        return None
    return replace(tiling, tile=half)


def _forward(
    descriptor: ModelDescriptor, inputs: Tensor, options: RunOptions, run: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """One forward pass (``run``, by default the module) under the requested autocast; a
    half-precision output that is not finite (an overflow, typically fp16's 65504 ceiling) is
    computed again in fp32."""
    device, dtype = descriptor.device, PRECISION_DTYPES[options.precision]
    run = run or descriptor.module
    with torch.inference_mode(), _autocast(device, dtype):
        outputs = run(inputs)
    if dtype != torch.float32 and not bool(torch.isfinite(outputs).all()):
        if _first_time(_warned_non_finite, descriptor.module):
            logger.warning(
                "%s produced NaN or Inf in %s on %s; such tiles are run again in fp32",
                descriptor.name,
                options.precision,
                device,
            )
        with torch.inference_mode():
            outputs = run(inputs)
    return outputs


def _forward_tiles(
    descriptor: ModelDescriptor,
    padded: Tensor,
    jobs: list[tuple[int, Tile]],
    batch: int,
    options: RunOptions,
) -> Iterator[tuple[int, Tile, Tensor]]:
    """Run the model on ``batch`` tiles at a time; yield ``(image index, output tile, output (C, h, w))``.

    The output tile is the input tile :meth:`~restorecli.engine.tiling.Tile.scaled` by the model's scale.
    """
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        inputs = torch.stack([tile.window(padded[index]) for index, tile in chunk]).to(descriptor.device)
        if options.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        outputs = _forward(descriptor, inputs, options)
        scale = descriptor.scale
        expected = (len(chunk), descriptor.out_channels, inputs.shape[-2] * scale, inputs.shape[-1] * scale)
        if tuple(outputs.shape) != expected:
            raise ConfigError(
                f"Expected model output of shape {expected}, but got {tuple(outputs.shape)} ({descriptor.name})"
            )
        for (index, tile), output in zip(chunk, outputs.float(), strict=True):
            yield index, tile.scaled(scale), output


def _run(descriptor: ModelDescriptor, padded: Tensor, tiling: _Tiling, options: RunOptions) -> Tensor:
    """One attempt: plan the tiles, run them, blend them into the padded-size output (times the scale)."""
    count, _, height, width = padded.shape
    plan = plan_tiles(height, width, tiling.tile, options.overlap, descriptor.pad_multiple, descriptor.min_size)
    jobs = [(index, tile) for index in range(count) for tile in plan]
    pieces = _forward_tiles(descriptor, padded, jobs, tiling.batch, options)
    scale = descriptor.scale
    shape = (count, descriptor.out_channels, height * scale, width * scale)
    return merge_tiles(pieces, shape, options.overlap * scale, padded.device)


@dataclass(frozen=True)
class _Streaming:
    """How an image streams through a model: rows per strip, pieces per strip across the width, and
    whether freed heap pages go back to the kernel between stages (when the image would not fit whole)."""

    strip: int
    pieces: int
    release: bool = False


def _streaming(
    descriptor: ModelDescriptor, padded_shape: Sequence[int], options: RunOptions, whole_failed: bool = False
) -> _Streaming | None:
    """How this image streams through the model, or None to run it whole or tiled.

    A model that supports streaming (:mod:`restorecli.archs.streaming`) streams unless tiles are
    asked for: its output equals the whole-image forward, in a fraction of the memory. An image whose
    whole forward fits the budget runs whole instead, unless streaming is also faster there
    (:func:`~restorecli.archs.streaming.streams_faster_on_cpu`) or that whole forward has already run
    out of memory (``whole_failed``: the estimate was low). On the CPU a strip is
    :data:`STREAM_CPU_STRIP_ROWS` rows in pieces of about :data:`STREAM_CPU_PIECE_WIDTH` columns;
    elsewhere the largest strip the budget allows. None when not even the smallest strip fits
    (tiles then, announced).
    """
    if options.tile is not None or not supports_streaming(descriptor.module):
        return None
    module, (height, width) = descriptor.module, padded_shape[-2:]
    budget = memory_budget(descriptor, options)
    on_cpu = descriptor.device.type == "cpu"
    fits_whole = padded_shape[0] * height * width * estimate_bytes_per_pixel(descriptor) <= budget
    fits_whole = fits_whole and not whole_failed
    if fits_whole and not (on_cpu and streams_faster_on_cpu(module)):
        return None
    pieces = max(round(width / STREAM_CPU_PIECE_WIDTH), 1) if on_cpu else 1
    dtype = PRECISION_DTYPES[options.precision]
    strip = largest_strip_height(module, tuple(padded_shape), budget, dtype, pieces=pieces)
    if strip is None:
        return None
    if not on_cpu:
        return _Streaming(strip, 1)
    return _Streaming(min(strip, STREAM_CPU_STRIP_ROWS), pieces, release=not fits_whole)


def _run_streamed(descriptor: ModelDescriptor, padded: Tensor, streaming: _Streaming, options: RunOptions) -> Tensor:
    """The whole padded batch through :func:`~restorecli.archs.streaming.streamed_forward`: no tiles, no blending."""
    height, width = padded.shape[-2:]
    logger.debug(
        "%dx%d streams through %s in %d-row strips, %d piece(s) across",
        height,
        width,
        descriptor.name,
        streaming.strip,
        streaming.pieces,
    )

    def stream(batch: Tensor) -> Tensor:
        return streamed_forward(
            descriptor.module,
            batch,
            streaming.strip,
            pieces=streaming.pieces,
            channels_last=bool(options.channels_last),  # each window is laid out so; the input keeps its own
            between_stages=release_freed_memory if streaming.release else None,
        )

    outputs = _forward(descriptor, padded.to(descriptor.device), options, stream)
    # A copy outside inference mode (three channels): callers may update the result in place.
    return outputs.to(padded.device, torch.float32, copy=True)


def _run_on_device(descriptor: ModelDescriptor, padded: Tensor, options: RunOptions) -> Tensor:
    """Run one padded batch of images on ``descriptor.device``, shrinking the tiling after each
    out-of-memory error. The unit a fallback repeats on the next device.

    Raises:
        _DeviceFailed: nothing fits even at the smallest tiles, or the device lacks an operator.
    """
    device = descriptor.device
    height, width = padded.shape[-2:]
    streamed, result = _try_streaming(descriptor, padded, options)
    if result is not None:
        return result
    first: _Tiling | None = None
    tiling: _Tiling | None = None
    while True:
        try:
            if tiling is None:
                tiling = first = _choose_tiling(descriptor, padded.shape, options)
            result = _run(descriptor, padded, tiling, options)
        except Exception as exc:
            if not _out_of_memory_on(device, exc):
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
        if not streamed and tiling == first:  # the estimate's plan failed: streaming is exact
            streamed, result = _try_streaming(descriptor, padded, options, whole_failed=True)
            if result is not None:
                logger.warning("%s ran out of memory on the whole image; streamed it instead (the same output)", device)
                return result
        smaller = None if tiling is None else _smaller(tiling, height, width, options.overlap, descriptor)
        if smaller is None:
            last = "the probe" if tiling is None else tiling.describe(height, width)
            raise _DeviceFailed(f"{device} ran out of memory even with {last}")
        tiling = smaller


def _try_streaming(
    descriptor: ModelDescriptor, padded: Tensor, options: RunOptions, whole_failed: bool = False
) -> tuple[bool, Tensor | None]:
    """Stream the batch when :func:`_streaming` says so: ``(tried, output)``. The output is None when
    streaming was not chosen, or ran out of memory (cached memory is released then: tiles follow)."""
    device = descriptor.device
    try:
        streaming = _streaming(descriptor, padded.shape, options, whole_failed)  # its memory probe runs the model
        if streaming is None:
            return False, None
        return True, _run_streamed(descriptor, padded, streaming, options)
    except Exception as exc:
        if not _out_of_memory_on(device, exc):
            raise
    _release_cached_memory(device)  # the exception and its frames are gone here
    return True, None


def _out_of_memory_on(device: torch.device, exc: Exception) -> bool:
    """Whether ``exc`` is an out-of-memory error (the caller retries with less; other errors it
    re-raises).

    Raises:
        _DeviceFailed: ``exc`` is an operator an accelerator lacks (the next device may have it).
    """
    if is_unsupported_operator(exc) and device.type != "cpu":
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _DeviceFailed(f"{device} lacks an operator the model needs ({detail})") from exc
    return is_out_of_memory(exc)


def check_options(descriptor: ModelDescriptor, options: RunOptions) -> None:
    """Check what :class:`RunOptions` cannot check alone, before any work.

    Raises:
        ConfigError: a tile not larger than the overlap by one padding multiple or smaller than the
            model's smallest input, or a precision the model's device lacks.
    """
    if options.tile is not None:
        validate_tile(options.tile, options.overlap, descriptor.pad_multiple, descriptor.min_size)
    precision_dtype(descriptor.device, options.precision)


def restore_tensor(descriptor: ModelDescriptor, x: Tensor, options: RunOptions | None = None) -> Tensor:
    """Restore ``(N, C_in, H, W)`` float images in ``[0, 1]``; returns ``(N, C_out, s * H, s * W)`` float32 in
    ``[0, 1]``, ``s`` the model's scale (1 but for super-resolution).

    Args:
        descriptor: the loaded model; its module moves to the next device if the run falls back.
        x: input on any device (the result is assembled there; tiles go to the model's device).
        options: tiling, precision, memory format, fallback and memory cap (default: ``RunOptions()``,
            whole images when they fit, fp32, the architecture's memory format).

    Raises:
        ConfigError: wrong shape or channel count, bad tile options, unsupported precision.
        DeviceError: the model fails on its device and may not fall back, or fails on every device.
    """
    options = options or RunOptions()
    if x.ndim != 4 or x.shape[1] != descriptor.in_channels or not x.is_floating_point():
        raise ConfigError(
            f"Expected a float tensor (N, {descriptor.in_channels}, H, W) for {descriptor.name}, "
            f"but got {x.dtype} {tuple(x.shape)}"
        )
    if descriptor.fell_back and options.precision not in supported_precisions(descriptor.device):
        options = replace(options, precision="fp32")  # as at the move, which said so
    check_options(descriptor, options)
    if options.channels_last is None:
        options = replace(options, channels_last=descriptor.channels_last)
    if options.fallback is None:
        fallback, refusal = (
            descriptor.auto_device,
            "a device chosen explicitly is never replaced (auto allows a fallback)",
        )
    else:
        fallback, refusal = options.fallback, "fallback is off"
    keep_freed_memory()
    height, width = x.shape[-2:]
    size = padded_size(height, width, descriptor.pad_multiple, descriptor.min_size, descriptor.square)
    padded = pad_to(x.float(), *size, descriptor.pad_mode)
    while True:
        device = descriptor.device
        try:
            result = _run_on_device(descriptor, padded, options)
        except _DeviceFailed as failure:
            chain = fallback_chain(device) if fallback else []
            if not chain:
                why = "" if fallback or device.type == "cpu" else f"; {refusal}"
                raise DeviceError(f"Expected {descriptor.name} to run on {device}, but {failure}{why}") from failure
            _move(descriptor, chain[0])
            note = ""
            if options.precision not in supported_precisions(chain[0]):
                note = f" in fp32 ({chain[0]} has no {options.precision})"
                options = replace(options, precision="fp32")
            logger.warning("%s; continuing on %s%s", failure, chain[0], note)
            continue
        return crop(result, height * descriptor.scale, width * descriptor.scale).clamp_(0, 1)


def _move(descriptor: ModelDescriptor, device: torch.device) -> None:
    """Move the model to ``device`` after a failure, releasing what it cached where it was."""
    _release_cached_memory(descriptor.device)
    descriptor.module.to(device)
    descriptor.fell_back = True


def restore_array(descriptor: ModelDescriptor, array: np.ndarray, options: RunOptions | None = None) -> np.ndarray:
    """Restore image pixels: ``(H, W)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W, 6)`` dual-pixel.

    The dtype (uint8 or uint16) is preserved and alpha is passed through unchanged (resized
    bicubically to the output by a super-resolution model: see :func:`resize_alpha`). Channel
    adaptation, for images whose colour channels differ from the model's input:

    - a 1-channel (grey) model on RGB restores each channel as its own grey image;
    - a 3-channel model on a grey image sees the grey plane replicated to RGB, and its output is
      averaged back to one channel, so the result stays grey;
    - an RGB image whose three channels are equal (a grey scan or photo saved as RGB) is restored as
      that grey image and comes back with three equal channels.

    A dual-pixel model (6 channels: left and right views stacked) takes ``(H, W, 6)`` and returns RGB.
    ``options`` as in :func:`restore_tensor`.

    Raises:
        ImageReadError: not uint8/uint16 pixels, or channels the model cannot take.
    """
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or 0 in array.shape:
        raise ImageReadError(f"Expected (H, W[, C]) uint8 or uint16 pixels, but got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:  # (H, W, 1) comes back as it came
        return restore_array(descriptor, array[:, :, 0], options)[:, :, None]
    color, alpha = split_alpha(array)
    channels = 1 if color.ndim == 2 else color.shape[2]
    wanted = descriptor.in_channels
    x = to_tensor(color)
    if channels == 3 and wanted in (1, 3) and bool((color[..., 1:] == color[..., :1]).all()):
        grey = x[:, :1] if wanted == 1 else x
        restored = restore_tensor(descriptor, grey, options).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    elif channels == wanted:
        restored = restore_tensor(descriptor, x, options)
    elif wanted == 1 and channels == 3:
        restored = restore_tensor(descriptor, x.transpose(0, 1), options).transpose(0, 1)
    elif wanted == 3 and channels == 1:
        restored = restore_tensor(descriptor, x.expand(-1, 3, -1, -1), options).mean(dim=1, keepdim=True)
    else:
        raise ImageReadError(
            f"Expected an image with {wanted} colour channel(s) (or 1/3 to adapt) for {descriptor.name}, "
            f"but got {channels}"
        )
    output = from_tensor(restored, array.dtype)
    return merge_alpha(output, None if alpha is None else resize_alpha(alpha, output.shape[:2]))


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An alpha plane ``(H, W)`` uint8/uint16 at ``size`` ``(height, width)``: bicubic (OpenCV), clipped.

    Transparency is not what a super-resolution model learnt, so a plain interpolation carries it to
    the output size; OpenCV saturates integer results to the dtype's range (cubic overshoot clipped).
    """
    if alpha.shape[:2] == tuple(size):
        return alpha
    return cv2.resize(alpha, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
