"""How to run a model: the one record every inference path takes, built once by the CLI or the API.

Torch-free on purpose: the CLI reads :data:`DEFAULT_TILE_OVERLAP` and parses ``--max-memory`` while
``restore --help`` must stay instant. Checks that need the model (a tile against its padding
multiple, a precision against its device) live in :func:`restorecli.engine.runner.check_options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from restorecli.errors import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

# Pixels shared by neighbouring tiles: a quarter on each side is pure context, the rest is blended
# (see restorecli.engine.tiling). The one default of every command and the API.
DEFAULT_TILE_OVERLAP = 32

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_memory_size(text: str) -> int:
    """Bytes from ``4GiB``, ``512MiB``, ``1.5G``, ``800M`` or a plain byte count (units are binary).

    ``GB`` is read as ``GiB`` too: a memory cap is approximate, and the binary reading is the one
    the allocators report.

    Raises:
        ConfigError: not a positive size in one of those forms.
    """
    match = _SIZE_PATTERN.match(text)
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()]) if match else 0
    if size < 1:
        raise ConfigError(f"Expected a memory size such as 4GiB, 512MiB or 800M, but got {text!r}")
    return size


@dataclass(frozen=True)
class RunOptions:
    """What a restore call asks of the engine; validated on construction where the model is not needed.

    Attributes:
        tile: tile side in pixels (rounded down to the padding multiple), or None to tile only when
            the image would not fit in the memory available. A tile that covers the image but for its
            padding (less than one padding multiple short of the padded sides) runs it whole.
        overlap: pixels shared by neighbouring tiles.
        tile_batch: tiles per forward pass, or None for as many as fit (at most 8 on an accelerator,
            1 on the CPU).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast); a half-precision tile whose output is
            not finite is run again in fp32.
        channels_last: feed tiles in channels-last memory format; None follows the architecture's
            preference (``ModelDescriptor.channels_last``).
        fallback: move to the next device when this one fails (announced). None follows how the
            model was placed: allowed when its device was chosen by ``auto``, refused when the caller
            named one, so an explicit device never changes silently.
        max_memory: most bytes one forward pass may use for automatic tiles (None: a share of the
            device's free memory).
    """

    tile: int | None = None
    overlap: int = DEFAULT_TILE_OVERLAP
    tile_batch: int | None = None
    precision: Precision = "fp32"
    channels_last: bool | None = None
    fallback: bool | None = None
    max_memory: int | None = None

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile < 1:
            raise ConfigError(f"Expected a positive tile size, but got {self.tile}")
        if self.tile_batch is not None and self.tile_batch < 1:
            raise ConfigError(f"Expected at least one tile per batch, but got {self.tile_batch}")
        if self.overlap < 0:
            raise ConfigError(f"Expected a tile overlap of 0 or more pixels, but got {self.overlap}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Expected a precision among {', '.join(PRECISIONS)}, but got {self.precision!r}")
        if self.max_memory is not None and self.max_memory < 1:
            raise ConfigError(f"Expected a positive memory cap in bytes, but got {self.max_memory}")


OutputFormat = Literal["same", "png", "jpg", "webp"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
DEFAULT_JPEG_QUALITY = 95
_UNSAFE_SUFFIX_CHARACTERS = ("/", "\\", "\0")


@dataclass(frozen=True)
class OutputOptions:
    """How restored files are named and encoded.

    Attributes:
        ext: the image format of the outputs. ``same`` keeps each input's (a JPEG stays JPEG, so it goes
            through a second lossy encode); ``png`` and ``webp`` are lossless (WebP: 8-bit only); ``jpg``
            is 8-bit without alpha. Videos keep their container whatever this says
            (:func:`restorecli.engine.files.output_name`).
        suffix: appended to each output's stem: ``name_SUFFIX.ext`` (empty: the input's name).
        jpeg_quality: quality (0-100) of JPEG outputs.
    """

    ext: OutputFormat = "same"
    suffix: str = ""
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self) -> None:
        if self.ext not in OUTPUT_FORMATS:
            raise ConfigError(f"Expected an output format among {', '.join(OUTPUT_FORMATS)}, but got {self.ext!r}")
        if any(character in self.suffix for character in _UNSAFE_SUFFIX_CHARACTERS):
            raise ConfigError(f"Expected a suffix without / or \\, but got {self.suffix!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ConfigError(f"Expected a JPEG quality in [0, 100], but got {self.jpeg_quality}")
