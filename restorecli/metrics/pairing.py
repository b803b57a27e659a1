"""Pairing predictions with ground truth by file stem, with nothing dropped silently.

Predictions and ground truth often differ in extension (``.png`` results against ``.jpg`` or ``.bmp``
targets) and sometimes in name (NUAA-SIRST masks are ``<id>_pixels0.png``), so pairs are matched on
the stem, mapped through a pattern; files left without a partner are reported, never skipped quietly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from restorecli.errors import ConfigError, MetricError
from restorecli.images import list_images

_LISTED_NAMES = 10


@dataclass(frozen=True)
class Pair:
    """One prediction and its ground truth; ``name`` is the prediction's file stem."""

    name: str
    pred: Path
    gt: Path


@dataclass(frozen=True)
class Pairing:
    """Matched pairs plus the files on either side that found no partner."""

    pairs: tuple[Pair, ...]
    missing_gt: tuple[Path, ...] = ()
    missing_pred: tuple[Path, ...] = ()

    def require_complete(self) -> None:
        """Raise MetricError listing the unmatched files, if any (the default: never evaluate a subset)."""
        problems = describe_unmatched(self.missing_gt, self.missing_pred)
        if problems:
            raise MetricError(f"Expected every file to have a partner, but found {'; '.join(problems)}")


def describe_unmatched(missing_gt: Sequence[Path], missing_pred: Sequence[Path]) -> list[str]:
    """One line per side with leftovers, e.g. ``2 predictions without ground truth: a.png, b.png``."""
    sides = ((missing_gt, "predictions without ground truth"), (missing_pred, "ground-truth images without prediction"))
    return [f"{len(files)} {problem}: {_name_list(files)}" for files, problem in sides if files]


def _name_list(files: Sequence[Path]) -> str:
    shown = ", ".join(path.name for path in files[:_LISTED_NAMES])
    return shown if len(files) <= _LISTED_NAMES else f"{shown} and {len(files) - _LISTED_NAMES} more"


def _by_stem(files: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        if path.stem in index:
            raise MetricError(
                f"Expected one image per name, but got {index[path.stem].name} and {path.name} ({path.parent})"
            )
        index[path.stem] = path
    return index


def gt_stem(stem: str, gt_pattern: str) -> str:
    """The ground-truth stem for a prediction stem, e.g. ``'{stem}_pixels0'`` for NUAA-SIRST masks."""
    if "{stem}" not in gt_pattern:
        raise ConfigError(f"Expected a GT pattern containing {{stem}}, but got {gt_pattern!r}")
    try:
        return gt_pattern.format(stem=stem)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"Expected a GT pattern using only {{stem}}, but got {gt_pattern!r}") from exc


def match_pairs(pred: Path, gt: Path, *, gt_pattern: str = "{stem}") -> Pairing:
    """Pair prediction and ground-truth files by stem (extensions may differ).

    Two files form one pair whatever their names. A prediction file or folder against a GT folder is
    matched by ``gt_pattern.format(stem=prediction_stem)``; files left over on either side are reported
    in the Pairing, not silently dropped.
    """
    pred, gt = Path(pred), Path(gt)
    pred_files = list_images(pred)
    if pred.is_dir() and not pred_files:
        raise MetricError(f"Expected images in the prediction folder, but found none ({pred})")
    if gt.is_file():
        if pred.is_dir():
            raise MetricError(f"Expected a ground-truth folder for a folder of predictions, but got a file ({gt})")
        return Pairing(pairs=(Pair(pred.stem, pred, gt),))
    gt_index = _by_stem(list_images(gt))
    pairs: list[Pair] = []
    missing_gt: list[Path] = []
    for path in _by_stem(pred_files).values():
        partner = gt_index.pop(gt_stem(path.stem, gt_pattern), None)
        if partner is None:
            missing_gt.append(path)
        else:
            pairs.append(Pair(path.stem, path, partner))
    missing_pred = tuple(gt_index.values()) if pred.is_dir() else ()
    return Pairing(pairs=tuple(pairs), missing_gt=tuple(missing_gt), missing_pred=missing_pred)
