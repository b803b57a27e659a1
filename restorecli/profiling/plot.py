"""A profile as a figure for a paper: latency and peak memory against image size, MACs per module.

matplotlib is optional (``pip install 'restorecli[plot]'``) and imported only here, through its
object API (``Figure`` on the Agg canvas, no ``pyplot`` state), so drawing needs no display and
leaves no global figure behind.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restorecli.errors import MissingDependencyError, OutputPathError, display_path

if TYPE_CHECKING:
    from restorecli.profiling.report import ProfileReport, SizeResult

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
MAX_BARS = 12
_LATENCY_COLOUR = "#1f77b4"
_MEMORY_COLOUR = "#d62728"
_BAR_COLOUR = "#4c72b0"
_OTHER_COLOUR = "#b0b0b0"
_SCALES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, ""))


def require_matplotlib() -> None:
    """Check matplotlib is importable before any work is done.

    Raises:
        MissingDependencyError: it is not installed (the message names the extra).
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError(
            "Expected matplotlib for --plot, but it is not installed (pip install 'restorecli[plot]')"
        )


def check_plot_path(path: Path) -> Path:
    """Validate an output path for :func:`plot_profile` before the profile runs.

    Raises:
        OutputPathError: an unsupported suffix, a missing parent folder, or a folder in the way.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise OutputPathError(
            f"Expected a plot file ending in {', '.join(PLOT_SUFFIXES)}, but got {display_path(path)}"
        )
    if not path.parent.is_dir():
        raise OutputPathError(f"Expected an existing folder for the plot, but got {display_path(path.parent)}")
    if path.is_dir():
        raise OutputPathError(f"Expected a file path for the plot, but {display_path(path)} is a folder")
    return path


def plot_profile(report: ProfileReport, path: Path) -> Path:
    """Draw ``report`` into ``path`` (PNG at 200 dpi, or PDF/SVG by suffix) and return the path.

    Top row: median latency (with the min-p90 band) and peak memory against megapixels, one point
    per measured size, sizes that ran out of memory marked on the axis. Bottom: MACs per module of
    the official formulation at the report's main size (the largest :data:`MAX_BARS` modules, the
    rest summed), with the three counts in its title.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        OutputPathError: the path cannot be written.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_plot_path(path)
    figure = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, height_ratios=(1, 1.25))
    sizes = sorted(report.sizes, key=lambda size: size.height * size.width)
    _latency_panel(figure.add_subplot(grid[0, 0]), sizes)
    _memory_panel(figure.add_subplot(grid[0, 1]), sizes)
    _macs_panel(figure.add_subplot(grid[1, :]), report)
    where = f"{report.device}, " if report.device else ""
    tiling = f", tiles of {report.tile} px" if report.tile else ""
    figure.suptitle(
        f"{report.model}: {report.parameters.total / 1e6:.2f} M parameters "
        f"({where}{report.precision}, batch {report.batch}{tiling})",
        fontsize=13,
        fontweight="bold",
    )
    try:
        figure.savefig(path, dpi=200)
    except OSError as exc:
        raise OutputPathError(f"Expected to write the plot, but {exc.strerror or exc} ({display_path(path)})") from exc
    return path


def _megapixels(size: SizeResult) -> float:
    return size.height * size.width / 1e6


def _size_label(size: SizeResult) -> str:
    return f"{size.height}²" if size.height == size.width else f"{size.height}×{size.width}"


def _plain_log_y(axes: Any) -> None:
    """A log y axis labelled with plain numbers (``3000``, not ``3 x 10^3``), 2x and 5x between decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axes.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axes.yaxis.set_minor_formatter(plain)
    axes.tick_params(axis="y", which="minor", labelsize=8)


def _style(axes: Any, title: str, ylabel: str) -> None:
    axes.set_title(title, fontsize=11, loc="left")
    axes.set_xlabel("image size (megapixels, log scale)")
    axes.set_ylabel(ylabel)
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(True, which="major", color="#e0e0e0", linewidth=0.8)
    axes.set_axisbelow(True)


def _size_axis(axes: Any, sizes: list[SizeResult]) -> None:
    """Log megapixels with a tick at each measured size, labelled by its side(s)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ticks = [_megapixels(size) for size in sizes]
    axes.set_xscale("log")
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xticks(ticks, [f"{_size_label(size)}\n{_megapixels(size):.3g} MP" for size in sizes], fontsize=8)
    low, high = min(ticks), max(ticks)
    axes.set_xlim(low / 1.6, high * 1.6)


def _mark_failures(axes: Any, sizes: list[SizeResult]) -> None:
    """An ``x`` on the axis floor at each size that could not run, labelled once."""
    failed = [_megapixels(size) for size in sizes if size.error]
    if failed:
        axes.plot(
            failed,
            [0.03] * len(failed),
            "x",
            color="black",
            markersize=9,
            mew=2,
            transform=axes.get_xaxis_transform(),
            clip_on=False,
            label="out of memory",
        )


def _not_measured(axes: Any, what: str) -> None:
    axes.text(0.5, 0.5, f"{what} not measured", ha="center", va="center", color="grey", transform=axes.transAxes)


def _latency_panel(axes: Any, sizes: list[SizeResult]) -> None:
    _style(axes, "Latency per forward pass", "median time (ms, log scale)")
    _size_axis(axes, sizes)
    timed = [size for size in sizes if size.latency is not None]
    if not timed:
        _not_measured(axes, "latency")
    else:
        x = [_megapixels(size) for size in timed]
        axes.fill_between(
            x,
            [size.latency.min_ms for size in timed],
            [size.latency.p90_ms for size in timed],  # type: ignore[union-attr]
            color=_LATENCY_COLOUR,
            alpha=0.15,
            linewidth=0,
            label="min to p90",
        )
        axes.plot(x, [size.latency.median_ms for size in timed], "o-", color=_LATENCY_COLOUR, label="median")  # type: ignore[union-attr]
        _plain_log_y(axes)
        for size in timed:
            axes.annotate(
                f"{size.latency.megapixels_per_second:.3g} MP/s",
                (_megapixels(size), size.latency.median_ms),  # type: ignore[union-attr]
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=7,
                color="#555555",
            )
    _mark_failures(axes, sizes)
    if timed or any(size.error for size in sizes):
        axes.legend(frameon=False, fontsize=8, loc="upper left")


def _memory_panel(axes: Any, sizes: list[SizeResult]) -> None:
    measured = [size for size in sizes if size.memory is not None and size.memory.peak_bytes is not None]
    method = measured[0].memory.method if measured else ""  # type: ignore[union-attr]
    source = {"cuda-allocator": "CUDA allocator peak", "cpu-rss-subprocess": "process RSS peak"}.get(method, "peak")
    _style(axes, "Peak memory per forward pass", f"{source} (MiB, log scale)")
    _size_axis(axes, sizes)
    if not measured:
        _not_measured(axes, "memory")
    else:
        x = [_megapixels(size) for size in measured]
        mebibytes = [size.memory.peak_bytes / 2**20 for size in measured]  # type: ignore[union-attr, operator]
        axes.plot(x, mebibytes, "s-", color=_MEMORY_COLOUR, label=source)
        _plain_log_y(axes)
        for point, value in zip(x, mebibytes, strict=True):
            text = f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"
            axes.annotate(
                text,
                (point, value),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=7,
                color="#555555",
            )
    _mark_failures(axes, sizes)
    if measured or any(size.error for size in sizes):
        axes.legend(frameon=False, fontsize=8, loc="upper left")


def _macs_panel(axes: Any, report: ProfileReport) -> None:
    """Horizontal bars, largest module on top, with each bar's share of the official total."""
    official = report.macs.official
    scale, prefix = next((s, p) for s, p in _SCALES if official.total >= s or s == 1.0)
    rows = [row for row in report.breakdown if row.macs > 0]
    shown, rest = rows[:MAX_BARS], rows[MAX_BARS:]
    labels = [row.name for row in shown]
    values = [row.macs / scale for row in shown]
    colours = [_BAR_COLOUR] * len(shown)
    if rest:
        labels.append(f"other ({len(rest)} modules)")
        values.append(sum(row.macs for row in rest) / scale)
        colours.append(_OTHER_COLOUR)
    positions = range(len(values))
    axes.barh(positions, values, color=colours, height=0.7)
    axes.set_yticks(list(positions), labels, fontsize=9)
    axes.invert_yaxis()
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(True, axis="x", color="#e0e0e0", linewidth=0.8)
    axes.set_axisbelow(True)
    axes.set_xlabel(f"{prefix}MACs (official formulation; FLOPs = 2 × MACs)")
    for position, value in zip(positions, values, strict=True):
        share = value * scale / official.total if official.total else 0.0
        axes.annotate(
            f"{value:.3g} {prefix} ({100 * share:.1f}%)",
            (value, position),
            textcoords="offset points",
            xytext=(4, 0),
            va="center",
            fontsize=8,
            color="#333333",
        )
    axes.set_xlim(0, max(values, default=1) * 1.18)
    totals = report.macs.totals()
    shape = "×".join(map(str, official.input_shape[-2:]))
    axes.set_title(
        f"MACs per module at {shape} (depth {report.depth}): {totals['official'] / scale:.2f} {prefix} official, "
        f"{totals['paper'] / scale:.2f} {prefix} paper convention (convolutions only), "
        f"{totals['restorecli'] / scale:.2f} {prefix} restorecli forward",
        fontsize=10,
        loc="left",
    )
