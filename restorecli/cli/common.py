"""Options shared by several commands, and the one place library errors become exit codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from restorecli.engine.options import DEFAULT_TILE_OVERLAP, parse_memory_size
from restorecli.errors import RestoreError, escape_text

if TYPE_CHECKING:
    from restorecli.engine.options import RunOptions

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1

DeviceOption = Annotated[
    str,
    typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
]
PrecisionOption = Annotated[
    str,
    typer.Option("--precision", help="fp32, bf16 or fp16 (fp16 on CUDA only; bf16 on CUDA or CPU)."),
]
TileOption = Annotated[
    int | None,
    typer.Option("--tile", min=1, help="Tile size in pixels (default: tile only when the image would not fit)."),
]
TileOverlapOption = Annotated[
    int, typer.Option("--tile-overlap", min=0, help=f"Pixels shared by neighbouring tiles ({DEFAULT_TILE_OVERLAP}).")
]
TileBatchOption = Annotated[
    int | None,
    typer.Option("--tile-batch", min=1, help="Tiles per forward pass (default: as many as fit, 1 on the CPU)."),
]


def _memory_size(text: str) -> int:
    """Typer parser for ``--max-memory``: a usage error names the option on a bad value."""
    try:
        return parse_memory_size(text)
    except RestoreError as exc:
        raise typer.BadParameter(str(exc)) from None


MaxMemoryOption = Annotated[
    int | None,
    typer.Option(
        "--max-memory",
        parser=_memory_size,
        metavar="SIZE",
        help="Most memory one forward pass may use, e.g. 4GiB or 512MiB (default: half the free RAM, "
        "80% of free GPU memory); larger images are tiled.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
TlcOption = Annotated[
    bool | None,
    typer.Option("--tlc/--no-tlc", help="NAFNet test-time local converter (default: the entry's choice)."),
]


def tlc_variant(tlc: bool | None) -> str | None:
    """The architecture variant ``--tlc``/``--no-tlc`` asks for (None: the entry's choice)."""
    from restorecli.zoo.architectures import PLAIN

    return None if tlc is None else "tlc" if tlc else PLAIN


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (the summary is still printed).")]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=0, help="Parallel worker processes (0 = number of CPU cores).")
]


def run_options(
    device: str,
    *,
    tile: int | None,
    tile_overlap: int,
    tile_batch: int | None,
    precision: str,
    max_memory: int | None,
) -> RunOptions:
    """The engine's run options from the shared command-line options, built in this one place.

    Fallback follows the one policy (:func:`~restorecli.engine.device.may_fall_back`): ``--device
    auto`` may move to the next device (announced), a named device fails instead. Decided from the
    request, not the loaded model: under torchrun ``auto`` is mapped to each rank's ``cuda:N``.
    """
    from restorecli.engine.device import may_fall_back
    from restorecli.engine.options import RunOptions

    return RunOptions(
        tile=tile,
        overlap=tile_overlap,
        tile_batch=tile_batch,
        precision=precision,  # type: ignore[arg-type]  # validated by RunOptions
        fallback=may_fall_back(device),
        max_memory=max_memory,
    )


MaxPixelsOption = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=0,
        help="Refuse images whose header declares more pixels (decompression bombs); 0 = no limit. "
        "Default: RESTORECLI_MAX_PIXELS, else 178956970 (Pillow's limit).",
        show_default=False,
    ),
]
FollowSymlinksOption = Annotated[
    bool,
    typer.Option("--follow-symlinks", help="Read symbolic links in an input folder that point outside it."),
]


def apply_input_policy(max_pixels: int | None, follow_symlinks: bool) -> None:
    """Install ``--max-pixels``/``--follow-symlinks`` for this process and the workers it starts."""
    from restorecli.images import InputPolicy

    limit = InputPolicy.current().max_pixels if max_pixels is None else max_pixels
    InputPolicy(max_pixels=limit, follow_symlinks=follow_symlinks).install()


def fail(message: str) -> typer.Exit:
    """Print ``Error: message`` to stderr (control characters escaped) and return the Exit to raise."""
    typer.echo(f"Error: {escape_text(message)}", err=True)
    return typer.Exit(EXIT_FAILURE)


def job_exit(failure: str | None, is_main: bool) -> typer.Exit | None:
    """The exit for a failed run: ``Error: ...`` printed now by rank 0 only, exit code 1 on every rank.

    Shared by the inference commands and ``restore eval``; made while the torchrun session is open,
    raised after it closes.
    """
    if failure is None:
        return None
    return fail(failure) if is_main else typer.Exit(EXIT_FAILURE)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Translate RestoreError into one ``Error: ...`` line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RestoreError as exc:
            raise fail(str(exc)) from None

    return wrapper


def format_table(headers: list[str] | None, rows: list[list[object]], right_from: int | None = None) -> str:
    """Align ``rows`` in columns (two spaces apart); a rule under ``headers`` when given.

    Columns from index ``right_from`` on are right-aligned (numbers); the others left-aligned.
    """
    cells = [[str(cell) for cell in row] for row in ([headers] if headers else []) + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if right_from is not None and i >= right_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines = [line(row) for row in cells]
    if headers:
        lines.insert(1, line(["-" * width for width in widths]))
    return "\n".join(lines)


class _EchoHandler(logging.Handler):
    """Writes library log records (device fallback, skipped files) as one line to the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"{record.levelname.capitalize()}: {escape_text(record.getMessage())}", err=True)


def show_library_messages() -> None:
    """Route the ``restorecli`` logger's warnings to stderr once per process (idempotent)."""
    library = logging.getLogger("restorecli")
    if not any(isinstance(handler, _EchoHandler) for handler in library.handlers):
        library.addHandler(_EchoHandler(logging.WARNING))
        library.setLevel(logging.INFO)
