"""Restore image and video files into an output folder: the library side of ``restore derain|deblur|denoise|upscale``.

A small thread pool overlaps decoding the next images and encoding/writing the previous ones with
the model's compute (OpenCV and PyTorch release the GIL), so the device is not idle during I/O.
Videos follow the images, one at a time, frames batched per call (:mod:`restorecli.video`).
Outputs are named by :class:`~restorecli.engine.files.OutputOptions` (by default the input's name) and
written atomically; a file that cannot be read, restored or written is reported on one line and the
rest go on. Under torchrun each process restores its share of
the files (:mod:`restorecli.distributed`) and every process ends with the whole job's report.
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
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from restorecli.distributed import JobProgress, Session, rank_device
from restorecli.engine.files import InputFiles, find_inputs, output_paths
from restorecli.engine.options import OutputOptions, RunOptions
from restorecli.engine.runner import MAX_AUTO_TILE_BATCH, check_options, restore_array, restore_tensor
from restorecli.errors import MissingDependencyError, RestoreError, display_path
from restorecli.icc import read_icc_profile
from restorecli.images import (
    convert_for_format,
    from_tensor,
    read_array,
    remove_abandoned_temporaries,
    to_tensor,
    write_array,
)
from restorecli.video import FrameRestorer, VideoOptions, check_encoder, import_av, is_video, probe, restore_video
from restorecli.zoo.descriptor import ModelDescriptor

logger = logging.getLogger("restorecli.engine")
_T = TypeVar("_T")


@dataclass
class BatchReport:
    """What :func:`restore_files` did.

    Attributes:
        succeeded: files (images and videos) restored and written.
        skipped: files left alone because their output existed (``skip_existing``).
        failures: ``(input file, reason)`` for each file that could not be read, restored or written.
        outputs: the files written, images in input order, then videos (under torchrun: the files this
            rank wrote).
        seconds: wall-clock time of the whole run (under torchrun: of the slowest rank).
        videos: how many of ``succeeded`` are videos.
        frames: video frames restored and written.
    """

    succeeded: int = 0
    skipped: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    videos: int = 0
    frames: int = 0

    @property
    def failed(self) -> int:
        """Number of files that failed."""
        return len(self.failures)

    def fail(self, source: Path, error: RestoreError, label: str = "") -> None:
        """Count ``source`` as failed and say why on one line (``label``: the rank, under torchrun)."""
        logger.warning("%sSkipped %s: %s", label, display_path(source), error)
        self.failures.append((source, str(error)))


def restore_files(
    descriptor: ModelDescriptor,
    inputs: Sequence[Path],
    output_dir: Path,
    options: RunOptions | None = None,
    *,
    naming: OutputOptions | None = None,
    video: VideoOptions | None = None,
    root: Path | None = None,
    skip_existing: bool = False,
    progress: bool = True,
    io_threads: int = 2,
    session: Session | None = None,
) -> BatchReport:
    """Restore each input image and video into ``output_dir``, by default under the same file name.

    Under torchrun (a distributed ``session``) every rank passes the same ``inputs``, restores its share
    (:meth:`~restorecli.distributed.Session.shard`) and returns the whole job's counts and
    failures; the output checks run on the full list, so all ranks accept or refuse the job together.

    Args:
        descriptor: the loaded model.
        inputs: image and video files (by suffix, :func:`~restorecli.video.is_video`), e.g. from
            :func:`~restorecli.engine.files.find_inputs`.
        output_dir: created if missing; must not be the folder of any input.
        options: how each image and frame runs, as in :func:`~restorecli.engine.runner.restore_tensor`.
        naming: output names, image format and JPEG quality (default: each input's name and format).
        video: encoder, quality and frames per call of videos (default: the container's encoder;
            frames per call: as many as the engine batches tiles on the model's device).
        root: a folder holding every input, whose tree is mirrored under ``output_dir`` (default: all
            outputs directly in ``output_dir``).
        skip_existing: leave inputs whose output file exists (resume an interrupted run). Either way the
            temporary files a killed run left beside the outputs go first (:func:`~restorecli.images.remove_abandoned_temporaries`).
        progress: show tqdm bars, one in images and one in video frames (failure and device warnings
            print above them).
        io_threads: threads that read ahead and write behind while the model runs; 0 does all I/O
            in turn with compute.
        session: this process's part in a torchrun job (default: a single process). A collective step:
            every rank must call it.

    Raises:
        DatasetError, ImageWriteError: before any work, see :func:`~restorecli.engine.files.output_paths`.
        ConfigError: invalid tile options, precision or video encoder options, before any work (see
            :func:`~restorecli.engine.runner.check_options`).
    """
    session = session or Session()
    run_options = options or RunOptions()
    naming = naming or OutputOptions()
    video = video or VideoOptions()
    if video.batch is None:
        video = replace(video, batch=MAX_AUTO_TILE_BATCH.get(descriptor.device.type, 1))

    def check() -> list[Path]:
        destinations = output_paths(inputs, output_dir, naming, root=root)
        check_options(descriptor, run_options)
        for suffix in {destination.suffix for destination in destinations if is_video(destination)}:
            check_encoder(video, suffix)
        return destinations

    destinations = session.settle(check)
    if session.is_main:
        for leftover in remove_abandoned_temporaries(destinations):
            logger.info("Removed %s, left by an interrupted run", display_path(leftover))
    pairs = list(zip(inputs, destinations, strict=True))
    images = [(src, dst) for src, dst in pairs if not is_video(src)]
    videos = [(src, dst) for src, dst in pairs if is_video(src)]

    def restore(array: np.ndarray) -> np.ndarray:
        return restore_array(descriptor, array, run_options)

    def write(source: Path, path: Path, array: np.ndarray) -> None:
        pixels = convert_for_format(array, path.suffix)
        write_array(path, pixels, jpeg_quality=naming.jpeg_quality, icc_profile=read_icc_profile(source))

    def restore_share() -> BatchReport:
        started = time.perf_counter()
        report = BatchReport()
        with contextlib.ExitStack() as stack:
            if progress and session.is_main:
                stack.enter_context(logging_redirect_tqdm(loggers=[logger]))
            share = session.shard(images)
            jobs = _unfinished(share, skip_existing, report)
            with session.progress(len(images), enabled=progress and bool(images), unit="img") as bar:
                bar.update(len(share) - len(jobs))
                with contextlib.ExitStack() as threads:
                    pool = ThreadPoolExecutor(io_threads, thread_name_prefix="restorecli-io") if io_threads else None
                    if pool is not None:
                        threads.callback(pool.shutdown, wait=True, cancel_futures=True)
                    _Pipeline(pool, io_threads, restore, write, report, bar, session.label).run(jobs)
            _restore_videos(
                session, videos, _frame_restorer(descriptor, run_options), video, report, skip_existing, progress
            )
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
        videos=sum(report.videos for report in reports),
        frames=sum(report.frames for report in reports),
    )


def _unfinished(jobs: list[tuple[Path, Path]], skip_existing: bool, report: BatchReport) -> list[tuple[Path, Path]]:
    """The jobs still to do; those whose output exists are counted as skipped when ``skip_existing``."""
    left = [(src, dst) for src, dst in jobs if not (skip_existing and dst.exists())]
    report.skipped += len(jobs) - len(left)
    return left


def _frame_restorer(descriptor: ModelDescriptor, options: RunOptions) -> FrameRestorer:
    """Video frames through the engine: a batch of RGB frames in one call where :func:`restore_array` would
    treat each frame alike (a 3-channel model, no grey frame), else frame by frame through it."""

    def restore_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        alone = len(frames) == 1 or descriptor.in_channels != 3
        if alone or any(bool((frame[..., 1:] == frame[..., :1]).all()) for frame in frames):
            return [restore_array(descriptor, frame, options) for frame in frames]
        restored = restore_tensor(descriptor, torch.cat([to_tensor(frame) for frame in frames]), options)
        return [from_tensor(output, np.dtype(np.uint8)) for output in restored]

    return restore_frames


def _restore_videos(
    session: Session,
    videos: list[tuple[Path, Path]],
    restore_frames: FrameRestorer,
    options: VideoOptions,
    report: BatchReport,
    skip_existing: bool,
    progress: bool,
) -> None:
    """Restore this rank's share of ``videos`` one after another, under one bar counting frames.

    Without PyAV every video fails with one line naming the extra to install; the images are done by
    then. (PyAV is missing on every rank alike, so no rank is left waiting in the bar's collective step.)
    """
    if not videos:
        return
    share = session.shard(videos)
    try:
        import_av()
    except MissingDependencyError as exc:
        if share:
            names = ", ".join(display_path(src.name) for src, _ in share)
            logger.warning("%sSkipped %d video(s) (%s): %s", session.label, len(share), names, exc)
        report.failures.extend((src, str(exc)) for src, _ in share)
        return
    frames = {src: _frame_count(src) for src, _ in videos}
    total = sum(frames.values()) if all(frames.values()) else None
    with session.progress(total, enabled=progress, unit="frame") as bar:
        jobs = _unfinished(share, skip_existing, report)
        bar.update(sum(frames[src] for src, _ in share) - sum(frames[src] for src, _ in jobs))
        for src, dst in jobs:
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                bar.update(count)

            try:
                count = restore_video(src, dst, restore_frames, options, advance)
            except RestoreError as exc:
                report.fail(src, exc, session.label)
                bar.update(max(frames[src] - done, 0))
                continue
            report.succeeded += 1
            report.videos += 1
            report.frames += count
            report.outputs.append(dst)


def _frame_count(path: Path) -> int:
    """Frames the header announces (0: unknown, or unreadable: restoring it will say why)."""
    try:
        return probe(path).frames
    except RestoreError:
        return 0


@dataclass(frozen=True)
class JobReport:
    """What :func:`restore_job` did; the same on every rank.

    Attributes:
        model: the model's name.
        devices: each rank's device, in rank order (one entry in a single process).
        total: input images and videos in the whole job.
        batch: counts and failures of the whole job (``outputs``: the files this rank wrote).
        inputs: what the input held, including the files and sub-folders that were not restored.
    """

    model: str
    devices: tuple[str, ...]
    total: int
    batch: BatchReport
    inputs: InputFiles


def restore_job(
    load: Callable[[str], ModelDescriptor],
    input_path: Path,
    output_dir: Path,
    options: RunOptions | None = None,
    *,
    device: str = "auto",
    session: Session | None = None,
    recursive: bool = False,
    **batch: Any,
) -> JobReport:
    """List ``input_path``, load the model and :func:`restore_files` into ``output_dir``, on one rank or many.

    Under torchrun each rank loads the model onto its own device (``cuda:LOCAL_RANK`` for ``auto``),
    rank 0 first so a download happens once, and restores its share of the naturally sorted list. An
    error on any rank (a missing folder, an unknown model) is raised on every rank.

    Args:
        load: turns a device string into the loaded model (e.g. a call of ``restorecli.load_model``).
        input_path: an image or video file, or a folder of them (see :func:`~restorecli.engine.files.find_inputs`).
        output_dir: as in :func:`restore_files`; never searched for inputs, also when it lies inside
            ``input_path``.
        device: the device request, mapped per rank by :func:`~restorecli.distributed.rank_device`.
        session: this process's part in a torchrun job (default: a single process).
        options: how each image runs (see :func:`~restorecli.engine.runner.restore_tensor`).
        recursive: restore the files of sub-folders too, mirroring the tree under ``output_dir``.
        batch: keyword options of :func:`restore_files` (naming, video, skip_existing, progress, io_threads).
    """
    session = session or Session()
    # Listed once and shared: ranks listing the folder themselves could see different files (a file
    # arriving, a shared file system's cache) and restore some twice and others never.
    found = session.from_main(lambda: find_inputs(input_path, recursive=recursive, exclude=output_dir))
    inputs = found.restorable
    descriptor = session.settle(lambda: session.in_stages(lambda: load(rank_device(device, session.context))))
    report = restore_files(descriptor, inputs, output_dir, options, root=found.root, session=session, **batch)
    devices = tuple(session.all_gather(str(descriptor.device)))
    return JobReport(model=descriptor.name, devices=devices, total=len(inputs), batch=report, inputs=found)


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
        write: Callable[[Path, Path, np.ndarray], None],
        report: BatchReport,
        bar: JobProgress,
        label: str,
    ) -> None:
        self.pool = pool
        self.depth = depth
        self.restore = restore
        self.write = write
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
                self.writes.append((src, dst, self._submit(self.write, src, dst, restored)))
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
            self.report.fail(src, exc, self.label)
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
