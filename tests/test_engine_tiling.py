"""Padding to a multiple (both modes, odd and tiny sizes) and the tile grid / seamless blending."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorecli.engine.padding import crop, pad_to_multiple
from restorecli.engine.tiling import Tile, axis_tiles, merge_tiles, minimum_tile, plan_tiles, tile_weights
from restorecli.errors import ConfigError


def _numpy_pad(x: torch.Tensor, bottom: int, right: int, mode: str) -> np.ndarray:
    """The independent reference: numpy.pad on the last two axes."""
    return np.pad(x.numpy(), ((0, 0), (0, 0), (0, bottom), (0, right)), mode=mode)


@pytest.mark.parametrize(("multiple", "mode", "numpy_mode"), [(8, "reflect", "reflect"), (16, "constant", "constant")])
def test_pad_67x93_matches_numpy_and_crops_back(multiple: int, mode: str, numpy_mode: str) -> None:
    x = torch.rand(2, 3, 67, 93)
    padded = pad_to_multiple(x, multiple, mode)
    expected_height, expected_width = -(-67 // multiple) * multiple, -(-93 // multiple) * multiple
    assert padded.shape == (2, 3, expected_height, expected_width)
    np.testing.assert_array_equal(padded.numpy(), _numpy_pad(x, expected_height - 67, expected_width - 93, numpy_mode))
    assert torch.equal(crop(padded, 67, 93), x)


def test_reflect_matches_the_official_f_pad_rule() -> None:
    # Restormer's test scripts: F.pad(x, (0, pad_w, 0, pad_h), 'reflect') up to a multiple of 8.
    x = torch.rand(1, 3, 67, 93)
    assert torch.equal(pad_to_multiple(x, 8, "reflect"), F.pad(x, (0, 3, 0, 5), mode="reflect"))


def test_already_aligned_input_is_returned_unchanged() -> None:
    x = torch.rand(1, 1, 32, 48)
    assert pad_to_multiple(x, 16, "reflect") is x


@pytest.mark.parametrize(("height", "width"), [(3, 5), (2, 9), (5, 1), (1, 1)])
def test_reflect_pad_larger_than_the_image_repeats_the_reflection(height: int, width: int) -> None:
    x = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    padded = pad_to_multiple(x, 8, "reflect")
    assert padded.shape == (1, 1, 8, 16 if width > 8 else 8)
    bottom, right = padded.shape[2] - height, padded.shape[3] - width
    # numpy reflects repeatedly; a one-pixel side has nothing to mirror and is replicated ("edge").
    rows = np.pad(x.numpy(), ((0, 0), (0, 0), (0, bottom), (0, 0)), mode="reflect" if height > 1 else "edge")
    both = np.pad(rows, ((0, 0), (0, 0), (0, 0), (0, right)), mode="reflect" if width > 1 else "edge")
    reference = torch.from_numpy(both)
    assert torch.equal(padded, reference)


def test_small_hand_checked_reflection() -> None:
    row = torch.tensor([[[[10.0, 20.0, 30.0]]]])
    # 3 wide -> 8 wide: 10 20 30 | 20 10 20 30 20
    assert pad_to_multiple(row, 8, "reflect")[0, 0, 0].tolist() == [10, 20, 30, 20, 10, 20, 30, 20]
    assert pad_to_multiple(row, 4, "constant")[0, 0].tolist() == [[10, 20, 30, 0]] + [[0, 0, 0, 0]] * 3


def test_axis_tiles_hand_checked() -> None:
    # 96 long, 48 tiles, overlap 16, multiple 8: stride 32 -> 3 tiles; 3 evenly spread tiles need
    # ceil(80 / 3) + 16 = 43 -> 48 pixels: the full tile, at 0, 32, then the last ending at 96.
    assert axis_tiles(96, 48, 16, 8) == (48, [0, 32, 48])
    assert axis_tiles(40, 48, 16, 8) == (40, [0])
    assert axis_tiles(96, 48, 12, 16) == (48, [0, 32, 48])  # stride rounded down to the multiple
    # 1024 in tiles of 256 sharing 32 (multiple 8): 5 tiles; ceil(992 / 5) + 32 = 231 -> 232 pixels,
    # starts 792 * i / 4 rounded down to 8: gaps 192, 200, 200, 200 <= 232 - 32.
    assert axis_tiles(1024, 256, 32, 8) == (232, [0, 192, 392, 592, 792])
    # 240 in tiles of 128 sharing 20 (multiple 16): 3 tiles of ceil(220 / 3) + 20 = 94 -> 96 would
    # start at 0, 72 -> 64, 144: a gap of 80 > 96 - 20, so the size grows by one multiple to 112.
    assert axis_tiles(240, 128, 20, 16) == (112, [0, 64, 128])


@pytest.mark.parametrize("length", [72, 200, 1000, 1024, 3000, 4000])
@pytest.mark.parametrize(("tile", "overlap", "multiple"), [(256, 32, 8), (128, 32, 16), (512, 64, 8), (64, 16, 4)])
def test_axis_tiles_cover_with_the_overlap_and_no_more_tiles(
    length: int, tile: int, overlap: int, multiple: int
) -> None:
    length = length // multiple * multiple
    size, starts = axis_tiles(length, tile, overlap, multiple)
    assert size <= min(tile, length) and size % multiple == 0
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(start % multiple == 0 for start in starts)
    assert all(0 < b - a <= size - overlap for a, b in itertools.pairwise(starts))
    stride = (tile - overlap) // multiple * multiple
    fixed = 1 if length <= tile else len(range(0, length - tile, stride)) + 1
    assert len(starts) == fixed


@pytest.mark.parametrize(("tile", "overlap", "multiple"), [(48, 16, 8), (64, 32, 16), (40, 0, 8), (37, 5, 4)])
def test_tile_grid_covers_with_aligned_tiles_and_enough_overlap(tile: int, overlap: int, multiple: int) -> None:
    height, width = 128, 208
    tiles = plan_tiles(height, width, tile, overlap, multiple)
    side = tile // multiple * multiple
    covered = torch.zeros(height, width, dtype=torch.int32)
    assert len({(item.height, item.width) for item in tiles}) == 1  # one shape: tiles batch together
    for item in tiles:
        assert item.height <= side and item.width <= side
        assert item.top % multiple == 0 and item.left % multiple == 0
        item.window(covered).add_(1)
    assert covered.min() >= 1
    for axis, size in (("top", tiles[0].height), ("left", tiles[0].width)):
        starts = sorted({getattr(item, axis) for item in tiles})
        assert all(size - (b - a) >= overlap for a, b in itertools.pairwise(starts))


def test_image_no_larger_than_the_tile_is_one_tile() -> None:
    assert plan_tiles(64, 48, 64, 32, 8) == [Tile(0, 0, 64, 48)]
    assert plan_tiles(16, 16, 512, 32, 8) == [Tile(0, 0, 16, 16)]


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [
        (32, 32, "at least 40 pixels .* but got 32"),
        (36, 30, "at least 40 pixels .* but got 36"),
        (15, 5, "at least 16 pixels .* but got 15"),
        (64, -1, "overlap of 0 or more pixels, but got -1"),
    ],
)
def test_tile_too_small_for_the_overlap_is_rejected(tile: int, overlap: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_tiles(128, 128, tile, overlap, 8)


def test_minimum_tile_is_always_a_valid_tile() -> None:
    for overlap in range(70):
        for multiple in (1, 4, 8, 16):
            smallest = minimum_tile(overlap, multiple)
            assert smallest % multiple == 0 and smallest >= 2 * overlap
            plan_tiles(smallest * 4, smallest * 4, smallest, overlap, multiple)


@pytest.mark.parametrize("overlap", [16, 32, 13])
def test_raw_blend_weights_sum_to_one_on_an_even_grid(overlap: int) -> None:
    # Tiles of 64 at stride 64 - overlap: facing ramps are complementary, so no normalisation is needed.
    tile, stride, count = 64, 64 - overlap, 4
    length = tile + stride * (count - 1)
    total = torch.zeros(length, length, dtype=torch.float64)
    for top in range(0, length - tile + 1, stride):
        for left in range(0, length - tile + 1, stride):
            item = Tile(top, left, tile, tile)
            item.window(total).add_(tile_weights(item, length, length, overlap))
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)


def test_blend_weights_are_zero_over_the_context_margin_and_smooth() -> None:
    overlap = 32
    inner = tile_weights(Tile(64, 64, 128, 128), 512, 512, overlap)
    assert inner[:, :8].abs().max() == 0 and inner[:8].abs().max() == 0  # margin = overlap // 4
    assert inner[8:-8, 8].min() > 0 and inner[8:-8, 7].max() == 0
    assert inner[24:-24, 24:-24].min() == 1
    assert inner.diff(dim=1).abs().max() < 0.1  # a 16-pixel raised cosine: at most pi/32 per pixel
    border = tile_weights(Tile(0, 0, 128, 128), 512, 512, overlap)
    assert border[0, 0] == 1  # edges on the image border keep full weight


def _per_tile(pieces_of: torch.Tensor, tiles: list[Tile], model: nn.Module):
    for item in tiles:
        yield 0, item, model(item.window(pieces_of))[0]


def test_merged_tiles_of_a_local_model_equal_the_untiled_output() -> None:
    # Receptive radius 3 (three 3x3 convolutions) <= context margin 32 // 4 = 8.
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 2, 3, padding=1)
    )
    x = torch.rand(1, 3, 136, 200)
    with torch.no_grad():
        untiled = model(x)
        merged = merge_tiles(_per_tile(x, plan_tiles(136, 200, 64, 32, 8), model), (1, 2, 136, 200), 32, x.device)
    torch.testing.assert_close(merged, untiled, rtol=0, atol=1e-5)


class _AddsTileMean(nn.Module):
    """A global operator: every output pixel depends on the whole tile (like attention over the tile)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * x.mean(dim=(-2, -1), keepdim=True)


def test_non_local_model_shows_no_seam() -> None:
    # A horizontal ramp image: each tile's mean differs, so tiles disagree by a constant.
    height, width, overlap = 64, 256, 32
    x = torch.linspace(0, 1, width).expand(1, 1, height, width).contiguous()
    model = _AddsTileMean()
    tiles = plan_tiles(height, width, 64, overlap, 8)
    with torch.no_grad():
        blended = merge_tiles(_per_tile(x, tiles, model), (1, 1, height, width), overlap, x.device)
        hard = torch.zeros_like(x)  # the naive alternative: paste tiles, later ones over earlier ones
        for item in tiles:
            item.window(hard).copy_(model(item.window(x)))
    input_step = x.diff(dim=-1).abs().max()
    hard_jump = hard.diff(dim=-1).abs().max()
    blended_jump = blended.diff(dim=-1).abs().max()
    assert hard_jump > 5 * input_step  # the seams the blend must hide are there
    assert blended_jump < 2 * input_step + (hard_jump - input_step) / 8
