"""The pictures of a report: display copies, thumbnails, error heat-maps, worst-region crops, mask overlays.

Everything works on the arrays :func:`restorecli.images.read_array` returns and produces 8-bit RGB
arrays for the page; 16-bit images are scaled down for display only (scores come from the files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from restorecli.images import dtype_max, split_alpha

THUMBNAIL_SIDE = 160
CROP_SIDE = 64
CROP_ZOOM = 3
# Inferno-like ramp (black -> purple -> orange -> pale yellow) for error heat-maps: dark where the
# output is right, bright where it is wrong, readable by colour-blind readers.
_RAMP = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def display_rgb(image: np.ndarray) -> np.ndarray:
    """8-bit RGB for the page: alpha dropped, grey repeated, 16-bit scaled to 8 bits."""
    color, _ = split_alpha(image)
    if color.ndim == 2:
        color = color[:, :, None]
    color = color[:, :, :3]
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    if color.dtype != np.uint8:
        color = np.round(color.astype(np.float64) * (255.0 / dtype_max(color.dtype))).astype(np.uint8)
    return np.ascontiguousarray(color)


def thumbnail(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A copy whose longer side is at most ``side`` pixels (area averaging, as Pillow's reduce)."""
    from PIL import Image

    picture = Image.fromarray(display_rgb(image))
    picture.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(picture)


def error_map(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error, averaged over colour channels, in ``[0, 1]`` of the data range."""
    first, second = display_rgb(output).astype(np.float64), display_rgb(reference).astype(np.float64)
    if first.shape != second.shape:
        raise ValueError(f"Expected images of one size, but got {first.shape} and {second.shape}")
    return np.abs(first - second).mean(axis=2) / 255.0


def heat_map(error: np.ndarray) -> np.ndarray:
    """Colour an error map for display; the scale stretches to the image's 99th percentile error."""
    top = float(np.percentile(error, 99)) if error.size else 0.0
    level = np.clip(error / top, 0.0, 1.0) if top > 0 else np.zeros_like(error)
    position = level * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    weight = (position - low)[..., None]
    colors = _RAMP[low] * (1 - weight) + _RAMP[low + 1] * weight
    return np.round(colors).astype(np.uint8)


@dataclass(frozen=True)
class Region:
    """A square window ``(top, left, side)`` and its mean error, for a zoomed crop."""

    top: int
    left: int
    side: int
    mean_error: float


def worst_regions(error: np.ndarray, count: int = 3, side: int = CROP_SIDE) -> list[Region]:
    """The ``count`` non-overlapping ``side``-pixel windows with the largest mean error.

    Windows are searched on a half-window grid (summed-area table); each chosen window excludes its
    overlapping neighbours, so the crops show different places.
    """
    height, width = error.shape
    side = min(side, height, width)
    step = max(side // 2, 1)
    table = np.pad(error, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    tops = sorted({*range(0, height - side + 1, step), height - side})
    lefts = sorted({*range(0, width - side + 1, step), width - side})
    candidates = []
    for top in tops:
        for left in lefts:
            total = (
                table[top + side, left + side] - table[top, left + side] - table[top + side, left] + table[top, left]
            )
            candidates.append(Region(top, left, side, float(total) / (side * side)))
    chosen: list[Region] = []
    for region in sorted(candidates, key=lambda r: -r.mean_error):
        if all(abs(region.top - c.top) >= side or abs(region.left - c.left) >= side for c in chosen):
            chosen.append(region)
            if len(chosen) == count:
                break
    return chosen


def zoomed_crop(image: np.ndarray, region: Region, zoom: int = CROP_ZOOM) -> np.ndarray:
    """The region of ``image`` enlarged ``zoom`` times with nearest neighbours (pixels stay visible)."""
    window = display_rgb(image)[region.top : region.top + region.side, region.left : region.left + region.side]
    return np.repeat(np.repeat(window, zoom, axis=0), zoom, axis=1)


def mask_overlay(image: np.ndarray, predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Blend masks over the picture: true positives green, false alarms red, misses blue.

    ``predicted`` and ``target`` are label maps (0 background); ``image`` is what the masks describe
    (the ground truth's own picture when there is no other).
    """
    base = display_rgb(image).astype(np.float64) * 0.55
    hit, false_alarm, miss = (
        (predicted != 0) & (target != 0),
        (predicted != 0) & (target == 0),
        (predicted == 0) & (target != 0),
    )
    for mask, color in ((hit, (40, 220, 90)), (false_alarm, (235, 60, 50)), (miss, (60, 120, 255))):
        base[mask] = base[mask] * 0.3 + np.asarray(color, dtype=np.float64) * 0.7
    return np.round(base).clip(0, 255).astype(np.uint8)


def histogram_svg(values: list[float], label: str, bins: int = 12, width: int = 420, height: int = 160) -> str:
    """A small inline SVG bar chart of ``values`` (finite ones), with the axis range printed."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return f'<p class="muted">No finite {label} values to plot.</p>'
    low, high = min(finite), max(finite)
    if high == low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    bar = (width - 40) / bins
    tallest = max(int(counts.max()), 1)
    bars = []
    for index, count in enumerate(counts):
        bar_height = (height - 50) * count / tallest
        x, y = 30 + index * bar, height - 25 - bar_height
        tip = f"{edges[index]:.2f} to {edges[index + 1]:.2f}: {count}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{bar_height:.1f}"><title>{tip}</title></rect>'
        )
    return (
        f'<svg class="histogram" viewBox="0 0 {width} {height}" role="img" aria-label="histogram of {label}">'
        + "".join(bars)
        + f'<text x="30" y="{height - 8}">{low:.2f}</text>'
        + f'<text x="{width - 10}" y="{height - 8}" text-anchor="end">{high:.2f}</text>'
        + f'<text x="{width / 2:.0f}" y="14" text-anchor="middle">{label} ({len(finite)} images)</text>'
        + f'<text x="26" y="{height - 25}" text-anchor="end">0</text>'
        + f'<text x="26" y="{height - 25 - (height - 50)}" text-anchor="end">{tallest}</text>'
        + "</svg>"
    )
