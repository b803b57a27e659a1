"""Split a padded image into overlapping tiles and blend the restored tiles back without seams.

Pure functions over shapes and tensors; the runner decides tile sizes and runs the model.

Geometry. Tiles are squares of ``tile`` pixels (clipped to the image) whose sides and top-left
corners are multiples of the model's padding multiple, so every tile is a valid model input and sees
the same pixel alignment as the whole image (which matters for strided down-sampling). Neighbouring
tiles share at least ``overlap`` pixels.

Blending. Along an edge shared with a neighbour, a tile's weight is zero over a *context margin* of
``overlap // 4`` pixels (pixels the tile only uses as context: their outputs lack information from
beyond the edge), then rises along a raised-cosine ramp over the middle ``overlap - 2 * margin``
pixels. Two ramps facing each other across an overlap of exactly ``overlap`` pixels sum to one; the
merge still divides by the accumulated weight, so wider overlaps (the last tile of a row is shifted
to end at the border) blend smoothly too. Consequences: a convolution-only model whose receptive
radius is at most the margin gives the same result tiled and untiled; a model with global operators
(attention over the tile) changes gradually across the ramp instead of jumping at a seam.

Scale. A super-resolution model's tile output is ``scale`` times the tile: tiles are planned on the
input and blended in output coordinates (:meth:`Tile.scaled`, with the overlap scaled alike), so the
margin and the ramp cover the same part of the image at either resolution.

Minimum size. A network that needs inputs of at least ``minimum`` pixels (spandrel's size
requirements) gets tiles no smaller than that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from restorecli.engine.padding import round_up
from restorecli.errors import ConfigError


@dataclass(frozen=True)
class Tile:
    """A window ``[top, top + height) x [left, left + width)`` of the padded image."""

    top: int
    left: int
    height: int
    width: int

    def window(self, x: Tensor) -> Tensor:
        """The tile's pixels from ``(..., H, W)``, as a view."""
        return x[..., self.top : self.top + self.height, self.left : self.left + self.width]

    def scaled(self, scale: int) -> Tile:
        """The same window in an image ``scale`` times larger (where a super-resolution output lands)."""
        return Tile(self.top * scale, self.left * scale, self.height * scale, self.width * scale)


def context_margin(overlap: int) -> int:
    """Pixels at each shared tile edge that get zero weight (pure context)."""
    return overlap // 4


def minimum_tile(overlap: int, multiple: int, minimum: int = 0) -> int:
    """The smallest tile worth running: room for both edges' ramps, a stride of at least one multiple,
    and at least the model's ``minimum`` input side."""
    return round_up(max(2 * overlap, overlap + multiple, minimum), multiple)


def validate_tile(tile: int, overlap: int, multiple: int, minimum: int = 0) -> int:
    """Round ``tile`` down to a multiple of ``multiple`` and check it leaves room for the overlap.

    Raises:
        ConfigError: a negative overlap, a tile not larger than the overlap by one multiple, or a
            tile smaller than the model's ``minimum`` input side.
    """
    if overlap < 0:
        raise ConfigError(f"Expected a tile overlap of 0 or more pixels, but got {overlap}")
    rounded = tile // multiple * multiple
    if rounded < minimum:
        raise ConfigError(
            f"Expected a tile of at least {round_up(minimum, multiple)} pixels (the model's smallest input), "
            f"but got {tile}"
        )
    if rounded - overlap < multiple:
        raise ConfigError(
            f"Expected a tile of at least {round_up(overlap + multiple, multiple)} pixels (overlap {overlap} "
            f"plus the model's size multiple {multiple}), but got {tile}"
        )
    return rounded


def axis_tiles(length: int, tile: int, overlap: int, multiple: int, minimum: int = 0) -> tuple[int, list[int]]:
    """Tile size and start offsets covering ``[0, length)`` with tiles of at most ``tile`` pixels.

    ``length`` and ``tile`` are multiples of ``multiple``; so are the returned size and offsets, and
    the last tile ends exactly at ``length``. The tile count is the fewest that tiles of ``tile``
    pixels sharing ``overlap`` need; the tiles are then shrunk to the smallest size that still
    shares ``overlap`` when spread evenly, so overlaps do not pile up at the end (for 1024 pixels in
    tiles of 256 sharing 32: 5 tiles of 232, 29% more pixels than the image, instead of 5 of 256
    with 56% more), though never below ``minimum`` (a multiple of ``multiple``, at most ``tile``).
    """
    if length <= tile:
        return length, [0]
    stride = (tile - overlap) // multiple * multiple
    count = -(-(length - tile) // stride) + 1
    size = max(round_up(-(-(length - overlap) // count) + overlap, multiple), minimum)
    while size < tile:
        starts = [(length - size) * index // (count - 1) // multiple * multiple for index in range(count)]
        if max(b - a for a, b in itertools.pairwise(starts)) <= size - overlap:
            return size, starts
        size += multiple
    return tile, [*range(0, length - tile, stride), length - tile]


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int, minimum: int = 0) -> list[Tile]:
    """Tiles (row-major) covering a padded ``height`` x ``width`` image; see the module docstring.

    An image no larger than ``tile`` is a single tile (the untiled case; no overlap needed).
    Otherwise ``tile`` is rounded down to a multiple of ``multiple`` and each axis is covered as
    :func:`axis_tiles` says (a side shorter than the tile gets one tile along it). Tiles are at least
    ``minimum`` pixels on each side (the image, padded to the model's size rule, is too); a square
    image gets square tiles.

    Raises:
        ConfigError: the tile is too small for the overlap or the model (see :func:`validate_tile`),
            or the image sides are not multiples of ``multiple``.
    """
    if height % multiple or width % multiple:
        raise ConfigError(f"Expected a padded size that is a multiple of {multiple}, but got {height}x{width}")
    if tile >= max(height, width):
        return [Tile(0, 0, height, width)]
    tile = validate_tile(tile, overlap, multiple, minimum)
    minimum = round_up(minimum, multiple)
    tile_height, tops = axis_tiles(height, tile, overlap, multiple, minimum)
    tile_width, lefts = axis_tiles(width, tile, overlap, multiple, minimum)
    return [Tile(top, left, tile_height, tile_width) for top in tops for left in lefts]


def _ramp(overlap: int) -> Tensor:
    """Weights rising from zero to one across one shared edge: margin zeros, then a raised cosine.

    Sampled at pixel centres so that the ramp and its mirror image sum to exactly one.
    """
    margin = context_margin(overlap)
    rise = overlap - 2 * margin
    centres = (torch.arange(rise, dtype=torch.float64) + 0.5) / rise
    return torch.cat([torch.zeros(margin, dtype=torch.float64), 0.5 - 0.5 * torch.cos(math.pi * centres)])


def axis_weights(start: int, size: int, length: int, overlap: int) -> Tensor:
    """Blend weights ``(size,)`` float64 for a tile spanning ``[start, start + size)`` of ``[0, length)``.

    Edges on the image border keep full weight (no neighbour shares them).
    """
    weights = torch.ones(size, dtype=torch.float64)
    ramp = _ramp(overlap)[:size]
    if start > 0:
        weights[: ramp.numel()] *= ramp
    if start + size < length:
        weights[size - ramp.numel() :] *= ramp.flip(0)
    return weights


def tile_weights(tile: Tile, height: int, width: int, overlap: int) -> Tensor:
    """Separable blend weights ``(tile.height, tile.width)`` float64 for one tile of the padded image."""
    rows = axis_weights(tile.top, tile.height, height, overlap)
    cols = axis_weights(tile.left, tile.width, width, overlap)
    return rows[:, None] * cols[None, :]


def merge_tiles(
    pieces: Iterable[tuple[int, Tile, Tensor]],
    shape: tuple[int, int, int, int],
    overlap: int,
    device: torch.device,
) -> Tensor:
    """Blend restored tiles into one ``(N, C, H, W)`` float32 tensor on ``device``.

    Args:
        pieces: ``(image index, tile, output (C, tile.height, tile.width))``, consumed lazily so only
            one batch of tile outputs needs to exist at a time.
        shape: ``(N, C, H, W)`` of the padded output.
        overlap: the overlap the tiles were planned with (sets the blend ramps).
        device: where the full-size result is assembled (typically the CPU).
    """
    batch, _, height, width = shape
    total = torch.zeros(shape, dtype=torch.float32, device=device)
    weight_sum = torch.zeros((batch, 1, height, width), dtype=torch.float32, device=device)
    for index, tile, output in pieces:
        weights = tile_weights(tile, height, width, overlap).to(device=device, dtype=torch.float32)
        tile.window(total[index]).add_(output.to(device=device, dtype=torch.float32) * weights)
        tile.window(weight_sum[index]).add_(weights)
    return total.div_(weight_sum)
