"""Options shared by several commands, and the one place library errors become exit codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from restorecli.errors import RestoreError

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
TileOverlapOption = Annotated[int, typer.Option("--tile-overlap", min=0, help="Pixels shared by neighbouring tiles.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=0, help="Parallel worker processes (0 = number of CPU cores).")
]


def fail(message: str) -> typer.Exit:
    """Print ``Error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"Error: {message}", err=True)
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
        typer.echo(f"{record.levelname.capitalize()}: {record.getMessage()}", err=True)


def show_library_messages() -> None:
    """Route the ``restorecli`` logger's warnings to stderr once per process (idempotent)."""
    library = logging.getLogger("restorecli")
    if not any(isinstance(handler, _EchoHandler) for handler in library.handlers):
        library.addHandler(_EchoHandler(logging.WARNING))
        library.setLevel(logging.INFO)
