"""Reading and writing images without losing bits, plus array <-> tensor conversion.

Decoding goes through OpenCV because Pillow decodes 16-bit RGB PNGs as 8-bit and silently drops the
low byte; Pillow is still used to read the EXIF orientation tag (header only, no pixel decode).
Arrays are ``(H, W)`` for grey or ``(H, W, C)`` with C = 3 (RGB) or 4 (RGBA), dtype uint8 or uint16.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from natsort import natsorted
from PIL import Image

from restorecli.errors import ImageReadError, ImageWriteError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LOSSLESS_16BIT_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
_EXIF_ORIENTATION_TAG = 0x0112


def _umask_file_mode() -> int:
    """0o666 minus the process umask: the mode ``open()`` would have given a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_FILE_MODE = _umask_file_mode()


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(path: Path) -> list[Path]:
    """A file as a one-element list, or a folder's images (not recursive) in natural order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImageReadError(f"Expected an image file or a folder, but nothing exists at {path}")
    return natsorted((p for p in path.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels so they display upright; mirrors PIL.ImageOps.exif_transpose."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return np.rot90(array, k=2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _exif_orientation(path: Path) -> int:
    """The EXIF orientation (1 = upright) read from the header only; 1 when absent or unreadable.

    For a PNG only an ``eXIf`` chunk before the pixel data counts (where writers put it): Pillow's
    ``getexif()`` would decode the whole image looking for one after it, which doubled the cost of
    reading a PNG (``bench/bench_crop.py``).
    """
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(_EXIF_ORIENTATION_TAG, 1))
    except (OSError, ValueError, SyntaxError):
        return 1


def read_array(path: Path) -> np.ndarray:
    """Decode an image with its native bit depth and alpha, EXIF orientation applied.

    Returns ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), dtype uint8 or uint16.
    Raises ImageReadError naming the file when it is missing, corrupt or of another dtype.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"Expected an image file, but nothing exists at {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (cv2.error, MemoryError) as exc:
        raise ImageReadError(f"Expected an image OpenCV can decode, but decoding failed: {exc} ({path})") from exc
    if array is None:
        raise ImageReadError(f"Expected a decodable image, but the file is empty or corrupt ({path})")
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"Expected an 8- or 16-bit image, but got {array.dtype} pixels ({path})")
    if array.ndim == 3:
        if array.shape[2] == 1:
            array = array[:, :, 0]
        elif array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        elif array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
        else:
            raise ImageReadError(f"Expected 1, 3 or 4 channels, but got {array.shape[2]} ({path})")
    array = _apply_exif_orientation(array, _exif_orientation(path))
    return np.ascontiguousarray(array)


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only on success.

    An interrupted or failed write leaves the destination untouched (or absent) and no temp file.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{destination.stem}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
    )
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.chmod(temp_path, _DEFAULT_FILE_MODE)  # mkstemp makes 0600; give the usual umask-based mode
        os.replace(temp_path, destination)
    finally:
        temp_path.unlink(missing_ok=True)


def encode_array(array: np.ndarray, suffix: str, png_compression: int = 3) -> bytes:
    """Encode ``(H, W[, C])`` RGB(A) pixels to the format named by ``suffix`` (e.g. ``".png"``)."""
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageWriteError(f"Expected an output suffix among {', '.join(IMAGE_SUFFIXES)}, but got {suffix!r}")
    if array.dtype == np.uint16 and suffix not in LOSSLESS_16BIT_SUFFIXES:
        raise ImageWriteError(f"Expected .png or .tif for 16-bit output, but got {suffix!r}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    elif suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # >100 selects lossless WebP
    try:
        ok, buffer = cv2.imencode(suffix, np.ascontiguousarray(array), params)
    except (cv2.error, MemoryError) as exc:
        raise ImageWriteError(f"Expected pixels OpenCV can encode as {suffix}, but encoding failed: {exc}") from exc
    if not ok:
        raise ImageWriteError(f"Expected pixels OpenCV can encode as {suffix}, but encoding failed")
    return buffer.tobytes()


def write_array(path: Path, array: np.ndarray, png_compression: int = 3) -> None:
    """Write pixels atomically (temp file + rename); the format follows the suffix."""
    path = Path(path)
    try:
        payload = encode_array(array, path.suffix, png_compression)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{exc} ({path})") from exc
    try:
        with atomic_path(path) as temp_path:
            temp_path.write_bytes(payload)
    except OSError as exc:
        raise ImageWriteError(f"Cannot write {path}: {exc.strerror or exc}") from exc


def split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate ``(H, W, 4)`` into colour ``(H, W, 3)`` and alpha ``(H, W)``; others pass through."""
    if array.ndim == 3 and array.shape[2] == 4:
        return array[:, :, :3], array[:, :, 3]
    return array, None


def merge_alpha(color: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_alpha`: re-attach an untouched alpha plane."""
    if alpha is None:
        return color
    if color.ndim == 2:
        color = np.repeat(color[:, :, None], 3, axis=2)
    return np.concatenate([color, alpha[:, :, None].astype(color.dtype)], axis=2)


def dtype_max(dtype: np.dtype) -> int:
    """Largest value of an unsigned integer pixel type (255 or 65535): the data range."""
    return int(np.iinfo(dtype).max)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W[, C])`` uint8/uint16 pixels -> ``(1, C, H, W)`` float32 in ``[0, 1]``."""
    import torch

    scale = float(dtype_max(array.dtype))
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32))
    return tensor.div_(scale).unsqueeze(0)


def from_tensor(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` float in ``[0, 1]`` -> rounded, clipped ``(H, W[, C])`` pixels."""
    scale = float(dtype_max(np.dtype(dtype)))
    if tensor.ndim == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(scale).round().cpu().numpy()
    array = array.transpose(1, 2, 0).astype(dtype)
    return array[:, :, 0] if array.shape[2] == 1 else array
