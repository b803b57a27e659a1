"""The results of an evaluation: the report, built from merged metric state, and its JSON and CSV forms."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from restorecli.errors import MetricError
from restorecli.metrics.metric import MetricSet
from restorecli.metrics.scoring import PairFailure, PairScore, Scored
from restorecli.metrics.settings import EvalSettings


@dataclass(frozen=True)
class EvalReport:
    """Summary of a run. PSNR averages finite values; ``psnr_inf`` counts identical pairs left out."""

    settings: EvalSettings
    count: int
    summary: dict[str, float]
    convention: dict[str, object]
    class_iou: tuple[float, ...] = ()
    scores: tuple[PairScore, ...] = ()
    missing_gt: tuple[Path, ...] = ()
    missing_pred: tuple[Path, ...] = ()
    failures: tuple[PairFailure, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """Strict-JSON data (inf as the string ``"inf"``, NaN as None); per-image rows if they were kept."""
        result: dict[str, object] = {
            "convention": self.convention,
            "count": self.count,
            "summary": {key: _strict(value) for key, value in self.summary.items()},
        }
        if self.class_iou:
            result["class_iou"] = {str(index): _strict(value) for index, value in enumerate(self.class_iou)}
        result["unmatched"] = {
            "predictions_without_gt": [str(path) for path in self.missing_gt],
            "gt_without_prediction": [str(path) for path in self.missing_pred],
        }
        result["failed"] = [{"pred": str(f.pair.pred), "reason": f.reason} for f in self.failures]
        if self.scores:
            result["images"] = [_image_row(score) for score in self.scores]
        return result


def merged(results: Iterable[Scored | PairFailure], state: MetricSet) -> Iterator[PairScore | PairFailure]:
    """Merge each pair's metric state into ``state`` as it arrives and pass its score on (memory stays flat)."""
    for result in results:
        if isinstance(result, Scored):
            state.merge(result.state)
            yield result.score
        else:
            yield result


def build_report(
    settings: EvalSettings,
    state: MetricSet,
    results: Iterable[PairScore | PairFailure],
    *,
    on_score: Callable[[PairScore], None] | None,
    keep_scores: bool,
) -> EvalReport:
    """The report of ``state`` once ``results`` (in pair order, consumed here) have been merged into it."""
    kept: list[PairScore] = []
    failures: list[PairFailure] = []
    for result in results:
        if isinstance(result, PairFailure):
            failures.append(result)
            continue
        if on_score is not None:
            on_score(result)
        if keep_scores:
            kept.append(result)
    if state.pairs == 0:
        raise MetricError(f"Expected at least one scorable pair, but all {len(failures)} failed: {failures[0].reason}")
    return EvalReport(
        settings=settings,
        count=state.pairs,
        summary=state.compute(),
        convention=settings.convention(state.data_ranges()),
        class_iou=state.class_iou(),
        scores=tuple(kept),
        failures=tuple(failures),
    )


def _image_row(score: PairScore) -> dict[str, object]:
    row: dict[str, object] = {"name": score.pair.name, "pred": str(score.pair.pred), "gt": str(score.pair.gt)}
    row.update((key, _strict(value)) for key, value in score.values.items())
    return row


def _strict(value: float) -> float | str | None:
    """JSON has no inf or NaN: inf -> "inf" (identical images), NaN -> None (undefined, e.g. PD without targets)."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


class CsvRows:
    """Writes one CSV row per score as it arrives; the header comes from the first score."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle)
        self._columns: list[str] | None = None

    def __call__(self, score: PairScore) -> None:
        if self._columns is None:
            self._columns = list(score.values)
            self._writer.writerow(["name", "pred", "gt", *self._columns])
        values = (repr(score.values[column]) for column in self._columns)
        self._writer.writerow([score.pair.name, score.pair.pred, score.pair.gt, *values])
