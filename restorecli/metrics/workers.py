"""Where pairs are scored: in this process, in a process pool, or sharded over the ranks of a torchrun job.

Each place scores pairs into :class:`~restorecli.metrics.scoring.Scored` results whose metric state is
merged (:meth:`~restorecli.metrics.metric.MetricSet.merge`); as every reduction is exact, the numbers do
not depend on where a pair was scored. Per-image scores always reach the caller in pair order, so CSV rows
and per-image tables read the same however the work was split.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import partial

from restorecli.distributed import JobProgress, Session
from restorecli.errors import ConfigError
from restorecli.metrics.metric import MetricSet
from restorecli.metrics.pairing import Pair
from restorecli.metrics.results import merged
from restorecli.metrics.scoring import PairFailure, PairScore, Scored, Transform, score_or_failure
from restorecli.metrics.settings import EvalSettings

logger = logging.getLogger("restorecli.metrics")

# Fresh interpreters, not fork: a forked child inherits the parent's native thread pools (OpenCV, BLAS,
# torch) mid-state; bench_eval.py deadlocked in the children after a scikit-image loop on 1 MP images.
_POOL_CONTEXT = "spawn"


def resolve_workers(workers: int, jobs: int, sharing: int = 1) -> int:
    """0 means one per CPU core (split among ``sharing`` processes on this machine); never more than jobs."""
    if workers < 0:
        raise ConfigError(f"Expected workers >= 0, but got {workers}")
    wanted = workers or (os.cpu_count() or 1) // max(1, sharing)
    return max(1, min(wanted, jobs))


def _init_worker() -> None:
    """One OpenCV thread per process: the pool already occupies the cores."""
    import cv2

    cv2.setNumThreads(1)


def score_locally(
    pairs: Sequence[Pair], settings: EvalSettings, workers: int, transform: Transform | None
) -> Iterator[Scored | PairFailure]:
    """Results in pair order, from this process or from a pool of ``workers``; a ``transform`` stays here.

    A transform may hold a model on a GPU, which a spawned worker would have to load again.
    """
    score = partial(score_or_failure, settings=settings, transform=transform)
    if workers <= 1 or transform is not None:
        yield from map(score, pairs)
        return
    context = multiprocessing.get_context(_POOL_CONTEXT)
    with context.Pool(processes=workers, initializer=_init_worker) as pool:
        yield from pool.imap(score, pairs, chunksize=1)


def tracked(results: Iterable[Scored | PairFailure], bar: JobProgress, label: str) -> Iterator[Scored | PairFailure]:
    """Pass ``results`` through, counting each on the bar and reporting each failure where it happened."""
    for result in results:
        bar.update()
        if isinstance(result, PairFailure):
            logger.warning("%sSkipped %s: %s", label, result.pair.pred, result.reason)
        yield result


def score_sharded(
    pairs: Sequence[Pair],
    settings: EvalSettings,
    session: Session,
    *,
    workers: int,
    transform: Transform | None,
    progress: bool,
) -> tuple[MetricSet, list[PairScore | PairFailure]] | None:
    """Score this rank's share of ``pairs``; on rank 0, every rank's merged state and the scores in pair order.

    A collective step: every rank calls it with the same ``pairs``. Each rank merges its own pairs' state
    into one :class:`MetricSet` and sends that, with its per-image scores, to rank 0. Other ranks get None.
    """
    indices = session.shard(range(len(pairs)))
    bar = partial(session.progress, len(pairs), enabled=progress, unit="pair", desc="eval", leave=False)

    def score_share() -> tuple[MetricSet, list[tuple[int, PairScore | PairFailure]]]:
        state = MetricSet.for_settings(settings)
        with bar() as counted:  # entered first: every rank must reach its end, even after an error
            jobs = resolve_workers(workers, len(indices), sharing=session.context.local_world_size)
            results = score_locally([pairs[index] for index in indices], settings, jobs, transform)
            share = list(zip(indices, merged(tracked(results, counted, session.label), state), strict=True))
        return state, share

    own = session.settle(score_share)
    gathered = session.gather(own)
    if gathered is None:
        return None
    total = MetricSet.for_settings(settings)
    for state, _ in gathered:
        total.merge(state)
    in_order = sorted((item for _, share in gathered for item in share), key=lambda item: item[0])
    return total, [result for _, result in in_order]
