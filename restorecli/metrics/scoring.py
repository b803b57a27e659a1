"""Scoring one pair: read both files, transform the input if asked, update a fresh set of metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restorecli.errors import MetricError, RestoreError
from restorecli.images import read_array
from restorecli.metrics.metric import MetricSet, Sample
from restorecli.metrics.pairing import Pair
from restorecli.metrics.settings import EvalSettings

Transform = Callable[[Path, np.ndarray], np.ndarray]
"""Turns the pixels read from a pair's ``pred`` path into the prediction before scoring (e.g. restores
them, see ``restore eval --model``); the metrics never need to know how."""


@dataclass(frozen=True)
class PairScore:
    """One pair's per-image values by metric name (NaN where undefined, inf for identical images)."""

    pair: Pair
    values: dict[str, float]


@dataclass(frozen=True)
class PairFailure:
    """A pair that could not be read or scored; the run goes on without it."""

    pair: Pair
    reason: str


@dataclass(frozen=True)
class Scored:
    """What scoring one pair sends back to be merged: its values and its metrics' state."""

    score: PairScore
    state: MetricSet


def score_arrays(pred: np.ndarray, target: np.ndarray, settings: EvalSettings) -> tuple[dict[str, float], MetricSet]:
    """Score one prediction against its ground truth (arrays as :func:`read_array` returns them).

    Returns the per-image values and the metrics' state after this one pair, ready to merge.
    """
    state = MetricSet.for_settings(settings)
    return state.update(Sample(pred, target, settings)), state


def score_pair(pair: Pair, settings: EvalSettings, transform: Transform | None = None) -> Scored:
    """Read, optionally transform, and score one pair; errors name both files."""
    pred = read_array(pair.pred)
    if transform is not None:
        pred = transform(pair.pred, pred)
    target = read_array(pair.gt)
    try:
        values, state = score_arrays(pred, target, settings)
    except MetricError as exc:
        raise MetricError(f"{exc} ({pair.pred} vs {pair.gt})") from exc
    return Scored(PairScore(pair, values), state)


def score_or_failure(pair: Pair, settings: EvalSettings, transform: Transform | None) -> Scored | PairFailure:
    """:func:`score_pair`, with a RestoreError turned into a PairFailure (the run goes on)."""
    try:
        return score_pair(pair, settings, transform)
    except RestoreError as exc:
        return PairFailure(pair, str(exc))
