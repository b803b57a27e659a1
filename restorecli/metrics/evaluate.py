"""Folder-level evaluation: pair the files, score them where the run says, and report.

Memory stays flat in the number of images: pairs are scored one by one (or by a process pool, in
order), each score is streamed to a callback or a CSV file and merged into the metrics' running state;
the per-image scores are kept only when asked for. Under torchrun each rank scores its share and rank 0
merges every rank's state (:mod:`restorecli.metrics.workers`); the reductions are exact, so every number
equals a single-process run's, bit for bit.

The modules beside this one each hold one part: :mod:`~restorecli.metrics.settings` (what to compute,
validated), :mod:`~restorecli.metrics.protocols` (the papers' presets), :mod:`~restorecli.metrics.metric`
(the metrics), :mod:`~restorecli.metrics.scoring` (one pair), :mod:`~restorecli.metrics.workers` (pool
and torchrun) and :mod:`~restorecli.metrics.results` (report, JSON, CSV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from restorecli.distributed import Session
from restorecli.errors import MetricError
from restorecli.images import atomic_path
from restorecli.metrics.metric import MetricSet
from restorecli.metrics.pairing import Pair, Pairing, match_pairs
from restorecli.metrics.results import CsvRows, EvalReport, build_report, merged
from restorecli.metrics.scoring import PairScore, Transform
from restorecli.metrics.settings import EvalSettings, default_metrics
from restorecli.metrics.workers import resolve_workers, score_locally, score_sharded, tracked


def evaluate_pairs(
    pairs: Sequence[Pair],
    settings: EvalSettings,
    *,
    workers: int = 1,
    transform: Transform | None = None,
    progress: bool = False,
    on_score: Callable[[PairScore], None] | None = None,
    keep_scores: bool = False,
    session: Session | None = None,
) -> EvalReport:
    """Score every pair and aggregate by the reference protocols.

    Args:
        pairs: from :func:`match_pairs`.
        settings: metrics and conventions.
        workers: processes (0 = one per core); a ``transform`` always runs in this process.
        transform: applied to each input before scoring (e.g. on-the-fly restoration, built by the caller).
        progress: show a tqdm bar on stderr.
        on_score: called with each pair's score, in pair order (streaming CSV rows).
        keep_scores: also return every per-image score (memory grows with the set).
        session: this process's part in a torchrun job (default: a single process). A collective step:
            every rank passes the same ``pairs``, scores its share (``workers`` processes each) and
            returns the same report; ``on_score`` runs on rank 0 only, once every rank is done.
    """
    session = session or Session()
    if not pairs:
        raise MetricError("Expected at least one prediction/ground-truth pair, but got none")
    if settings.metrics is None:
        chosen = session.settle(
            lambda: default_metrics(pairs, num_classes=settings.num_classes, ignore_index=settings.ignore_index)
        )
        settings = replace(settings, metrics=chosen)
    report = partial(build_report, settings, on_score=on_score, keep_scores=keep_scores)
    if not session.distributed:  # stream: memory stays flat in the number of pairs
        state = MetricSet.for_settings(settings)
        jobs = resolve_workers(workers, len(pairs))
        with session.progress(len(pairs), enabled=progress, unit="pair", desc="eval", leave=False) as bar:
            results = tracked(score_locally(pairs, settings, jobs, transform), bar, "")
            return report(state, merged(results, state))
    gathered = score_sharded(pairs, settings, session, workers=workers, transform=transform, progress=progress)

    def aggregate() -> EvalReport:
        state, results = gathered  # type: ignore[misc]  # rank 0 holds the gathered results
        return report(state, results)

    return session.from_main(aggregate)


def evaluate_paths(
    pred: Path,
    gt: Path,
    settings: EvalSettings,
    *,
    gt_pattern: str = "{stem}",
    allow_missing: bool = False,
    csv_path: Path | None = None,
    workers: int = 1,
    transform: Transform | None = None,
    progress: bool = False,
    keep_scores: bool = False,
    session: Session | None = None,
) -> EvalReport:
    """Pair files or folders (:func:`match_pairs`) and :func:`evaluate_pairs` them.

    Unmatched files fail the run unless ``allow_missing``; then they are listed in the report.
    ``csv_path`` receives one row per pair, streamed as scores arrive and renamed into place at the end
    (under torchrun: written by rank 0 once the scores are gathered).
    ``pred`` holds the inputs a ``transform`` turns into predictions, when one is given.
    """
    session = session or Session()

    def pair() -> Pairing:
        pairing = match_pairs(pred, gt, gt_pattern=gt_pattern)
        if not allow_missing:
            pairing.require_complete()
        return pairing

    pairing = session.from_main(pair)  # matched once and shared, as restore_job lists its inputs
    run = partial(
        evaluate_pairs,
        pairing.pairs,
        settings,
        workers=workers,
        transform=transform,
        progress=progress,
        keep_scores=keep_scores,
        session=session,
    )
    if csv_path is None or not session.is_main:
        report = run()
    else:
        with atomic_path(csv_path) as temp, temp.open("w", newline="") as handle:
            report = run(on_score=CsvRows(handle))
    return replace(report, missing_gt=pairing.missing_gt, missing_pred=pairing.missing_pred)


def check_save_dir(save_dir: Path, *protected: Path) -> None:
    """Refuse a ``--save`` folder that is (or holds) the inputs or the ground truth: never overwrite them."""
    target = Path(save_dir).resolve()
    for path in protected:
        folder = Path(path).resolve()
        folder = folder if folder.is_dir() else folder.parent
        if target == folder:
            raise MetricError(f"Expected a --save folder other than {path}, but got {save_dir} (it would overwrite it)")
