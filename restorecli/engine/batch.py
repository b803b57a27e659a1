"""Restore a list of image files into an output folder: the library side of ``restore derain|deblur|denoise``.

A small thread pool overlaps decoding the next images and encoding/writing the previous ones with
the model's compute (OpenCV and PyTorch release the GIL), so the device is not idle during I/O.
Outputs keep their file names and are written atomically; a file that cannot be read, restored or
written is reported on one line and the rest go on. Under torchrun each process restores its share of
the files (:mod:`restorecli.engine.distributed`) and every process ends with the whole job's report.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.contrib.logging import logging_redirect_tqdm

from restorecli.engine.distributed import JobProgress, Session, rank_device
from restorecli.engine.runner import DEFAULT_TILE_OVERLAP, check_options, restore_array
from restorecli.errors import DatasetError, ImageWriteError, RestoreError
from restorecli.images import list_images, read_array, write_array
from restorecli.zoo.descriptor import ModelDescriptor

logger = logging.getLogger("restorecli.engine")
_T = TypeVar("_T")


@dataclass
class BatchReport:
    """What :func:`restore_files` did.

    Attributes:
        succeeded: images restored and written.
        skipped: images left alone because their output existed (``skip_existing``).
        failures: ``(input file, reason)`` for each image that could not be read, restored or written.
        outputs: the files written, in input order (under torchrun: the files this rank wrote).
        seconds: wall-clock time of the whole run (under torchrun: of the slowest rank).
    """

    succeeded: int = 0
    skipped: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Number of images that failed."""
        return len(self.failures)


def output_paths(inputs: Sequence[Path], output_dir: Path) -> list[Path]:
    """Where each input's result goes (same file name in ``output_dir``), after checking it is safe.

    Raises:
        DatasetError: there are no inputs.
        ImageWriteError: ``output_dir`` is a file, is the folder of an input (outputs would overwrite
            or mix with inputs), or two inputs share a file name.
    """
    if not inputs:
        raise DatasetError("Expected at least one input image, but got none")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ImageWriteError(f"Expected an output folder, but got a file ({output_dir})")
    target = output_dir.resolve()
    seen: dict[str, Path] = {}
    for path in map(Path, inputs):
        # The input's folder, and the folder of the file it links to: neither may receive outputs.
        if target in (path.absolute().parent.resolve(), path.resolve().parent):
            raise ImageWriteError(
                f"Expected an output folder other than the input folder, but got {output_dir} (holds {path.name})"
            )
        if path.name in seen:
            raise ImageWriteError(
                f"Expected distinct input file names, but {seen[path.name]} and {path} would both write {path.name}"
            )
        seen[path.name] = path
    return [output_dir / path.name for path in inputs]


def restore_files(
    descriptor: ModelDescriptor,
    inputs: Sequence[Path],
    output_dir: Path,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: str = "fp32",
    tile_batch: int | None = None,
    channels_last: bool | None = None,
    fallback: bool = True,
    skip_existing: bool = False,
    progress: bool = True,
    io_threads: int = 2,
    session: Session | None = None,
) -> BatchReport:
    """Restore each input image into ``output_dir`` under the same file name.

    Under torchrun (a distributed ``session``) every rank passes the same ``inputs``, restores its share
    (:meth:`~restorecli.engine.distributed.Session.shard`) and returns the whole job's counts and
    failures; the output checks run on the full list, so all ranks accept or refuse the job together.

    Args:
        descriptor: the loaded model.
        inputs: image files (e.g. from :func:`restorecli.images.list_images`).
        output_dir: created if missing; must not be the folder of any input.
        tile, tile_overlap, precision, tile_batch, channels_last, fallback: as in
            :func:`~restorecli.engine.runner.restore_tensor`.
        skip_existing: leave inputs whose output file exists (resume an interrupted run).
        progress: show a tqdm bar (failure and device warnings print above it).
        io_threads: threads that read ahead and write behind while the model runs; 0 does all I/O
            in turn with compute.
        session: this process's part in a torchrun job (default: a single process). A collective step:
            every rank must call it.

    Raises:
        DatasetError, ImageWriteError: before any work, see :func:`output_paths`.
        ConfigError: invalid tile options or precision, before any work (see
            :func:`~restorecli.engine.runner.check_options`).
    """
    session = session or Session()

    def check() -> list[Path]:
        destinations = output_paths(inputs, output_dir)
        check_options(descriptor, tile=tile, tile_overlap=tile_overlap, precision=precision, tile_batch=tile_batch)
        return destinations

    destinations = session.settle(check)

    def restore(array: np.ndarray) -> np.ndarray:
        return restore_array(
            descriptor,
            array,
            tile=tile,
            tile_overlap=tile_overlap,
            precision=precision,
            tile_batch=tile_batch,
            channels_last=channels_last,
            fallback=fallback,
        )

    def restore_share() -> BatchReport:
        started = time.perf_counter()
        report = BatchReport()
        share = session.shard(list(zip(inputs, destinations, strict=True)))
        jobs = [(src, dst) for src, dst in share if not (skip_existing and dst.exists())]
        report.skipped = len(share) - len(jobs)
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(session.progress(len(inputs), enabled=progress, unit="img"))
            bar.update(report.skipped)
            if progress and session.is_main:
                stack.enter_context(logging_redirect_tqdm(loggers=[logger]))
            pool = ThreadPoolExecutor(io_threads, thread_name_prefix="restorecli-io") if io_threads > 0 else None
            if pool is not None:
                stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            _Pipeline(pool, io_threads, restore, report, bar, session.label).run(jobs)
        report.seconds = time.perf_counter() - started
        return report

    own = session.settle(restore_share)
    if not session.distributed:
        return own
    return _whole_job(session.all_gather(replace(own, outputs=[])), own.outputs, inputs)


def _whole_job(reports: list[BatchReport], outputs: list[Path], inputs: Sequence[Path]) -> BatchReport:
    """Every rank's counts added up, failures in input order; ``outputs`` stay this rank's."""
    position = {path: index for index, path in enumerate(inputs)}
    return BatchReport(
        succeeded=sum(report.succeeded for report in reports),
        skipped=sum(report.skipped for report in reports),
        failures=sorted((failure for report in reports for failure in report.failures), key=lambda f: position[f[0]]),
        outputs=outputs,
        seconds=max(report.seconds for report in reports),
    )


@dataclass(frozen=True)
class JobReport:
    """What :func:`restore_job` did; the same on every rank.

    Attributes:
        model: the model's name.
        devices: each rank's device, in rank order (one entry in a single process).
        total: input images in the whole job.
        batch: counts and failures of the whole job (``outputs``: the files this rank wrote).
    """

    model: str
    devices: tuple[str, ...]
    total: int
    batch: BatchReport


def restore_job(
    load: Callable[[str], ModelDescriptor],
    input_path: Path,
    output_dir: Path,
    *,
    device: str = "auto",
    session: Session | None = None,
    **options: Any,
) -> JobReport:
    """List ``input_path``, load the model and :func:`restore_files` into ``output_dir``, on one rank or many.

    Under torchrun each rank loads the model onto its own device (``cuda:LOCAL_RANK`` for ``auto``),
    rank 0 first so a download happens once, and restores its share of the naturally sorted list. An
    error on any rank (a missing folder, an unknown model) is raised on every rank.

    Args:
        load: turns a device string into the loaded model (e.g. a call of ``restorecli.load_model``).
        input_path: an image file or a folder of images.
        output_dir: as in :func:`restore_files`.
        device: the device request, mapped per rank by :func:`~restorecli.engine.distributed.rank_device`.
        session: this process's part in a torchrun job (default: a single process).
        options: keyword options of :func:`restore_files` (tile, precision, skip_existing, progress...).
    """
    session = session or Session()
    inputs = session.settle(lambda: list_images(input_path))
    descriptor = session.settle(lambda: session.in_stages(lambda: load(rank_device(device, session.context))))
    batch = restore_files(descriptor, inputs, output_dir, session=session, **options)
    devices = tuple(session.all_gather(str(descriptor.device)))
    return JobReport(model=descriptor.name, devices=devices, total=len(inputs), batch=batch)


class _Pipeline:
    """Read ahead, restore in this thread, write behind; count each file's outcome.

    Every step is a Future: submitted to the pool, or run at once when there is no pool, so both
    modes share one code path. At most ``depth`` reads ahead and ``depth`` writes behind are pending.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor | None,
        depth: int,
        restore: Callable[[np.ndarray], np.ndarray],
        report: BatchReport,
        bar: JobProgress,
        label: str,
    ) -> None:
        self.pool = pool
        self.depth = depth
        self.restore = restore
        self.report = report
        self.bar = bar
        self.label = label
        self.writes: deque[tuple[Path, Path, Future[None]]] = deque()

    def run(self, jobs: list[tuple[Path, Path]]) -> None:
        reads: deque[Future[np.ndarray]] = deque()
        for position, (src, dst) in enumerate(jobs):
            while len(reads) <= self.depth and position + len(reads) < len(jobs):
                reads.append(self._submit(read_array, jobs[position + len(reads)][0]))
            ok, array = self._outcome(src, reads.popleft())
            if ok:
                ok, restored = self._outcome(src, _run_now(self.restore, array))
            if ok:
                self.writes.append((src, dst, self._submit(write_array, dst, restored)))
            self._finish_writes(keep=self.depth)
        self._finish_writes(keep=0)

    def _submit(self, function: Callable[..., _T], *args: object) -> Future[_T]:
        return _run_now(function, *args) if self.pool is None else self.pool.submit(function, *args)

    def _finish_writes(self, keep: int) -> None:
        """Collect finished writes, waiting for the oldest while more than ``keep`` are pending."""
        while len(self.writes) > keep or (self.writes and self.writes[0][2].done()):
            src, dst, future = self.writes.popleft()
            if self._outcome(src, future)[0]:
                self.report.succeeded += 1
                self.report.outputs.append(dst)
                self.bar.update(1)

    def _outcome(self, src: Path, future: Future[_T]) -> tuple[bool, _T | None]:
        """``(True, result)``, or ``(False, None)`` after reporting a RestoreError on one line."""
        try:
            return True, future.result()
        except RestoreError as exc:
            logger.warning("%sSkipped %s: %s", self.label, src, exc)
            self.report.failures.append((src, str(exc)))
            self.bar.update(1)
            return False, None


def _run_now(function: Callable[..., _T], *args: object) -> Future[_T]:
    """Call ``function`` now and wrap its result or exception in a finished Future."""
    future: Future[_T] = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:  # noqa: BLE001 - re-raised by future.result(), as a pool would
        future.set_exception(exc)
    return future
