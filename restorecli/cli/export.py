"""``restore export --model NAME|FILE OUT.onnx``: a model to an ONNX file, verified before it is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from restorecli.cli.common import JsonOption, TlcOption, reports_errors, tlc_variant


@reports_errors
def export(
    output: Annotated[Path, typer.Argument(metavar="OUT.onnx", help="The ONNX file to write (replaced if present).")],
    model: Annotated[str, typer.Option("--model", help="Zoo name or checkpoint file to export.")],
    weights: Annotated[Path | None, typer.Option("--weights", help="Explicit weight file for the zoo model.")] = None,
    tlc: TlcOption = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX operator set (13 to 20).")] = 17,
    fp16: Annotated[bool, typer.Option("--fp16", help="A float16 graph: inputs, weights and outputs.")] = False,
    size: Annotated[
        str | None,
        typer.Option("--size", metavar="HxW", help="A fixed input size (default: any height and width)."),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance", min=0.0, help="Largest difference from PyTorch accepted (default 1e-3, fp16 1e-2)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Export a model to ONNX, checked in onnxruntime against PyTorch before the file is written.

    The graph takes (N, C, H, W) floats in [0, 1] with H and W multiples of the padding multiple it prints (padding is left to the caller). Run it with `restore denoise --model OUT.onnx` (or derain, deblur). Needs `pip install "restorecli\\[onnx]"`.
    """
    from restorecli.export.onnx_graph import export_onnx, parse_size
    from restorecli.images import check_output_file
    from restorecli.zoo.loader import load_descriptor

    check_output_file(output, "OUT.onnx")  # before the export and its checks, which take seconds
    fixed = parse_size(size) if size is not None else None
    descriptor = load_descriptor(model, weights=weights, variant=tlc_variant(tlc))
    result = export_onnx(descriptor, output, opset=opset, fp16=fp16, size=fixed, tolerance=tolerance)
    facts = result.facts
    if as_json:
        summary = {
            "file": str(result.path),
            "bytes": result.file_bytes,
            "tolerance": result.tolerance,
            "checks": [vars(check) for check in result.checks],
            **vars(facts),
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    shape = "x".join(map(str, facts.size)) if facts.size else f"any HxW in multiples of {facts.pad_multiple}"
    typer.echo(
        f"{descriptor.name} -> {result.path} ({result.file_bytes / 2**20:.1f} MiB, {facts.dtype}, opset {facts.opset}, "
        f"input {shape}, pad mode {facts.pad_mode})"
    )
    checks = ", ".join(f"{c.batch}x{c.height}x{c.width}: {c.max_difference:.2e}" for c in result.checks)
    typer.echo(f"verified in onnxruntime against PyTorch, max |difference| {checks} (tolerance {result.tolerance:g})")


def register(app: typer.Typer) -> None:
    """Add ``restore export`` to the app."""
    app.command("export")(export)
