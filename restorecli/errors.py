"""The one exception hierarchy of restorecli.

Library code raises these with a one-line message shaped "Expected X, but got Y (file)";
the CLI translates them once into ``Error: ...`` on stderr and a non-zero exit code.
"""

from __future__ import annotations


class RestoreError(Exception):
    """Base class: any error a user can act on, with a one-line message."""


class ImageReadError(RestoreError):
    """An input image is missing, unreadable, or of an unsupported kind."""


class ImageWriteError(RestoreError):
    """An output image could not be written, or would overwrite an input."""


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
