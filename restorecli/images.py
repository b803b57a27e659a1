"""Reading and writing images without losing bits, plus array <-> tensor conversion.

Decoding goes through OpenCV because Pillow decodes 16-bit RGB PNGs as 8-bit and silently drops the
low byte. Pillow reads the header first (size, pages, mode, EXIF orientation; no pixel decode), so a
decompression bomb, an animation or a file of another kind is refused with one line before any
decoder allocates. Arrays are ``(H, W)`` grey, ``(H, W, 2)`` grey + alpha, ``(H, W, 3)`` RGB or
``(H, W, 4)`` RGBA, dtype uint8 or uint16.

Third parties stay quiet: OpenCV's log level defaults to silent (its lines would stand beside ours on
stderr; the level is read once, at OpenCV's first log line, hence the environment variable before any
decode) and Pillow's warnings are caught while a header is read and folded into our message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # a user's own setting (e.g. INFO to debug) wins

import cv2
import numpy as np
from natsort import natsort_keygen
from PIL import Image, ImageFile

from restorecli.errors import (
    ConfigError,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    OutputPathError,
    display_path,
)

if TYPE_CHECKING:
    import torch

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so a killed run's temporary files are left in place
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("restorecli.images")

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LOSSLESS_16BIT_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
# Pillow's DecompressionBombError threshold (2 x Image.MAX_IMAGE_PIXELS): ~179 MP, e.g. 13,400 x 13,400.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "RESTORECLI_MAX_PIXELS"
FOLLOW_SYMLINKS_ENV = "RESTORECLI_FOLLOW_SYMLINKS"
_HEADER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")  # the formats of IMAGE_SUFFIXES, as Pillow names them
_EXIF_ORIENTATION_TAG = 0x0112
_PNG_COLOUR_TYPE = 25  # byte offset in a PNG: signature (8), IHDR length and type (8), width, height, depth
_NATURAL_KEY = natsort_keygen()
PILLOW_LOCK = threading.Lock()  # warnings.catch_warnings is process-wide: one header read at a time
# atomic_path's temporary names: ".{stem}.{8 random characters of tempfile}.tmp{suffix}".
_TEMPORARY_NAME = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(?:\.[^.]+)?)$")


def _umask_file_mode() -> int:
    """0o666 minus the process umask: the mode ``open()`` would have given a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFAULT_FILE_MODE = _umask_file_mode()


@dataclass(frozen=True)
class InputPolicy:
    """What the image readers accept: process-wide, as Pillow's ``Image.MAX_IMAGE_PIXELS`` is.

    It lives in the environment (:meth:`install`, :meth:`current`) so that worker processes started by
    ``restore eval``/``crop-patches`` read the same policy as the command that started them.

    Attributes:
        max_pixels: largest width x height a header may declare (0 = no limit).
        follow_symlinks: read symbolic links in an input folder that point outside it.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        if self.max_pixels < 0:
            raise ConfigError(f"Expected a pixel limit >= 0 (0 = no limit), but got {self.max_pixels}")

    @classmethod
    def current(cls) -> InputPolicy:
        """The policy of this process: ``RESTORECLI_MAX_PIXELS`` and ``RESTORECLI_FOLLOW_SYMLINKS``, else defaults."""
        text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not text:
            max_pixels = DEFAULT_MAX_PIXELS
        elif text.isdigit():
            max_pixels = int(text)
        else:
            raise ConfigError(f"Expected {MAX_PIXELS_ENV} to be a number of pixels (0 = no limit), but got {text!r}")
        return cls(max_pixels, os.environ.get(FOLLOW_SYMLINKS_ENV, "") == "1")

    def install(self) -> None:
        """Make this the policy of this process and of the processes it starts."""
        os.environ[MAX_PIXELS_ENV] = str(self.max_pixels)
        os.environ[FOLLOW_SYMLINKS_ENV] = "1" if self.follow_symlinks else "0"


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(path: Path, *, follow_symlinks: bool | None = None) -> list[Path]:
    """A file as a one-element list, or a folder's images (not recursive) in natural order.

    A symbolic link in the folder that points outside it is left out with a warning naming it, unless
    ``follow_symlinks`` (default: the :class:`InputPolicy` of this process) says to read it: a folder
    handed over by someone else should not make us read (or leak into outputs) files elsewhere.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ImageReadError(f"Expected an image file or a folder, but nothing exists at {display_path(path)}")
    return list_folder(path, follow_symlinks=follow_symlinks, keep=is_image_file).files


@dataclass(frozen=True)
class FolderListing:
    """What :func:`list_folder` found.

    Attributes:
        files: the files, in natural order of their paths below the folder.
        unsearched: sub-folders whose files are not in ``files``, in natural order: every sub-folder of a
            listing that is not recursive, and symbolic links to folders (never followed: a link to a
            parent would loop).
    """

    files: list[Path]
    unsearched: list[Path]


def list_folder(
    path: Path,
    *,
    recursive: bool = False,
    follow_symlinks: bool | None = None,
    exclude: Path | None = None,
    keep: Callable[[Path], bool] | None = None,
) -> FolderListing:
    """The files of the folder ``path`` (and of its sub-folders when ``recursive``) that ``keep`` accepts.

    ``exclude`` is a folder neither searched nor reported (an output folder inside the input, so a
    second run does not restore the first one's results). A symbolic link to a file outside ``path`` is
    left out with a warning unless ``follow_symlinks`` (default: the :class:`InputPolicy` of this process).

    Raises:
        ImageReadError: ``path`` or one of the sub-folders to search cannot be listed.
    """
    path = Path(path)
    follow = InputPolicy.current().follow_symlinks if follow_symlinks is None else follow_symlinks
    top = path.resolve()
    excluded = None if exclude is None else Path(exclude).resolve()
    files: list[Path] = []
    unsearched: list[Path] = []
    pending = [path]
    while pending:
        folder = pending.pop()
        try:
            entries = list(folder.iterdir())
        except OSError as exc:
            raise ImageReadError(
                f"Expected a folder that can be listed, but got {exc.strerror or one_line(exc)} ({display_path(folder)})"
            ) from exc
        for entry in entries:
            if entry.is_dir():
                if entry.resolve() != excluded:
                    (pending if recursive and not entry.is_symlink() else unsearched).append(entry)
            elif entry.is_file() and (keep is None or keep(entry)):
                if not follow and entry.is_symlink() and not entry.resolve().is_relative_to(top):
                    logger.warning(
                        "Skipped %s: a symbolic link to a file outside %s (--follow-symlinks reads it)",
                        display_path(entry),
                        display_path(path),
                    )
                    continue
                files.append(entry)

    def order(entry: Path) -> tuple[object, tuple[str, ...]]:
        # Natural order, then the names themselves: img1 and img01 tie naturally, and a directory's own
        # order must not decide (processes that list one folder must agree on every position).
        parts = entry.relative_to(path).parts
        return _NATURAL_KEY(parts), parts

    return FolderListing(sorted(files, key=order), sorted(unsearched, key=order))


# Formats whose OpenCV decoder turns the pixels upright itself, even under IMREAD_UNCHANGED (libtiff's
# RGBA reader follows the Orientation tag): rotating them again would undo it.
_DECODER_ORIENTS = frozenset({"TIFF"})


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


class _DecoderStderr:
    """Catch what C decoders print straight to file descriptor 2 (``libpng error: ...``, ``libpng warning``).

    OpenCV's own log obeys ``OPENCV_LOG_LEVEL``, but libpng's messages bypass it and would stand beside
    our one-line message. While any decode runs, fd 2 points at a temporary file; when the last one
    ends, fd 2 is restored, decoder lines are dropped (our message says what failed) and anything
    else written meanwhile (a progress bar, another thread's warning) is copied back in order.
    """

    _DECODER_PREFIXES = (b"libpng ", b"libtiff", b"[ WARN:", b"[ERROR:", b"[ INFO:")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None
        self._capture: io.BufferedRandom | None = None

    def __enter__(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                with contextlib.suppress(OSError, ValueError):  # no usable fd 2: nothing to protect
                    sys.stderr.flush()
                    capture = tempfile.TemporaryFile()
                    saved = os.dup(2)
                    os.dup2(capture.fileno(), 2)
                    self._capture, self._saved = capture, saved

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth or self._capture is None or self._saved is None:
                return
            capture, saved = self._capture, self._saved
            self._capture = self._saved = None
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            with capture:
                capture.seek(0)
                # A decoder message can end in an empty line of its own (OpenCV's BMP reader): drop those too.
                kept = b"".join(
                    line for line in capture if line.strip() and not line.startswith(self._DECODER_PREFIXES)
                )
            if kept:
                with contextlib.suppress(OSError):
                    os.write(2, kept)


_decoder_stderr = _DecoderStderr()


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before its pixels are decoded.

    Attributes:
        format: Pillow's name of the format (PNG, JPEG, BMP, TIFF or WEBP).
        width, height: size in pixels, as stored (before the EXIF orientation).
        frames: pages of a TIFF or frames of an animation (1 for a still image).
        mode: Pillow's mode (``L``, ``LA``, ``RGB``, ``RGBA``, ``I;16``...).
        orientation: EXIF orientation, 1 = upright (also when absent or unreadable).
        grey_alpha: grey + alpha pixels (Pillow calls a 16-bit one RGBA, so PNG's colour type decides).
    """

    format: str
    width: int
    height: int
    frames: int
    mode: str
    orientation: int
    grey_alpha: bool


def _open_known_format(handle: io.BytesIO) -> ImageFile.ImageFile | None:
    """Pillow's ``Image.open`` limited to our formats and without its own bomb check (ours comes next,
    with the user's limit, which may be above Pillow's); None when no format accepts the bytes."""
    Image.init()
    prefix = handle.read(16)
    for name in _HEADER_FORMATS:
        factory, accept = Image.OPEN[name]
        if accept is None or accept(prefix) is True:
            handle.seek(0)
            return factory(handle, "")
    return None


def _orientation(image: ImageFile.ImageFile) -> int:
    """EXIF orientation from the header. For a PNG only an ``eXIf`` chunk before the pixel data counts
    (where writers put it): Pillow's ``getexif()`` would decode the whole image looking for one after it,
    which doubled the cost of reading a PNG (``bench/bench_crop.py``)."""
    try:
        if image.format != "PNG":
            return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
        raw = image.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels upright, as before
        return 1


def one_line(exc: BaseException) -> str:
    """An exception from a third-party decoder as one line: OpenCV's short text, whitespace folded."""
    text = getattr(exc, "err", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _pillow_note(caught: list[warnings.WarningMessage]) -> str:
    return f"; Pillow warned: {one_line(Warning(caught[0].message))}" if caught else ""


def read_header(data: bytes, path: Path) -> ImageHeader:
    """Parse an image's header from its bytes (no pixel decode) with Pillow.

    Raises:
        ImageReadError: not one of our formats, or a header Pillow cannot parse; Pillow's warnings are
            folded into the one-line message.
    """
    with PILLOW_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = _open_known_format(io.BytesIO(data))
            if image is None:
                raise ImageReadError(
                    f"Expected a decodable image (PNG, JPEG, BMP, TIFF or WebP), but the content is none of these "
                    f"(starts with {data[:8]!r}) ({display_path(path)})"
                )
            with image:
                width, height = image.size
                frames = int(getattr(image, "n_frames", 1) or 1)
                grey_alpha = image.mode in ("LA", "La") or (image.format == "PNG" and data[_PNG_COLOUR_TYPE] == 4)
                return ImageHeader(
                    image.format or "", width, height, frames, image.mode, _orientation(image), grey_alpha
                )
        except ImageReadError:
            raise
        except Exception as exc:  # Pillow's plugins raise many kinds on hostile headers
            raise ImageReadError(
                f"Expected a decodable image, but its header is corrupt or truncated: "
                f"{one_line(exc)}{_pillow_note(caught)} "
                f"({display_path(path)})"
            ) from exc


def check_header(header: ImageHeader, path: Path, max_pixels: int) -> None:
    """Refuse a header that declares more than ``max_pixels`` pixels (0 = no limit) or several pages.

    Raises:
        ImageTooLargeError: too many pixels (a decompression bomb is a few KB declaring billions).
        ImageReadError: an empty image, a multi-page TIFF or an animation: cutting it to its first page
            silently would lose the rest.
    """
    pixels = header.width * header.height
    if max_pixels and pixels > max_pixels:
        raise ImageTooLargeError(
            f"Expected at most {max_pixels:,} pixels (--max-pixels, {MAX_PIXELS_ENV}; 0 = no limit), but the "
            f"header declares {header.width} x {header.height} = {pixels:,} ({display_path(path)})"
        )
    if pixels == 0:
        raise ImageReadError(
            f"Expected an image with pixels, but the header declares {header.width} x {header.height} "
            f"({display_path(path)})"
        )
    if header.frames > 1:
        kind = "pages" if header.format == "TIFF" else "animation frames"
        raise ImageReadError(
            f"Expected a single image, but the {header.format} holds {header.frames} {kind}; save each as its own "
            f"file ({display_path(path)})"
        )


def _pillow_reason(data: bytes) -> str:
    """Why Pillow cannot decode these pixels either (a truncation, a CRC error), as ``": reason"``; only
    called after OpenCV failed and the header passed the pixel limit, so its decode is bounded."""
    with PILLOW_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = _open_known_format(io.BytesIO(data))
            if image is not None:
                with image:
                    image.load()
        except Exception as exc:  # noqa: BLE001 - any failure is the reason we are looking for
            return f": {one_line(exc)}"
        return _pillow_note(caught).replace("; Pillow warned", ": Pillow warned")


def read_array(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image with its native bit depth and alpha, EXIF orientation applied.

    Returns ``(H, W)`` grey, ``(H, W, 2)`` grey + alpha or ``(H, W, 3|4)`` RGB(A), dtype uint8 or uint16.
    ``max_pixels`` (default: the :class:`InputPolicy` of this process; 0 = no limit) is checked on the
    header before any pixel is decoded.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        ImageReadError: the file is missing, unreadable, corrupt, of another kind or dtype, multi-page or
            animated; the one-line message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"Expected an image file, but nothing exists at {display_path(path)}")
    try:
        data = path.read_bytes()  # read once: the header we check is the one we decode
    except OSError as exc:
        raise ImageReadError(f"Cannot read {display_path(path)}: {exc.strerror or one_line(exc)}") from exc
    if not data:
        raise ImageReadError(f"Expected an image, but the file is empty ({display_path(path)})")
    header = read_header(data, path)
    check_header(header, path, InputPolicy.current().max_pixels if max_pixels is None else max_pixels)
    try:
        with _decoder_stderr:
            array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(
            f"Expected an image OpenCV can decode, but decoding failed: {one_line(exc)} ({display_path(path)})"
        ) from exc
    except MemoryError as exc:
        raise ImageReadError(
            f"Expected the memory to decode {header.width} x {header.height} pixels, but allocation failed "
            f"({display_path(path)})"
        ) from exc
    if array is None:
        raise ImageReadError(
            f"Expected a decodable image, but its {header.format} pixel data is corrupt or truncated"
            f"{_pillow_reason(data)} "
            f"({display_path(path)})"
        )
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"Expected an 8- or 16-bit image, but got {array.dtype} pixels ({display_path(path)})")
    if array.ndim == 3:
        if array.shape[2] == 1:
            array = array[:, :, 0]
        elif array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        elif array.shape[2] == 4 and header.grey_alpha:
            array = array[:, :, [0, 3]]  # OpenCV widens grey + alpha to BGRA; keep what the file holds
        elif array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
        else:
            raise ImageReadError(f"Expected 1, 3 or 4 channels, but got {array.shape[2]} ({display_path(path)})")
    if header.format not in _DECODER_ORIENTS:
        array = _apply_exif_orientation(array, header.orientation)
    return np.ascontiguousarray(array)


def refuse_input_folder(destination: Path, source: Path) -> None:
    """Refuse an output ``destination`` in the folder of its input ``source`` (or of the file ``source``
    links to): results beside the inputs would mix into them.

    Raises:
        ImageWriteError: naming the folder and the input it holds.
    """
    folder = Path(destination).parent.resolve()
    if folder in (Path(source).absolute().parent.resolve(), Path(source).resolve().parent):
        raise ImageWriteError(
            f"Expected an output folder other than the input folder, but got {display_path(Path(destination).parent)} "
            f"(holds {display_path(Path(source).name)})"
        )


def check_output_folder(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or sits under one.

    Raises:
        OutputPathError: naming the option and the path.
    """
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"Expected a folder for {option}, but {display_path(existing)} is a file")


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that could not be written at the end.

    Raises:
        OutputPathError: ``path`` is a folder, sits under a file, or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"Expected a file name for {option}, but got a folder ({display_path(path)})")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"Expected a folder to hold {option}, but {display_path(parent)} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"Expected a writable folder for {option}, but cannot write in {display_path(parent)}")


@contextlib.contextmanager
def atomic_path(destination: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only on success.

    An interrupted or failed write leaves the destination untouched (or absent) and no temp file. The
    temporary file is locked while it is written, so that after a kill (which no ``finally`` survives)
    :func:`remove_abandoned_temporaries` can tell the leftover from another process's write in progress.
    ``durable``: the file's data reach the disk before the rename, and the rename before returning
    (``fsync``), so a power loss cannot leave an empty file under the new name (training checkpoints,
    whose older files are deleted next; outputs skip it, a few milliseconds each).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{destination.stem}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
    )
    temp_path = Path(temp_name)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield temp_path
        os.chmod(temp_path, _DEFAULT_FILE_MODE)  # mkstemp makes 0600; give the usual umask-based mode
        if durable:
            os.fsync(handle)  # the same file the caller wrote through its own handle
        os.replace(temp_path, destination)
        if durable:
            _sync_folder(destination.parent)
    finally:
        temp_path.unlink(missing_ok=True)
        os.close(handle)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the file itself is synced
    finally:
        os.close(handle)


def remove_abandoned_temporaries(destinations: Iterable[Path]) -> list[Path]:
    """Delete the temporary files a killed run left beside ``destinations``; return them.

    Only :func:`atomic_path` names for these destinations are considered, and only those no live process
    holds locked: a concurrent run's write in progress is left alone. Without ``fcntl`` (Windows) nothing
    is removed.
    """
    if fcntl is None:
        return []
    wanted: defaultdict[Path, set[tuple[str, str]]] = defaultdict(set)
    for destination in destinations:
        wanted[Path(destination).parent].add((Path(destination).stem, Path(destination).suffix))
    removed: list[Path] = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not created yet, or unreadable: nothing of ours can be there
            continue
        for entry in entries:
            match = _TEMPORARY_NAME.match(entry.name)
            ours = match is not None and (match["stem"], match["suffix"]) in names
            if ours and entry.is_file(follow_symlinks=False) and _remove_unless_locked(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def _remove_unless_locked(path: Path) -> bool:
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
        return True
    except OSError:  # held by a live writer
        return False
    finally:
        os.close(handle)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_grey_alpha_png(array: np.ndarray, png_compression: int = 3) -> bytes:
    """``(H, W, 2)`` grey + alpha as a PNG of colour type 4, 8- or 16-bit: OpenCV only writes 1, 3 or 4
    channels, and Pillow's LA mode is 8-bit only."""
    height, width = array.shape[:2]
    depth = 8 * array.dtype.itemsize
    rows = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
    filtered = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), png_compression)),
            _png_chunk(b"IEND", b""),
        )
    )


def encode_array(array: np.ndarray, suffix: str, png_compression: int = 3, jpeg_quality: int = 95) -> bytes:
    """Encode ``(H, W[, C])`` grey, grey + alpha or RGB(A) pixels to the format named by ``suffix``.

    Grey + alpha stays so in a PNG; other formats get it widened to RGBA. WebP is written lossless;
    JPEG at ``jpeg_quality`` (0-100).
    """
    suffix = suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageWriteError(f"Expected an output suffix among {', '.join(IMAGE_SUFFIXES)}, but got {suffix!r}")
    if array.dtype == np.uint16 and suffix not in LOSSLESS_16BIT_SUFFIXES:
        raise ImageWriteError(f"Expected .png or .tif for 16-bit output, but got {suffix!r}")
    if array.ndim == 3 and array.shape[2] == 2:
        if suffix == ".png":
            return encode_grey_alpha_png(array, png_compression)
        array = array[:, :, [0, 0, 0, 1]]
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    elif suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # >100 selects lossless WebP
    try:
        with _decoder_stderr:
            ok, buffer = cv2.imencode(suffix, np.ascontiguousarray(array), params)
    except (cv2.error, MemoryError) as exc:
        raise ImageWriteError(f"Expected pixels OpenCV can encode as {suffix}, but encoding failed: {exc}") from exc
    if not ok:
        raise ImageWriteError(f"Expected pixels OpenCV can encode as {suffix}, but encoding failed")
    return buffer.tobytes()


def write_array(
    path: Path,
    array: np.ndarray,
    png_compression: int = 3,
    jpeg_quality: int = 95,
    icc_profile: bytes | None = None,
) -> None:
    """Write pixels atomically (temp file + rename); the format follows the suffix (see :func:`encode_array`).

    ``icc_profile``: the colour profile the pixels are in (an input's), embedded in a PNG or JPEG
    (:func:`~restorecli.icc.embed_icc_profile`).
    """
    from restorecli.icc import embed_icc_profile

    path = Path(path)
    try:
        payload = encode_array(array, path.suffix, png_compression, jpeg_quality)
    except ImageWriteError as exc:
        raise ImageWriteError(f"{exc} ({path})") from exc
    payload = embed_icc_profile(payload, path.suffix, icc_profile, 1 if array.ndim == 2 else array.shape[2])
    try:
        with atomic_path(path) as temp_path:
            temp_path.write_bytes(payload)
    except OSError as exc:
        raise ImageWriteError(f"Cannot write {path}: {exc.strerror or exc}") from exc


def convert_for_format(array: np.ndarray, suffix: str) -> np.ndarray:
    """Pixels reduced to what the format of ``suffix`` holds: 16-bit rounded to 8-bit where the format is
    8-bit only, alpha dropped for JPEG (which has none).

    For an output format the user chose (``--ext``): the loss is theirs to choose, whereas writing an
    input's own format never needs it and :func:`encode_array` refuses 16-bit pixels it cannot hold.
    """
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        array = split_alpha(array)[0]
    if array.dtype == np.uint16 and suffix not in LOSSLESS_16BIT_SUFFIXES:
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255, rounded
    return array


def split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Separate ``(H, W, 4)`` into colour ``(H, W, 3)`` and ``(H, W, 2)`` into grey ``(H, W)``, each with
    its alpha ``(H, W)``; others pass through."""
    if array.ndim == 3 and array.shape[2] == 4:
        return array[:, :, :3], array[:, :, 3]
    if array.ndim == 3 and array.shape[2] == 2:
        return array[:, :, 0], array[:, :, 1]
    return array, None


def merge_alpha(color: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_alpha`: re-attach an untouched alpha plane (grey + alpha stays 2 channels)."""
    if alpha is None:
        return color
    if color.ndim == 2:
        color = color[:, :, None]
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
