"""Random motion-blur kernels (linear and camera-shake) and their application.

Every kernel is a square float32 array of odd size, non-negative, summing to 1, with its centroid
on the centre pixel, so blurring never shifts the image: a blurred/sharp training pair stays aligned.
Trajectories are rasterised by bilinear splatting of densely sampled points, which keeps sub-pixel
positions (and the exact centroid) instead of snapping them to the grid.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import scipy.fft

from restorecli.data.degradations.ranges import as_probability, as_range, check_image, uniform
from restorecli.errors import ConfigError

KernelKind = Literal["linear", "shake", "mixed"]
KERNEL_KINDS: tuple[str, ...] = ("linear", "shake", "mixed")
SAMPLES_PER_PIXEL = 4  # points per pixel of path length: sub-pixel accurate, still cheap
DIRECT_CONVOLUTION_MAX_SIZE = 11  # above this, an FFT beats a direct filter at patch sizes


@dataclass(frozen=True)
class BlurParams:
    """Motion-blur kernel settings.

    Attributes:
        kernel_size_range: inclusive ``(min, max)`` odd kernel sizes in pixels; a size is drawn per call.
        kind: ``linear`` (uniform motion along a segment), ``shake`` (random camera-shake trajectory,
            Boracchi & Foi 2012) or ``mixed`` (shake with probability ``shake_probability``).
        shake_probability: chance of a shake kernel in ``mixed`` mode.
        length_range: path length as a fraction of the kernel span ``size - 1``: ``(1, 1)`` makes a
            linear kernel reach from edge to edge of its support.
        angle_range: direction of linear motion in degrees, counter-clockwise from the x axis.
        anxiety_range: Boracchi & Foi's "anxiety" of shake trajectories (0 = straight, 0.1 = very erratic).
        shake_steps: samples of the shake random walk; 2000 as in the reference model (its turning
            statistics depend on the step count, so keep it unless you mean to change them).
    """

    kernel_size_range: tuple[int, int] = (9, 31)
    kind: KernelKind = "mixed"
    shake_probability: float = 0.5
    length_range: tuple[float, float] = (0.5, 1.0)
    angle_range: tuple[float, float] = (0.0, 180.0)
    anxiety_range: tuple[float, float] = (0.001, 0.01)
    shake_steps: int = 2000

    def __post_init__(self) -> None:
        low, high = (int(v) for v in as_range("kernel_size_range", self.kernel_size_range, 1))
        if low % 2 == 0 or high % 2 == 0 or tuple(self.kernel_size_range) != (low, high):
            raise ConfigError(
                f"Expected odd integer kernel sizes, but got kernel_size_range={self.kernel_size_range!r}"
            )
        object.__setattr__(self, "kernel_size_range", (low, high))
        if self.kind not in KERNEL_KINDS:
            raise ConfigError(f"Expected a blur kind among {', '.join(KERNEL_KINDS)}, but got {self.kind!r}")
        object.__setattr__(self, "shake_probability", as_probability("shake_probability", self.shake_probability))
        object.__setattr__(self, "length_range", as_range("length_range", self.length_range, 0.0, 1.0))
        object.__setattr__(self, "angle_range", as_range("angle_range", self.angle_range, -360.0, 360.0))
        object.__setattr__(self, "anxiety_range", as_range("anxiety_range", self.anxiety_range, 0.0, 1.0))
        if int(self.shake_steps) < 2:
            raise ConfigError(f"Expected shake_steps >= 2, but got {self.shake_steps!r}")


def rasterize_path(points: np.ndarray, size: int) -> np.ndarray:
    """Splat equally weighted sub-pixel points ``(N, 2)`` as ``(x, y)`` into a ``size x size`` kernel.

    Points are first shifted so their mean sits on the centre pixel, then shrunk about it if they
    would leave the support. Bilinear weights preserve the centroid exactly.
    """
    centre = (size - 1) / 2.0
    offsets = points - points.mean(axis=0)
    reach = float(np.abs(offsets).max(initial=0.0))
    if reach > centre:
        offsets = offsets * (centre / reach)
    # One spare pixel on each side absorbs round-off at the edges; it is empty up to float error.
    coords = np.clip(offsets + centre + 1.0, 0.0, size + 1.0 - 1e-6)
    base = np.floor(coords)
    frac = coords - base
    cols, rows = base[:, 0].astype(np.intp), base[:, 1].astype(np.intp)
    fx, fy = frac[:, 0], frac[:, 1]
    width = size + 2
    top_left = rows * width + cols
    index = np.concatenate([top_left, top_left + 1, top_left + width, top_left + width + 1])
    weight = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    grid = np.bincount(index, weights=weight, minlength=width * width).reshape(width, width)[1:-1, 1:-1]
    return (grid / grid.sum()).astype(np.float32)


def linear_motion_kernel(length: float, angle: float, size: int) -> np.ndarray:
    """Uniform linear motion of ``length`` pixels at ``angle`` degrees (counter-clockwise from +x).

    The segment is centred on the kernel centre and sampled at interval midpoints; a length of 0
    is the identity kernel.
    """
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"Expected an odd kernel size >= 1, but got {size!r}")
    count = max(1, math.ceil(length * SAMPLES_PER_PIXEL))
    t = ((np.arange(count) + 0.5) / count - 0.5) * length
    radians = math.radians(angle)
    points = np.stack([t * math.cos(radians), -t * math.sin(radians)], axis=1)  # image y axis points down
    return rasterize_path(points, size)


def shake_trajectory(rng: np.random.Generator, length: float, anxiety: float, steps: int = 2000) -> np.ndarray:
    """A camera-shake path as in Boracchi & Foi (2012): ``(steps, 2)`` points ``(x, y)``, arc length ``length``.

    A particle moves at constant speed; each step its velocity gets a Gaussian kick and a pull back
    towards the start (the "centripetal" term), and with small probability an abrupt reversal
    ("big shake"). The per-trajectory constants are drawn as in the reference model: centripetal in
    [0, 0.7], big-shake probability in [0, 0.2], Gaussian term in [0, 10], initial direction in [0, 2π).
    """
    centripetal = 0.7 * float(rng.random())
    big_shake_probability = 0.2 * float(rng.random())
    gaussian_term = 10.0 * float(rng.random())
    direction = cmath.exp(2j * math.pi * float(rng.random()))
    shakes = (rng.random(steps - 1) < big_shake_probability * anxiety).tolist()
    turns = (rng.random(steps - 1) - 0.5 + math.pi).tolist()
    kicks_xy = rng.standard_normal((steps - 1, 2))
    kicks = (kicks_xy[:, 0] + 1j * kicks_xy[:, 1]).tolist()

    step = length / (steps - 1)
    velocity = direction * (anxiety if anxiety > 0 else step)
    position = 0j
    path = [position]
    # The recurrence is sequential (each step renormalises the velocity), so it runs on Python
    # complex scalars, which are ~10x faster per step than numpy scalars.
    for shake, turn, kick in zip(shakes, turns, kicks):
        reversal = 2.0 * velocity * cmath.exp(1j * turn) if shake else 0j
        velocity += reversal + anxiety * (gaussian_term * kick - centripetal * position) * step
        speed = abs(velocity)
        velocity = velocity / speed * step if speed > 0 else direction * step
        position += velocity
        path.append(position)
    trajectory = np.asarray(path)
    return np.stack([trajectory.real, trajectory.imag], axis=1)


def shake_kernel(rng: np.random.Generator, size: int, length: float, anxiety: float, steps: int = 2000) -> np.ndarray:
    """A rasterised :func:`shake_trajectory` of arc ``length`` pixels, shrunk to fit a ``size`` kernel if needed."""
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"Expected an odd kernel size >= 1, but got {size!r}")
    return rasterize_path(shake_trajectory(rng, length, anxiety, steps), size)


def random_motion_kernel(rng: np.random.Generator, params: BlurParams) -> np.ndarray:
    """Draw one kernel (size, kind, length, angle or anxiety) from ``params``."""
    low, high = params.kernel_size_range
    size = low + 2 * int(rng.integers(0, (high - low) // 2 + 1))
    length = uniform(rng, params.length_range) * (size - 1)
    is_shake = params.kind == "shake" or (params.kind == "mixed" and rng.random() < params.shake_probability)
    if is_shake:
        return shake_kernel(rng, size, length, uniform(rng, params.anxiety_range), params.shake_steps)
    return linear_motion_kernel(length, uniform(rng, params.angle_range), size)


def convolve_valid(padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``'valid'`` 2-D convolution of ``(H, W[, C])`` float32 with a ``(k, k)`` kernel, per channel.

    Small kernels go through OpenCV's direct filter; larger ones through a real FFT of all channels
    at once (scipy.fft, float32), about twice as fast as OpenCV's own DFT path at 256x256x3.
    """
    size = kernel.shape[0]
    radius = size // 2
    height, width = padded.shape[0] - 2 * radius, padded.shape[1] - 2 * radius
    if size <= DIRECT_CONVOLUTION_MAX_SIZE:
        flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)  # filter2D correlates
        filtered = cv2.filter2D(padded, -1, flipped, borderType=cv2.BORDER_CONSTANT)
        return filtered.reshape(padded.shape)[radius : radius + height, radius : radius + width]
    shape = (scipy.fft.next_fast_len(padded.shape[0], True), scipy.fft.next_fast_len(padded.shape[1], True))
    spectrum = scipy.fft.rfft2(padded, shape, axes=(0, 1))
    kernel_spectrum = scipy.fft.rfft2(kernel.astype(np.float32), shape)
    if padded.ndim == 3:
        kernel_spectrum = kernel_spectrum[:, :, None]
    full = scipy.fft.irfft2(spectrum * kernel_spectrum, shape, axes=(0, 1))
    return full[2 * radius : 2 * radius + height, 2 * radius : 2 * radius + width].astype(np.float32, copy=False)


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of a float image with ``kernel`` (true convolution, mirrored borders).

    Returns float32 of the input's shape.
    """
    image = check_image(image)
    radius = kernel.shape[0] // 2
    padded = cv2.copyMakeBorder(image, radius, radius, radius, radius, cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(convolve_valid(padded.reshape(*padded.shape[:2], *image.shape[2:]), kernel))


def motion_blur(image: np.ndarray, rng: np.random.Generator, params: BlurParams) -> tuple[np.ndarray, np.ndarray]:
    """Blur a float image with a fresh random kernel; returns ``(blurred, kernel)``."""
    image = check_image(image)
    kernel = random_motion_kernel(rng, params)
    return apply_kernel(image, kernel), kernel
