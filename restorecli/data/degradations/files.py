"""Degrade image files into an output folder, reproducibly: the library side of ``restore degrade``.

Each image's random stream comes from ``(seed, file name)`` (:func:`image_rng`), so an image is
degraded the same way whatever folder it sits in and whichever other files are processed with it.
Gaussian noise defaults to the benchmark protocol instead: the legacy generator re-seeded with
``seed`` for every image, as the denoising papers' test scripts do.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from restorecli.data.dataset import name_bytes
from restorecli.data.degradations.core import DegradationKind, DegradationParams, degrade
from restorecli.data.degradations.downscale import DownscaleParams
from restorecli.data.degradations.noise import NoiseParams, benchmark_gaussian_noise, finish_noisy
from restorecli.data.resize import imresize
from restorecli.errors import ConfigError, ImageReadError, ImageWriteError
from restorecli.images import (
    IMAGE_SUFFIXES,
    atomic_path,
    dtype_max,
    list_images,
    merge_alpha,
    read_array,
    refuse_input_folder,
    split_alpha,
    write_array,
)

OutputFormat = Literal["auto", "png", "npy"]
NoiseSeeding = Literal["benchmark", "per-file"]
OUTPUT_FORMATS: tuple[str, ...] = ("auto", "png", "npy")
NOISE_SEEDINGS: tuple[str, ...] = ("benchmark", "per-file")
LOSSY_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
KERNEL_FOLDER = "kernels"


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The random generator of one image: a PCG64 stream keyed by ``seed`` and the file ``name``.

    A SHA-256 of the name (not Python's salted ``hash``) keeps it identical across runs and machines.
    """
    if int(seed) < 0:
        raise ConfigError(f"Expected a seed >= 0, but got {seed!r}")
    name_key = int.from_bytes(hashlib.sha256(name_bytes(name)).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed), name_key]))


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 pixels -> float32 in ``[0, 1]`` (divided by 255 or 65535)."""
    return pixels.astype(np.float32) / np.float32(dtype_max(pixels.dtype))


def to_pixels(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float image in ``[0, 1]`` -> clipped, rounded pixels of ``dtype`` (half to even, like ``from_tensor``)."""
    levels = np.float32(dtype_max(np.dtype(dtype)))
    return np.round(np.clip(image, 0.0, 1.0) * levels).astype(dtype)


def degrade_pixels(
    kind: DegradationKind,
    pixels: np.ndarray,
    params: DegradationParams,
    seed: int,
    name: str,
    noise_seeding: NoiseSeeding = "benchmark",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Degrade decoded pixels (alpha excluded) as ``restore degrade`` does.

    Returns the float32 result (quantized to the pixels' bit depth only where noise ``quantize`` asks,
    and for downscaling) and the blur kernel (``None`` for other kinds).
    """
    if isinstance(params, DownscaleParams):
        # MATLAB resizes integer images in their own class, rounding after each pass: resizing the
        # pixels themselves gives exactly the files ``restore degrade downscale`` writes.
        return to_float(imresize(pixels, 1 / params.scale)), None
    levels = dtype_max(pixels.dtype)
    if isinstance(params, NoiseParams):
        if noise_seeding == "benchmark":
            raw = benchmark_gaussian_noise(pixels, float(params.sigma), seed)  # type: ignore[arg-type]
        else:
            raw = degrade(kind, to_float(pixels), image_rng(seed, name), replace(params, clip=False, quantize=False))
        return finish_noisy(raw, params.clip, params.quantize, levels), None
    return degrade(kind, to_float(pixels), image_rng(seed, name), params, return_kernel=True)


@dataclass(frozen=True)
class DegradeSummary:
    """What a :func:`degrade_files` run did: written outputs, skipped inputs with reasons, wall time."""

    kind: str
    output: Path
    written: tuple[Path, ...] = ()
    failed: tuple[tuple[Path, str], ...] = ()
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json``."""
        return {
            "kind": self.kind,
            "output": str(self.output),
            "written": len(self.written),
            "failed": [{"file": str(path), "error": message} for path, message in self.failed],
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
        }


def _target_suffix(source: Path, output_format: OutputFormat) -> str:
    if output_format == "npy":
        return ".npy"
    if output_format == "png" or source.suffix.lower() in LOSSY_SUFFIXES:
        return ".png"  # re-encoding a degradation as JPEG would add compression artefacts to it
    return source.suffix


def plan_outputs(input_path: Path, output: Path, output_format: OutputFormat = "auto") -> list[tuple[Path, Path]]:
    """Pair each input image with its output path; refuse plans that would overwrite an input.

    ``output`` is a folder (created as needed) that receives the same file names, except that JPEG
    inputs become PNG (``auto``) and ``npy`` writes ``<stem>.npy``. A single input file may instead
    name an output file whose suffix (an image suffix or ``.npy``) sets the format.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"Expected an output format among {', '.join(OUTPUT_FORMATS)}, but got {output_format!r}")
    input_path, output = Path(input_path), Path(output)
    sources = list_images(input_path)
    if not sources:
        raise ImageReadError(f"Expected images ({', '.join(IMAGE_SUFFIXES)}) in {input_path}, but found none")
    file_target = input_path.is_file() and not output.is_dir() and output.suffix.lower() in (*IMAGE_SUFFIXES, ".npy")
    if file_target:
        if output_format != "auto" and output.suffix.lower() != f".{output_format}":
            raise ConfigError(f"Expected an output name ending in .{output_format}, but got {output.name}")
        plan = [(sources[0], output)]
    else:
        plan = [(source, output / f"{source.stem}{_target_suffix(source, output_format)}") for source in sources]
    resolved_sources = {source.resolve() for source in sources}
    targets: dict[Path, Path] = {}
    for source, target in plan:
        if not file_target:  # degraded copies beside the clean inputs would mix into the clean set
            refuse_input_folder(target, source)
        resolved = target.resolve()
        if resolved in resolved_sources or (target.exists() and os.path.samefile(source, target)):
            raise ImageWriteError(f"Expected an output path other than an input, but got {target} (an input image)")
        if resolved in targets:
            raise ImageWriteError(
                f"Expected one input per output name, but {targets[resolved].name} and {source.name} "
                f"both map to {target}"
            )
        targets[resolved] = source
    return plan


def _write_float(path: Path, array: np.ndarray) -> None:
    try:
        with atomic_path(path) as temp_path, open(temp_path, "wb") as handle:
            np.save(handle, array.astype(np.float32, copy=False))
    except OSError as exc:
        raise ImageWriteError(f"Cannot write {path}: {exc.strerror or exc}") from exc


def _write_kernel(folder: Path, stem: str, kernel: np.ndarray) -> None:
    """Exact ``<stem>.npy`` plus a viewable ``<stem>.png`` scaled so the peak is white."""
    _write_float(folder / f"{stem}.npy", kernel)
    write_array(folder / f"{stem}.png", to_pixels(kernel / kernel.max(), np.dtype(np.uint8)))


def _degrade_one(
    kind: DegradationKind,
    source: Path,
    target: Path,
    params: DegradationParams,
    seed: int,
    noise_seeding: NoiseSeeding,
    save_kernel: bool,
) -> None:
    pixels = read_array(source)
    color, alpha = split_alpha(pixels)
    degraded, kernel = degrade_pixels(kind, color, params, seed, source.name, noise_seeding)
    if target.suffix.lower() == ".npy":
        float_alpha = None if alpha is None else to_float(alpha)
        _write_float(target, merge_alpha(degraded, float_alpha))
    else:
        write_array(target, merge_alpha(to_pixels(degraded, color.dtype), alpha))
    if save_kernel and kernel is not None:
        _write_kernel(target.parent / KERNEL_FOLDER, target.stem, kernel)


def degrade_files(
    kind: DegradationKind,
    input_path: Path,
    output: Path,
    params: DegradationParams,
    seed: int = 0,
    *,
    noise_seeding: NoiseSeeding = "benchmark",
    output_format: OutputFormat = "auto",
    save_kernel: bool = False,
    progress: bool = True,
) -> DegradeSummary:
    """Write a degraded copy of every image under ``input_path`` into ``output``.

    8-bit stays 8-bit and 16-bit stays 16-bit; alpha is copied untouched; writes are atomic and
    existing outputs are replaced (the result is reproducible), but inputs are never overwritten.
    A file that cannot be read or written is recorded in ``failed`` and skipped.

    Args:
        kind: ``noise``, ``blur`` or ``rain``.
        input_path: an image file or a folder of images (not recursive).
        output: output folder (or output file for a single input, see :func:`plan_outputs`).
        params: the kind's parameter dataclass.
        seed: base seed (>= 0).
        noise_seeding: ``benchmark`` (legacy generator re-seeded with ``seed`` per image: the papers'
            protocol) or ``per-file`` (independent noise per image from :func:`image_rng`).
        output_format: ``auto`` (keep the suffix; JPEG becomes PNG), ``png``, or ``npy`` (float32 ``[0, 1]``
            arrays ``(H, W[, C])``, the only way to keep unclipped or unquantized noise).
        save_kernel: blur only: also write ``kernels/<stem>.npy`` (exact) and ``kernels/<stem>.png``
            (peak scaled to white) in the output folder; a subfolder keeps paired image folders clean.
        progress: show a tqdm bar on stderr.
    """
    if noise_seeding not in NOISE_SEEDINGS:
        raise ConfigError(f"Expected noise seeding among {', '.join(NOISE_SEEDINGS)}, but got {noise_seeding!r}")
    if int(seed) < 0:
        raise ConfigError(f"Expected a seed >= 0, but got {seed!r}")
    if save_kernel and kind != "blur":
        raise ConfigError(f"Expected save_kernel only with blur, but got it with {kind}")
    if isinstance(params, DownscaleParams):  # its outputs are smaller, alpha included: another writer
        raise ConfigError(
            "Expected noise, blur or rain here, but got downscale (use restorecli.data.resize.downscale_files)"
        )
    plan = plan_outputs(input_path, output, output_format)
    settings: dict[str, Any] = {"seed": int(seed), "format": output_format, **vars(params)}
    if isinstance(params, NoiseParams):
        settings["seeding"] = noise_seeding
        if noise_seeding == "benchmark" and params.sigma_range is not None:
            raise ConfigError(
                f"Expected a fixed sigma for benchmark seeding, but got sigma_range={params.sigma_range!r}"
            )
        writes_integers = any(target.suffix.lower() != ".npy" for _, target in plan)
        if writes_integers and not (params.clip and params.quantize):
            raise ConfigError(
                "Expected clip and quantize for 8/16-bit image output, but got "
                f"clip={params.clip}, quantize={params.quantize} (use the npy format to keep raw noise)"
            )
    started = time.perf_counter()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for source, target in tqdm(plan, desc=f"degrade {kind}", unit="img", disable=not progress):
        try:
            _degrade_one(kind, source, target, params, int(seed), noise_seeding, save_kernel)
        except (ImageReadError, ImageWriteError) as exc:
            failed.append((source, str(exc)))
        else:
            written.append(target)
    output_folder = plan[0][1].parent if len(plan) == 1 else Path(output)
    return DegradeSummary(kind, output_folder, tuple(written), tuple(failed), time.perf_counter() - started, settings)
