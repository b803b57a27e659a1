"""Sharded runs under ``torchrun``: each process takes a disjoint share of the files, one summary at the end.

torchrun (PyTorch's launcher) starts one process per GPU or CPU slot, on one machine or many, and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`detect` reads them,
:func:`session` joins the process group and yields a :class:`Session` holding every collective step the
commands need. Without torchrun the Session is one process and each step is a plain local call, so one
code path serves both, and a single-process run starts no process group.

One rule keeps ranks from waiting on each other forever: every rank takes the same Session steps in the
same order. A :class:`~restorecli.errors.RestoreError` (a missing model, a bad option) is therefore held
back until the step's collective has run and then raised on every rank (:meth:`Session.settle`); any other
exception is a bug, ends its process with a traceback, and torchrun stops the others.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from tqdm import tqdm

from restorecli.errors import ConfigError, DeviceError, RestoreError

if TYPE_CHECKING:
    import torch.distributed as dist

# torch (and torch.distributed) is imported where a collective or a device query runs: a single
# process, such as a plain `restore eval` scoring files, never pays the few CPU-seconds it costs.

logger = logging.getLogger("restorecli")
T = TypeVar("T")

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""Longest wait in one collective step; waiting for slower ranks' work polls the store instead, without limit."""
_POLL_SECONDS = 0.2
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job; the defaults describe a single process.

    Attributes:
        rank: this process's index in the whole job, ``0 <= rank < world_size``.
        world_size: processes in the job, across every machine.
        local_rank: this process's index on its machine (selects its GPU).
        local_world_size: processes on this machine (they share its CPU cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    def __post_init__(self) -> None:
        """Reject a rank outside the job (a mistyped environment), before joining anything."""
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"Expected 0 <= RANK < WORLD_SIZE, but got RANK={self.rank} WORLD_SIZE={self.world_size}")
        if self.local_rank < 0 or self.local_world_size < 1:
            raise ConfigError(
                f"Expected LOCAL_RANK >= 0 and LOCAL_WORLD_SIZE >= 1, but got LOCAL_RANK={self.local_rank} "
                f"LOCAL_WORLD_SIZE={self.local_world_size}"
            )

    @property
    def distributed(self) -> bool:
        """True when more than one process shares the work."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which draws the progress bar and prints the summary."""
        return self.rank == 0


def detect(environ: Mapping[str, str] | None = None) -> DistContext:
    """The context torchrun describes in ``environ`` (default: this process's), or a single process.

    Raises:
        ConfigError: ``RANK`` and ``WORLD_SIZE`` are set but a value is not an integer or out of range.
    """
    environ = os.environ if environ is None else environ
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return DistContext()
    texts = {name: environ.get(name, "1" if name == "LOCAL_WORLD_SIZE" else "0") for name in _ENVIRONMENT}
    try:
        values = {name: int(text) for name, text in texts.items()}
    except ValueError:
        shown = " ".join(f"{name}={text}" for name, text in texts.items())
        raise ConfigError(f"Expected integers in torchrun's environment, but got {shown}") from None
    return DistContext(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: every ``world_size``-th item, starting at index ``rank``.

    Round-robin rather than contiguous blocks: shares differ by at most one item, and a run of large
    images that sorts together (one scene, one camera) is spread over every rank. The shares of all
    ranks are disjoint and cover ``items``; they depend only on the order of ``items``, so a relaunch
    over the same naturally sorted folder gives each rank the same files.

    Raises:
        ConfigError: ``rank`` is outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"Expected 0 <= rank < world_size, but got rank {rank} of {world_size}")
    return list(items[rank::world_size])


def rank_device(request: str, context: DistContext) -> str:
    """The device this rank uses: ``cuda:LOCAL_RANK`` for ``auto`` or ``cuda`` when CUDA is available.

    One GPU per process is torchrun's convention. Any other request (``cpu``, ``mps``, ``cuda:N``,
    ``auto`` without CUDA) is kept as given, and a single process keeps its request unchanged.
    """
    if context.distributed and request.strip().lower() in ("auto", "cuda") and _cuda_available():
        return f"cuda:{context.local_rank}"
    return request


def _cuda_available() -> bool:
    """torch's own query: this module sits below the engine (which imports it), so it asks torch directly."""
    import torch

    return torch.cuda.is_available()


class JobProgress:
    """One tqdm bar for the whole job, drawn by rank 0 however many processes do the work.

    Every rank adds the items it settles to a counter in the process group's key-value store (the c10d
    store of torchrun's rendezvous); rank 0 redraws from that counter. :meth:`wait_for_ranks` marks this
    rank done and polls the store until every rank is: rank 0's bar keeps moving while the last ranks
    finish, and the collective that follows never waits long enough to time out. In a single process
    this is a plain tqdm bar. Made by :meth:`Session.progress`.
    """

    def __init__(
        self, session: Session, total: int | None, *, enabled: bool, unit: str, desc: str | None, leave: bool
    ) -> None:
        self._store = session.store
        self._world_size = session.context.world_size
        self._key = f"progress/{session.next_step()}"
        draw = enabled and session.context.is_main
        self._bar = tqdm(total=total, unit=unit, desc=desc, leave=leave, disable=not draw)

    def update(self, count: int = 1) -> None:
        """Count ``count`` more items as settled (done, skipped or failed) on this rank."""
        if self._store is None:
            self._bar.update(count)
        else:
            self._show(self._store.add(f"{self._key}/settled", count))

    def _show(self, settled: int) -> None:
        if settled > self._bar.n:
            self._bar.update(settled - self._bar.n)

    def wait_for_ranks(self) -> None:
        """Mark this rank done, then wait (drawing, on rank 0) until every rank is; no-op in one process."""
        if self._store is None:
            return
        done = self._store.add(f"{self._key}/done", 1)
        while done < self._world_size:
            time.sleep(_POLL_SECONDS)
            self._show(self._store.add(f"{self._key}/settled", 0))
            done = self._store.add(f"{self._key}/done", 0)
        self._show(self._store.add(f"{self._key}/settled", 0))

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


class Session:
    """This process's part in a job: its share of the work and the collective steps, in one order on every rank.

    Build it with :func:`session`; ``Session()`` is a single process.
    """

    def __init__(self, context: DistContext | None = None, store: dist.Store | None = None) -> None:
        self.context = context or DistContext()
        self.store = store
        self._steps = itertools.count()

    @property
    def distributed(self) -> bool:
        """True when other ranks take part."""
        return self.context.distributed

    @property
    def is_main(self) -> bool:
        """True on rank 0 (and in a single process)."""
        return self.context.is_main

    @property
    def label(self) -> str:
        """``"rank N: "`` to prefix this rank's warnings under torchrun; empty in a single process."""
        return f"rank {self.context.rank}: " if self.distributed else ""

    def next_step(self) -> int:
        """A number that is the same on every rank for the same step (keys in the store)."""
        return next(self._steps)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items`` (:func:`shard`); all of them in a single process."""
        return shard(items, self.context.rank, self.context.world_size)

    @contextlib.contextmanager
    def progress(
        self, total: int | None, *, enabled: bool = True, unit: str = "it", desc: str | None = None, leave: bool = True
    ) -> Iterator[JobProgress]:
        """A :class:`JobProgress` bar for ``total`` items of the whole job; every rank must enter it.

        Leaving the block waits for every rank, also after a RestoreError (the settle step that follows
        raises it on every rank); any other exception ends the run without waiting.
        """
        bar = JobProgress(self, total, enabled=enabled, unit=unit, desc=desc, leave=leave)
        with contextlib.closing(bar):
            try:
                yield bar
            except RestoreError:
                bar.wait_for_ranks()
                raise
            bar.wait_for_ranks()

    def settle(self, part: Callable[[], T]) -> T:
        """Run ``part`` here; if it raised a RestoreError on any rank, raise one on every rank.

        The error is raised once every rank has finished its ``part``, so none is left waiting in a later
        step. The same error on every rank is raised as it is (a missing model reads as it would in one
        process); otherwise one error names the ranks. A single process just calls ``part``.
        """
        if not self.distributed:
            return part()
        value: T | None = None
        error: tuple[type[RestoreError], str] | None = None
        try:
            value = part()
        except RestoreError as exc:
            error = (type(exc), str(exc))
        failures = [(rank, raised) for rank, raised in enumerate(self.all_gather(error)) if raised is not None]
        if failures:
            raise _combined(failures, self.context.world_size)
        return value  # type: ignore[return-value]  # part returned on every rank

    def in_stages(self, function: Callable[[], T]) -> T:
        """Run ``function`` on rank 0, then on the first process of each other machine, then on the rest.

        Loading a zoo model may download its weights into a cache that the processes of one machine (or
        of all machines, on a shared file system) have in common, and two downloads of one file would
        write the same partial file. In stages the file is fetched once and the others find it complete.
        A RestoreError is raised after the stages, so every rank takes part in both barriers.
        """
        if not self.distributed:
            return function()
        import torch.distributed as dist

        stage = 0 if self.context.is_main else 1 if self.context.local_rank == 0 else 2
        result: T | None = None
        error: RestoreError | None = None
        for step in range(3):
            if step == stage:
                try:
                    result = function()
                except RestoreError as exc:
                    error = exc
            if step < 2:
                dist.barrier()
        if error is not None:
            raise error
        return result  # type: ignore[return-value]  # function returned

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank (picklable values)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[T | None] = [None] * self.context.world_size
        dist.all_gather_object(values, value)
        return values  # type: ignore[return-value]  # filled by all_gather_object

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value`` in rank order on rank 0; None on the other ranks."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[T | None] | None = [None] * self.context.world_size if self.is_main else None
        dist.gather_object(value, values, dst=0)
        return values  # type: ignore[return-value]  # filled by gather_object on rank 0

    def from_main(self, function: Callable[[], T]) -> T:
        """Run ``function`` on rank 0 and give every rank its result, or raise its RestoreError on every rank."""
        if not self.distributed:
            return function()
        import torch.distributed as dist

        shared: list[object] = [None, None]
        if self.is_main:
            try:
                shared[0] = function()
            except RestoreError as exc:
                shared[1] = (type(exc), str(exc))
        dist.broadcast_object_list(shared, src=0)
        if shared[1] is not None:
            kind, message = shared[1]  # type: ignore[misc]  # set above
            raise kind(message)
        return shared[0]  # type: ignore[return-value]  # set by rank 0


def _combined(failures: list[tuple[int, tuple[type[RestoreError], str]]], world_size: int) -> RestoreError:
    """One error for every rank: the original when all ranks agree, else each message with its ranks."""
    ranks_by_error: dict[tuple[type[RestoreError], str], list[int]] = {}
    for rank, error in failures:
        ranks_by_error.setdefault(error, []).append(rank)
    if len(ranks_by_error) == 1:
        (kind, message), ranks = next(iter(ranks_by_error.items()))
        return kind(message if len(ranks) == world_size else f"{message} (on {_ranks(ranks)})")
    return RestoreError("; ".join(f"{_ranks(ranks)}: {message}" for (_, message), ranks in ranks_by_error.items()))


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def _backend(device: str) -> str:
    """gloo for the small CPU-side collectives; NCCL as well when this rank computes on CUDA.

    Every collective here moves Python objects or CPU counters, which PyTorch routes to the CPU
    backend of a ``cpu:gloo,cuda:nccl`` group; the NCCL half is what a caller's GPU tensors would use.
    """
    import torch.distributed as dist

    if device.strip().lower().startswith("cuda") and _cuda_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def _join(context: DistContext, device: str, timeout: timedelta) -> dist.Store:
    """Rendezvous through torchrun's store, start the process group, and return a store for our keys."""
    import torch
    import torch.distributed as dist

    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"Expected {' and '.join(missing)} in the environment (set by torchrun), but it is unset")
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    chosen = rank_device(device, context)
    kind, _, index = chosen.strip().lower().partition(":")
    if kind == "cuda" and index.isdigit() and int(index) < torch.cuda.device_count():
        torch.cuda.set_device(int(index))  # NCCL and torch.cuda helpers use the current device
    try:
        # The env:// rendezvous init_process_group would run, done here to keep a handle on the store.
        store, _, _ = next(dist.rendezvous("env://", rank=context.rank, world_size=context.world_size, timeout=timeout))
        store.set_timeout(timeout)
        dist.init_process_group(
            _backend(chosen),
            store=dist.PrefixStore("default_pg", store),
            rank=context.rank,
            world_size=context.world_size,
            timeout=timeout,
        )
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeviceError(f"Expected to join the torchrun job at {address}, but got: {reason}") from exc
    # A restarted worker group (torchrun --max-restarts) may meet the old keys in the agent's store.
    return dist.PrefixStore(f"restorecli/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


@contextlib.contextmanager
def session(
    context: DistContext | None = None, device: str = "auto", *, timeout: timedelta = DEFAULT_TIMEOUT
) -> Iterator[Session]:
    """This process's :class:`Session`: under torchrun, joined to the process group and left at the end.

    Leaving the block normally waits for every rank (so rank 0's last words are not cut short), which is
    why a command prints, and decides its exit code, inside the block and exits after it.

    Args:
        context: where this process stands (default: :func:`detect` from the environment).
        device: the device request; a rank that computes on CUDA also gets an NCCL backend.
        timeout: longest wait in one collective step.

    Raises:
        ConfigError: torchrun's environment is incomplete or inconsistent.
        DeviceError: the process group could not be joined.
    """
    context = detect() if context is None else context
    if not context.distributed:
        yield Session(context)
        return
    import torch.distributed as dist

    store = _join(context, device, timeout)
    try:
        yield Session(context, store)
        # torchrun stops every process once one exits non-zero: wait until rank 0 has printed its summary.
        dist.barrier()
    finally:
        dist.destroy_process_group()
