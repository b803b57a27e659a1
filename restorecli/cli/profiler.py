"""``restore profile``: parameters, MACs/FLOPs per module, latency, throughput and peak memory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    TileOverlapOption,
    format_table,
    reports_errors,
    run_options,
)
from restorecli.engine.options import DEFAULT_TILE_OVERLAP

if TYPE_CHECKING:
    from restorecli.profiling import ProfileReport, SizeResult

_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
_TEXT_WIDTH = 100


@reports_errors
def profile(
    arch: Annotated[str | None, typer.Option("--arch", help="Architecture: restormer, nafnet or nafnet-local.")] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Named config of --arch (e.g. deraining, sidd-width32) or a JSON object."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Zoo model name (see `restore models`) instead of --arch.")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Load this checkpoint (default: random init; counts do not need weights)."),
    ] = None,
    size: Annotated[str, typer.Option("--size", help="Image size H or HxW for MACs and the breakdown.")] = "256",
    sizes: Annotated[
        str | None,
        typer.Option("--sizes", help="Comma-separated sizes to measure, e.g. 128,256,512,1024 (default: --size)."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass.")] = 1,
    depth: Annotated[
        int, typer.Option("--depth", min=1, help="Breakdown depth: 1 = encoder levels, latent, decoders...")
    ] = 1,
    top: Annotated[int, typer.Option("--top", min=0, help="Breakdown rows to print (0 = all; JSON has all).")] = 25,
    tile: Annotated[
        int | None,
        typer.Option("--tile", min=1, help="Run the engine's tiled inference with tiles of this many pixels."),
    ] = None,
    tile_overlap: TileOverlapOption = DEFAULT_TILE_OVERLAP,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed passes before timing.")] = 2,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed passes per size.")] = 10,
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="Time forward passes on --device.")] = True,
    memory: Annotated[
        bool,
        typer.Option("--memory/--no-memory", help="Measure peak memory (CUDA allocator; CPU: a fresh process)."),
    ] = True,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also draw latency and peak memory against image size, and MACs per module, into this "
            "PNG/PDF/SVG (needs restorecli[plot]).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Profile a network: parameters, MACs/FLOPs per module, latency, throughput and peak memory.

    No weights are needed. Examples: `restore profile --arch restormer --config deraining`,
    `restore profile --arch nafnet --config sidd-width32 --sizes 128,256,512,1024 --plot nafnet.png`.
    """
    from restorecli import profiling
    from restorecli.profiling import plot as plotting

    if plot is not None:  # before any work: a missing extra or a bad path is not worth a long profile
        plotting.require_matplotlib()
        plotting.check_plot_path(plot)

    target = profiling.resolve_target(arch=arch, config=config, model=model, weights=weights)
    report = profiling.profile(
        target,
        size=profiling.parse_size(size),
        sizes=profiling.parse_sizes(sizes) if sizes else (),
        batch=batch,
        depth=depth,
        device=device,
        options=run_options(
            device, tile=tile, tile_overlap=tile_overlap, tile_batch=None, precision=precision, max_memory=None
        ),
        warmup=warmup,
        repeats=repeats,
        latency=latency,
        memory=memory,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report, top))
    if plot is not None:
        plotting.plot_profile(report, plot)


def format_report(report: ProfileReport, top: int) -> str:
    """The human-readable profile: summary, the three MAC counts, breakdown, runtime per size, convention."""
    params = report.parameters
    official = report.macs.official
    shape = "x".join(map(str, official.input_shape))
    operators = ", ".join(f"{name} {_si(count)}" for name, count in official.by_operator.items())
    lines = [
        f"Model       {report.model}  [{report.arch}]  weights: {report.weights or 'random init'}",
        (
            f"Parameters  {params.total:,} ({params.total / 1e6:.2f} M), trainable {params.trainable:,}; "
            f"weights {_bytes(report.weights_bytes)}"
        ),
        f"Compute     {_si(official.total)}MACs = {_si(official.flops)}FLOPs at input {shape}, official formulation"
        + (f" ({operators})" if operators else ""),
        "",
        f"MACs at input {shape}, three ways:",
        _counts_table(report),
        "",
        f"Per module, depth {report.depth}, official formulation, most MACs first:",
        _breakdown_table(report, top),
    ]
    if report.device is not None:
        first = next((size.latency for size in report.sizes if size.latency), None)
        passes = f", {first.warmup} warm-up + {first.repeats} timed passes" if first else ""
        tiling = f", tiles of {report.tile} px (overlap {report.overlap})" if report.tile else ""
        lines += ["", f"Runtime on {report.device}, {report.precision}, batch {report.batch}{tiling}{passes}:"]
        lines.append(_sizes_table(report.sizes))
    elif len(report.sizes) > 1:
        lines += ["", "MACs per size (official formulation):", _sizes_table(report.sizes)]
    lines += ["", _wrap(f"Convention: {report.convention}")]
    lines += [_wrap(f"Note: {note}") for note in report.notes]
    return "\n".join(lines)


def _counts_table(report: ProfileReport) -> str:
    """Official, paper-convention and restorecli counts side by side; the description column left-aligned."""
    from restorecli.profiling import COUNT_KINDS

    totals = report.macs.totals()
    rows = [[label, _si(totals[kind]), _si(2 * totals[kind])] for kind, label, _ in COUNT_KINDS]
    table = format_table(["count", "MACs", "FLOPs"], rows, right_from=1).splitlines()
    width = max(len(line) for line in table)
    descriptions = [what for _, _, what in COUNT_KINDS]
    descriptions[0] += " (headline)"
    texts = ["what it counts", "-" * max(map(len, descriptions)), *descriptions]
    return "\n".join(f"{line.ljust(width)}  {text}" for line, text in zip(table, texts, strict=True))


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=_TEXT_WIDTH, subsequent_indent="  ")


def _breakdown_table(report: ProfileReport, top: int) -> str:
    shown = report.breakdown if top == 0 else report.breakdown[:top]
    rows = [
        [row.name, f"{row.params:,}", f"{100 * row.params_share:.1f}", _si(row.macs), f"{100 * row.macs_share:.1f}"]
        for row in shown
    ]
    table = format_table(["module", "params", "% params", "MACs", "% MACs"], rows, right_from=1)
    hidden = report.breakdown[len(shown) :]
    if hidden:
        share = sum(row.macs_share for row in hidden)
        table += f"\n... {len(hidden)} more rows ({100 * share:.1f}% of MACs); --top 0 or --json shows all"
    return table


def _sizes_table(sizes: list[SizeResult]) -> str:
    rows = []
    for result in sizes:
        timing, peak = result.latency, result.memory
        rows.append(
            [
                f"{result.height}x{result.width}",
                "x".join(map(str, result.input_shape)),
                str(result.tiles),
                _si(result.macs),
                f"{timing.median_ms:.2f}" if timing else "-",
                f"{timing.p90_ms:.2f}" if timing else "-",
                f"{timing.images_per_second:.3g}" if timing else "-",
                f"{timing.megapixels_per_second:.3g}" if timing else "-",
                _memory(peak.peak_bytes, peak.method) if peak else "-",
                result.error or "",
            ]
        )
    headers = ["size", "input", "tiles", "MACs", "median ms", "p90 ms", "images/s", "MP/s", "peak memory", ""]
    return format_table(headers, rows, right_from=2)


def _si(count: float) -> str:
    """``154882031616`` -> ``"154.88 G"`` (decimal prefixes, as papers print GMACs)."""
    for scale, prefix in _SI_PREFIXES:
        if abs(count) >= scale:
            return f"{count / scale:.2f} {prefix}"
    return f"{count:.0f} "


def _bytes(count: int) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _memory(peak_bytes: int | None, method: str) -> str:
    if peak_bytes is None:
        return method
    suffix = " (process RSS)" if method.startswith("cpu") else ""
    return _bytes(peak_bytes) + suffix


def register(app: typer.Typer) -> None:
    """Add ``restore profile`` to the app."""
    app.command("profile")(profile)
