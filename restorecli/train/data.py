"""Training and validation data: random crops of clean images degraded on the fly, or of paired folders.

The data stream is a pure function of the recipe seed and the iteration: batch ``i`` holds the
global sample numbers ``offset(i) .. offset(i) + batch(i) - 1``; sample ``n`` is image
``permutation(seed, epoch)[n mod N]`` and draws its crop, flips and degradation from its own
generator ``default_rng([seed, 2, n])``. So the stream does not depend on the number of DataLoader
workers, and a run resumed at iteration ``i`` sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from restorecli.data import degradations
from restorecli.data.dataset import describe_missing, index_dataset, read_id_list
from restorecli.data.degradations import DegradationParams, NoiseParams, size_factor
from restorecli.data.degradations.files import to_float, to_pixels
from restorecli.errors import ConfigError, DatasetError, ImageReadError
from restorecli.images import list_images, read_array, split_alpha
from restorecli.train.recipe import DegradationSection, Recipe, ValidationSection, to_plain

SampleKey = tuple[int, int, int]
"""``(image index, global sample number, patch size)`` handed from the sampler to the dataset."""

_PERMUTATION_STREAM = 1
_SAMPLE_STREAM = 2


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Float ``(H, W[, C])`` -> ``(H, W, channels)``: alpha dropped, grey repeated or RGB turned to luma."""
    if image.ndim == 2:
        image = image[:, :, None]
    image = image[:, :, : 1 if image.shape[2] == 2 else 3]  # grey + alpha keeps its grey plane
    if channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 1 and image.shape[2] == 3:
        # ITU-R BT.601 luma, as PIL's "L" conversion.
        image = image @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)
    return np.ascontiguousarray(image, dtype=np.float32)


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """Read an image as float32 ``(H, W, channels)`` in ``[0, 1]`` (8- and 16-bit alike)."""
    return to_channels(to_float(read_array(path)), channels)


def read_pair(degraded_path: Path, clean_path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``(degraded, clean)`` pair as float32 images, which must have the same size."""
    degraded, clean = read_image(degraded_path, channels), read_image(clean_path, channels)
    if degraded.shape != clean.shape:
        raise DatasetError(
            f"Expected a pair of equal sizes, but got {degraded.shape[1]}x{degraded.shape[0]} and "
            f"{clean.shape[1]}x{clean.shape[0]} ({degraded_path})"
        )
    return degraded, clean


def augment(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one of the 8 flips/90-degree rotations, the same to every image of a pair."""
    turns = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for image in images:
        image = np.rot90(image, turns, axes=(0, 1))
        out.append(np.ascontiguousarray(image[:, ::-1] if flip else image))
    return out


def random_window(shape: tuple[int, ...], size: tuple[int, int], rng: np.random.Generator) -> tuple[slice, slice]:
    """A uniformly placed ``size`` window inside an image of ``shape`` (``size`` must fit)."""
    top = int(rng.integers(shape[0] - size[0] + 1))
    left = int(rng.integers(shape[1] - size[1] + 1))
    return slice(top, top + size[0]), slice(left, left + size[1])


def center_window(shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    """The centred ``size`` x ``size`` window, shrunk to the image where it is smaller (0 = whole image)."""
    height = min(shape[0], size) if size else shape[0]
    width = min(shape[1], size) if size else shape[1]
    top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
    return slice(top, top + height), slice(left, left + width)


def scaled_window(window: tuple[slice, slice], scale: int) -> tuple[slice, slice]:
    """The same region ``scale`` times larger: a low-resolution window's place in the high-resolution image."""
    return tuple(slice(part.start * scale, part.stop * scale) for part in window)  # type: ignore[return-value]


def _check_fits(shape: tuple[int, ...], patch: int, path: Path) -> None:
    if shape[0] < patch or shape[1] < patch:
        raise DatasetError(
            f"Expected images of at least {patch}x{patch} for training patches, but got {shape[1]}x{shape[0]} ({path})"
        )


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class CleanDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Clean images cropped, augmented, then degraded on the fly: ``(degraded, clean)`` CHW float32.

    A window of ``patch + 2 * margin`` (where the image allows) is degraded and the centred patch
    kept, so blur kernels and rain streaks near the patch border draw on real neighbouring pixels.
    Augmentation comes before degradation so rain keeps its falling direction.

    Downscaling (super-resolution) uses no margin: the window is the high-resolution patch (a
    multiple of the scale) and its whole reduction, ``patch / scale`` pixels a side, the input, so
    every input pixel sits over the ``scale x scale`` target pixels it was made from.
    """

    def __init__(
        self,
        files: Sequence[Path],
        degradation: DegradationSection,
        seed: int,
        margin: int,
        augment: bool,
        channels: int,
        grey_fraction: float = 0.0,
    ) -> None:
        self.files = list(files)
        self.kind = degradation.kind
        self.params = degradations_params(degradation)
        self.scale = size_factor(self.params)
        self.seed = seed
        self.margin = margin if self.scale == 1 else 0
        self.augment = augment
        self.channels = channels
        self.grey_fraction = grey_fraction

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        index, sample, patch = key
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, sample])
        pixels = read_array(self.files[index])
        _check_fits(pixels.shape, patch, self.files[index])
        size = (min(pixels.shape[0], patch + 2 * self.margin), min(pixels.shape[1], patch + 2 * self.margin))
        # Crop before converting: decoding dominates, and only the window needs float pixels.
        window = to_channels(to_float(pixels[random_window(pixels.shape, size, rng)]), self.channels)
        if self.augment:
            (window,) = augment([window], rng)
        # Drawn only when asked for, so recipes without grey patches keep their random streams.
        if self.grey_fraction and self.channels == 3 and rng.random() < self.grey_fraction:
            window = to_channels(to_channels(window, 1), 3)
        degraded = degradations.degrade(self.kind, window, rng, self.params)
        keep = center_window(degraded.shape, patch // self.scale)
        return _to_chw(np.asarray(degraded, dtype=np.float32)[keep]), _to_chw(window[scaled_window(keep, self.scale)])


class PairedDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Aligned random crops of ``(degraded, clean)`` file pairs, with the same augmentation on both."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], seed: int, augment: bool, channels: int) -> None:
        self.pairs = list(pairs)
        self.seed = seed
        self.augment = augment
        self.channels = channels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        index, sample, patch = key
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, sample])
        degraded_path, clean_path = self.pairs[index]
        degraded, clean = read_pair(degraded_path, clean_path, self.channels)
        _check_fits(clean.shape, patch, clean_path)
        window = random_window(clean.shape, (patch, patch), rng)
        pair = [degraded[window], clean[window]]
        if self.augment:
            pair = augment(pair, rng)
        return _to_chw(pair[0]), _to_chw(pair[1])


class BatchPlan(Sampler[list[SampleKey]]):
    """Batches of sample keys for iterations ``start .. end``, following the recipe's stages.

    Args:
        size: number of images in the dataset.
        recipe: gives each iteration's patch and batch size (progressive learning).
        start: first iteration to produce (the resume point).
    """

    def __init__(self, size: int, recipe: Recipe, start: int = 0) -> None:
        self.size = size
        self.recipe = recipe
        self.start = start
        self.end = recipe.schedule.iterations

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def sample_offset(self, iteration: int) -> int:
        """Global number of the first sample of ``iteration`` (the sum of earlier batch sizes)."""
        return sum(self.recipe.stage_at(i).batch for i in range(iteration))

    def __iter__(self) -> Iterator[list[SampleKey]]:
        sample = self.sample_offset(self.start)
        epoch, order = -1, np.empty(0, dtype=np.int64)
        for iteration in range(self.start, self.end):
            stage = self.recipe.stage_at(iteration)
            batch: list[SampleKey] = []
            for number in range(sample, sample + stage.batch):
                if number // self.size != epoch:
                    epoch = number // self.size
                    order = np.random.default_rng([self.recipe.seed, _PERMUTATION_STREAM, epoch]).permutation(self.size)
                batch.append((int(order[number % self.size]), number, stage.patch))
            sample += stage.batch
            yield batch


def _init_worker(worker_id: int) -> None:
    """Seed a worker's global NumPy/Python generators from torch's per-worker seed; ignore Ctrl-C.

    The training process turns Ctrl-C into a stop after the current step; workers must keep serving
    batches until then instead of dying with the terminal's SIGINT.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resolve_path(text: str) -> Path:
    """A recipe path, relative to the working directory, with ``~`` expanded."""
    return Path(text).expanduser()


def clean_files(folders: Sequence[str]) -> list[Path]:
    """Every image in the clean folders, in natural order; an empty result is an error."""
    files: list[Path] = []
    for folder in folders:
        path = resolve_path(folder)
        if not path.exists():
            raise DatasetError(f"Expected a folder of clean images, but nothing exists at {path}")
        try:
            files.extend(p for p in list_images(path) if not p.name.startswith("."))
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from exc
    if not files:
        raise DatasetError(f"Expected clean training images, but found none in {', '.join(folders)}")
    return files


def paired_files(
    root: str, dirs: tuple[str, str], split: str | None, patterns: Mapping[str, str] | None = None
) -> list[tuple[Path, Path]]:
    """``(degraded, clean)`` file pairs of a paired dataset folder, optionally restricted to a split list.

    Files are matched by id across ``dirs`` as :func:`restorecli.data.dataset.index_dataset` does.
    """
    index = index_dataset(resolve_path(root), dirs, patterns)
    if index.missing:
        raise DatasetError(
            f"Expected every file paired in {'/ and '.join(dirs)}/, but got {describe_missing(index.missing)} ({root})"
        )
    ids = index.ids
    if split is not None:
        listed = read_id_list(resolve_path(split))
        unknown = [i for i in listed if i not in index.files]
        if unknown:
            raise DatasetError(f"Expected split ids present in {root}, but got unknown {unknown[:5]} ({split})")
        ids = listed
    if not ids:
        raise DatasetError(f"Expected image pairs, but found none in {root}")
    return [(index.files[i][0], index.files[i][1]) for i in ids]


def build_train_dataset(recipe: Recipe, channels: int) -> CleanDataset | PairedDataset:
    """The recipe's training dataset: clean images degraded on the fly, or a paired folder."""
    data = recipe.data
    if recipe.degradation is not None and data.clean:
        files = clean_files(data.clean)
        return CleanDataset(
            files, recipe.degradation, recipe.seed, data.margin, data.augment, channels, data.grey_fraction
        )
    pairs = paired_files(data.paired or "", data.dirs, data.split, data.patterns)
    return PairedDataset(pairs, recipe.seed, data.augment, channels)


def describe_data(recipe: Recipe, dataset: CleanDataset | PairedDataset) -> dict[str, Any]:
    """What the model was trained and validated on, for the model card."""
    data = recipe.data
    train: dict[str, Any] = (
        {"clean": list(data.clean), "images": len(dataset), "grey_fraction": data.grey_fraction}
        if data.clean
        else {
            "paired": data.paired,
            "dirs": list(data.dirs),
            "patterns": data.patterns,
            "split": data.split,
            "pairs": len(dataset),
        }
    )
    if recipe.degradation is not None:
        train["degradation"] = {"kind": recipe.degradation.kind, **asdict(degradations_params(recipe.degradation))}
    summary: dict[str, Any] = {"train": train}
    validation = recipe.validation
    if validation is not None:
        summary["validation"] = {"source": validation.clean or validation.paired, "seed": validation.seed}
        if validation.clean:
            degradation = validation_degradation(validation, recipe)
            summary["validation"]["degradation"] = {
                "kind": degradation.kind,
                **asdict(degradations_params(degradation)),
                "format": validation.input_format,
            }
    return to_plain(summary)


def build_loader(dataset: CleanDataset | PairedDataset, recipe: Recipe, start: int) -> DataLoader:
    """A DataLoader over the batches from iteration ``start`` on, with deterministically seeded workers."""
    workers = recipe.data.workers
    return DataLoader(
        dataset,
        batch_sampler=BatchPlan(len(dataset), recipe, start),
        num_workers=workers,
        worker_init_fn=_init_worker if workers else None,
        # A private generator: creating worker seeds must not consume the global torch RNG.
        generator=torch.Generator().manual_seed(recipe.seed),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=2 if workers else None,
    )


@dataclass(frozen=True)
class ValidationItem:
    """One validation image pair, float32 ``(H, W, C)`` in ``[0, 1]``, already centre-cropped."""

    name: str
    degraded: np.ndarray
    clean: np.ndarray


def validation_degradation(section: ValidationSection, recipe: Recipe) -> DegradationSection:
    """The validation degradation: the section's own, else the training kind with default parameters.

    Downscaling keeps the training parameters instead: it is deterministic, and a network is only
    scored at its own scale.
    """
    if section.degradation is not None:
        return section.degradation
    if recipe.degradation is None:
        raise ConfigError("Expected validation.degradation to degrade validation.clean, but it is missing")
    if size_factor(degradations_params(recipe.degradation)) > 1:
        return recipe.degradation
    return DegradationSection(kind=recipe.degradation.kind)


def build_validation_set(section: ValidationSection, recipe: Recipe, channels: int) -> list[ValidationItem]:
    """Load the validation pairs; a clean folder is degraded as ``restore degrade --seed`` would.

    The whole image is degraded (same per-file random stream as ``restore degrade``), then rounded
    to 8 bits for ``input_format = "png"``; the centre crop comes after, so scores on the crop match
    scores of the same region of the files ``restore degrade`` writes.

    For downscaling, the clean image is first cut (bottom and right) to multiples of the scale, as
    SR test sets are; the crop is placed on the low-resolution image and scaled up, so the pair
    stays aligned: the items' ``degraded`` is then ``scale`` times smaller than ``clean``.
    """
    items: list[ValidationItem] = []
    if section.clean:
        degradation = validation_degradation(section, recipe)
        params = degradations_params(degradation)
        if isinstance(params, NoiseParams) and params.sigma_range is not None:
            raise ConfigError(
                f"Expected a fixed validation sigma (the benchmark protocol), but got sigma_range={params.sigma_range}"
            )
        scale = size_factor(params)
        files = clean_files([section.clean])
        for path in files[: section.max_images or None]:
            pixels, _ = split_alpha(read_array(path))
            pixels = pixels[: pixels.shape[0] - pixels.shape[0] % scale, : pixels.shape[1] - pixels.shape[1] % scale]
            degraded, _ = degradations.degrade_pixels(degradation.kind, pixels, params, section.seed, path.name)
            if section.input_format == "png":
                degraded = to_float(to_pixels(degraded, pixels.dtype))
            clean = to_float(pixels)
            window = center_window(degraded.shape, section.crop // scale)
            items.append(
                ValidationItem(
                    path.stem,
                    to_channels(degraded[window], channels),
                    to_channels(clean[scaled_window(window, scale)], channels),
                )
            )
        return items
    pairs = paired_files(section.paired or "", section.dirs, section.split, section.patterns)
    for degraded_path, clean_path in pairs[: section.max_images or None]:
        degraded, clean = read_pair(degraded_path, clean_path, channels)
        window = center_window(clean.shape, section.crop)
        items.append(ValidationItem(clean_path.stem, degraded[window], clean[window]))
    return items


def degradations_params(section: DegradationSection) -> DegradationParams:
    """The degradation module's parameter record for ``section`` (its defaults where not given)."""
    return degradations.make_params(section.kind, section.params)
