"""The one exception hierarchy of restorecli.

Library code raises these with a one-line message shaped "Expected X, but got Y (file)";
the CLI translates them once into ``Error: ...`` on stderr and a non-zero exit code.
"""

from __future__ import annotations

import os


class RestoreError(Exception):
    """Base class: any error a user can act on, with a one-line message."""


class ImageReadError(RestoreError):
    """An input image is missing, unreadable, or of an unsupported kind."""


class ImageTooLargeError(ImageReadError):
    """An image's header declares more pixels than the limit (a decompression bomb, or a huge scan)."""


class ImageWriteError(RestoreError):
    """An output image could not be written, or would overwrite an input."""


class OutputPathError(ImageWriteError):
    """An output file (``--csv``, ``--save``...) cannot be written: checked before the work starts."""


class UnknownModelError(RestoreError):
    """A model, architecture or config name is not in the registry."""


class WeightsNotFoundError(RestoreError):
    """Weights are neither local nor downloadable; the message says where to put them."""


class DownloadError(RestoreError):
    """A weights download failed (network, HTTP status, or checksum mismatch)."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the registry's."""


class CheckpointError(RestoreError):
    """A checkpoint is unsafe, unreadable, or does not fit the architecture."""


class DeviceError(RestoreError):
    """The requested device is not available or failed irrecoverably."""


class DatasetError(RestoreError):
    """A dataset folder, split list or pairing is invalid."""


class MetricError(RestoreError):
    """Predictions and ground truth cannot be compared (unmatched, mis-sized)."""


class ConfigError(RestoreError):
    """A recipe or option value is invalid."""


class MissingDependencyError(RestoreError):
    """An optional package a feature needs is not installed; the message names the extra to install."""


class ExportError(RestoreError):
    """A model cannot be exported (``restore export``): the exporter cannot translate it."""


class ExportMismatchError(ExportError):
    """An exported graph's output differs from PyTorch's beyond the tolerance, so it was not written."""


_NAMED_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
_SURROGATE_BYTES = range(0xDC80, 0xDD00)  # how os.fsdecode carries bytes that are not UTF-8


def escape_text(text: str) -> str:
    """``text`` with every non-printable character escaped as ``ls -b`` shows it (``\\n``, ``\\033``).

    Why: a file name is attacker-chosen; printed raw, a newline splits our one-line messages and an
    escape sequence recolours the terminal or sets its title. Bytes that are not UTF-8 (carried as
    surrogates by :func:`os.fsdecode`) appear as octal ``\\351``. Backslashes are left alone, so
    escaping twice changes nothing and a message escaped in the library survives the CLI's pass.
    """
    if text.isprintable():
        return text
    parts = []
    for char in text:
        if char.isprintable():
            parts.append(char)
        elif char in _NAMED_ESCAPES:
            parts.append(_NAMED_ESCAPES[char])
        elif ord(char) in _SURROGATE_BYTES:
            parts.append(f"\\{ord(char) - 0xDC00:03o}")
        else:
            parts.append("".join(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass")))
    return "".join(parts)


def display_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A path as it may appear in a one-line message: see :func:`escape_text`."""
    return escape_text(os.fsdecode(path))
