"""Reproducible, stable train/val/test split lists, and laying a split out as folders.

Each id is placed by a hash of ``f"{seed}:{id}"`` (SHA-256, not Python's salted ``hash()``), mapped to
``[0, 1)`` and compared with the cumulative ratios. The same seed therefore gives the same lists on any
machine, and adding files never moves an existing id: its hash does not depend on the other ids. Ids
already written in ``DATASET/<name>/*.txt`` keep their split, so published lists (e.g. the ``50_50``
lists of infrared small-target datasets) are extended, never reshuffled.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from natsort import natsorted

from restorecli.data.dataset import (
    PLAIN_FOLDER,
    DatasetIndex,
    describe_missing,
    index_dataset,
    name_bytes,
    pattern_hint,
    read_id_list,
    shorten,
    write_id_list,
)
from restorecli.errors import ConfigError, DatasetError
from restorecli.images import atomic_path

SplitName = Literal["train", "val", "test"]
SPLIT_NAMES: tuple[SplitName, ...] = get_args(SplitName)
DEFAULT_TEST_RATIO = 0.2
_RATIO_TOLERANCE = 1e-6
_HASH_BYTES = 8


@dataclass(frozen=True)
class SplitRatios:
    """Fractions of ids per split, each in ``[0, 1]``, summing to 1."""

    train: float
    val: float
    test: float

    def __post_init__(self) -> None:
        for split, value in self.as_dict().items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"Expected a {split} ratio in [0, 1], but got {value}")
        total = self.train + self.val + self.test
        if abs(total - 1.0) > _RATIO_TOLERANCE:
            raise ConfigError(f"Expected train + val + test ratios to sum to 1, but got {total:g}")

    @classmethod
    def from_options(
        cls, train: float | None = None, val: float | None = None, test: float | None = None
    ) -> SplitRatios:
        """Fill gaps: val defaults to 0; train takes the remainder (test then defaults to 0.2), else test does."""
        val = val or 0.0
        if train is None:
            test = DEFAULT_TEST_RATIO if test is None else test
            return cls(train=round(1.0 - val - test, 12), val=val, test=test)
        if test is None:
            return cls(train=train, val=val, test=round(1.0 - train - val, 12))
        return cls(train=train, val=val, test=test)

    def as_dict(self) -> dict[SplitName, float]:
        """Ratios keyed by split name, in the order train, val, test."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def default_name(self) -> str:
        """Percentages joined by ``_`` (``50_50``, ``70_10_20``); val is left out when it is 0."""
        shown = [v for s, v in self.as_dict().items() if s != "val" or v > 0]
        return "_".join(f"{v * 100:.4g}" for v in shown)


def hash_fraction(item_id: str, seed: int) -> float:
    """A stable pseudo-random number in ``[0, 1)`` for ``item_id`` (first 64 bits of SHA-256).

    The id counts as :func:`~restorecli.data.dataset.name_bytes`: a copy with decomposed names (macOS)
    splits as the original does.
    """
    digest = hashlib.sha256(f"{seed}:".encode() + name_bytes(item_id)).digest()
    return int.from_bytes(digest[:_HASH_BYTES], "big") / float(1 << (8 * _HASH_BYTES))


def assign_split(item_id: str, seed: int, ratios: SplitRatios) -> SplitName:
    """The split of one id; the last non-empty split takes the floating-point remainder."""
    fraction = hash_fraction(item_id, seed)
    active = [(split, value) for split, value in ratios.as_dict().items() if value > 0]
    cumulative = 0.0
    for split, value in active[:-1]:
        cumulative += value
        if fraction < cumulative:
            return split
    return active[-1][0]


def read_existing_lists(directory: Path) -> dict[SplitName, list[str]]:
    """Lists already in ``directory`` (any line endings); an id in two lists is an error."""
    lists: dict[SplitName, list[str]] = {}
    owner: dict[str, SplitName] = {}
    for split in SPLIT_NAMES:
        path = Path(directory) / f"{split}.txt"
        if not path.is_file():
            continue
        lists[split] = read_id_list(path)
        for item_id in lists[split]:
            if item_id in owner:
                raise DatasetError(
                    f"Expected each id in one list, but {item_id!r} is in {owner[item_id]} and {split} ({directory})"
                )
            owner[item_id] = split
    return lists


@dataclass
class SplitResult:
    """What :func:`split_dataset` decided and wrote.

    Attributes:
        directory: Folder of the lists (``DATASET/<name>``).
        lists: Split name -> ids in natural order (only splits with a ratio or ids).
        kept: Split name -> how many of its ids came from existing lists.
        missing: Ids present in some folders only -> folders lacking them (left out of the lists).
        dropped: Ids of existing lists no longer complete in the dataset (left out of the lists).
        written: List files created or changed (unchanged lists are not rewritten).
    """

    index: DatasetIndex
    directory: Path
    name: str
    ratios: SplitRatios
    seed: int
    lists: dict[SplitName, list[str]]
    kept: dict[SplitName, int]
    missing: dict[str, tuple[str, ...]]
    dropped: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def to_dict(self, dataset: Path, materialized: MaterializeResult | None = None) -> dict[str, object]:
        """Plain JSON data for ``restore split --json``."""
        return {
            "dataset": str(dataset),
            "folders": list(self.index.folders),
            "directory": str(self.directory),
            "name": self.name,
            "seed": self.seed,
            "ratios": self.ratios.as_dict(),
            "counts": {split: len(ids) for split, ids in self.lists.items()},
            "kept": self.kept,
            "missing": {item_id: list(lacking) for item_id, lacking in self.missing.items()},
            "dropped": self.dropped,
            "unmatched": [str(path) for path in self.index.unmatched],
            "written": [str(path) for path in self.written],
            "materialized": None if materialized is None else materialized.to_dict(),
        }


def _check_complete(index: DatasetIndex, existing: Mapping[SplitName, Sequence[str]], allow_missing: bool) -> list[str]:
    """Fail on incomplete ids unless allowed; return listed ids that will be dropped."""
    listed = [item_id for ids in existing.values() for item_id in ids]
    dropped = natsorted(item_id for item_id in listed if item_id not in index.files)
    if allow_missing:
        return dropped
    if index.missing:
        raise DatasetError(
            f"Expected every id in every folder ({', '.join(index.folders)}), but {len(index.missing)} are "
            f"incomplete: {describe_missing(index.missing)}{pattern_hint(index)}; pass --allow-missing to list "
            f"complete ids only ({index.root})"
        )
    if dropped:
        raise DatasetError(
            f"Expected the ids of the existing lists in the dataset, but {len(dropped)} are gone: {shorten(dropped)}; "
            f"pass --allow-missing to drop them ({index.root})"
        )
    return dropped


def split_dataset(
    root: Path,
    ratios: SplitRatios,
    seed: int = 0,
    name: str | None = None,
    dirs: Sequence[str] | None = None,
    patterns: Mapping[str, str] | None = None,
    allow_missing: bool = False,
    reassign: bool = False,
) -> SplitResult:
    """Write ``root/<name>/{train,val,test}.txt`` (one id per line, natural order).

    Args:
        root: Dataset folder (see :func:`restorecli.data.dataset.index_dataset`).
        ratios: Fractions per split.
        seed: Hash seed; the same seed gives the same lists everywhere.
        name: List folder name; defaults to :meth:`SplitRatios.default_name` (e.g. ``50_50``).
        dirs, patterns: Dataset folders and per-folder name patterns.
        allow_missing: List complete ids only instead of failing on ids some folder lacks.
        reassign: Ignore existing lists and place every id by its hash.
    """
    index = index_dataset(root, dirs, patterns)
    name = name or ratios.default_name()
    if not name or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"Expected a plain folder name for the lists, but got {name!r}")
    directory = index.root / name
    existing = {} if reassign else read_existing_lists(directory)
    dropped = _check_complete(index, existing, allow_missing)

    owner = {item_id: split for split, ids in existing.items() for item_id in ids if item_id in index.files}
    lists: dict[SplitName, list[str]] = {split: [] for split in SPLIT_NAMES}
    kept: dict[SplitName, int] = {split: 0 for split in SPLIT_NAMES}
    for item_id in index.ids:
        if item_id in owner:
            split = owner[item_id]
            kept[split] += 1
        else:
            split = assign_split(item_id, seed, ratios)
        lists[split].append(item_id)
    ratio_of = ratios.as_dict()
    lists = {split: ids for split, ids in lists.items() if ratio_of[split] > 0 or ids or split in existing}

    written: list[Path] = []
    for split, ids in lists.items():
        if split in existing and set(existing[split]) == set(ids):
            continue  # same ids: leave the file alone (published order and line endings kept)
        path = directory / f"{split}.txt"
        write_id_list(path, ids)
        written.append(path)
    return SplitResult(
        index=index,
        directory=directory,
        name=name,
        ratios=ratios,
        seed=seed,
        lists=lists,
        kept={split: kept[split] for split in lists},
        missing=dict(index.missing),
        dropped=dropped,
        written=written,
    )


@dataclass
class MaterializeResult:
    """Counts of files placed by :func:`materialize_split`."""

    destination: Path
    linked: int = 0
    copied: int = 0
    present: int = 0

    def to_dict(self) -> dict[str, object]:
        """Plain JSON data."""
        return {
            "destination": str(self.destination),
            "linked": self.linked,
            "copied": self.copied,
            "present": self.present,
        }


def _place(source: Path, target: Path, result: MaterializeResult) -> None:
    """Hard-link ``source`` to ``target``, copying when linking is impossible; never touch the source."""
    if target.exists():
        if os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False):
            result.present += 1
            return
        raise DatasetError(f"Expected {target} to be absent or identical to {source}, but it differs")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        result.linked += 1
        return
    except OSError:  # another filesystem, or links not supported: fall back to a copy
        pass
    try:
        with atomic_path(target) as temp:
            shutil.copy2(source, temp)
    except OSError as exc:
        raise DatasetError(f"Cannot copy {source} to {target}: {exc.strerror or exc}") from exc
    result.copied += 1


def materialize_split(
    index: DatasetIndex, lists: Mapping[SplitName, Sequence[str]], destination: Path
) -> MaterializeResult:
    """Lay the split out as ``destination/<split>/<folder>/<file>`` by hard link where possible, else copy.

    Source files are never moved or deleted; files already in place (same inode or same bytes) are kept.
    """
    destination = Path(destination)
    result = MaterializeResult(destination=destination)
    for split, ids in lists.items():
        for item_id in ids:
            for folder, source in zip(index.folders, index.files[item_id], strict=True):
                split_folder = destination / split if folder == PLAIN_FOLDER else destination / split / folder
                _place(source, split_folder / source.name, result)
    return result
