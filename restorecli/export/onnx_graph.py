"""Export a loaded model to an ONNX file, verified against PyTorch before it is written.

Why the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the dynamo exporter,
torch's default since 2.9, needs the ``onnxscript`` package and more; the TorchScript one needs
nothing beyond torch and produces graphs onnxruntime runs as they are. It traces one forward pass,
so Python branches on the input size are frozen at the traced size; the architectures give the
trace branch-free paths where that would matter (``torch.onnx.is_in_onnx_export()`` in NAFNet's TLC
pooling and Restormer's head products), and every export is checked at two sizes so that a frozen
branch is caught rather than shipped.

The graph: input ``input`` and output ``output``, ``(N, C, H, W)`` float in ``[0, 1]`` (float16 with
``fp16``), batch, height and width dynamic unless a fixed ``size`` is asked for. Padding is not in
the graph: sides must be multiples of the model's padding multiple (stored in the metadata, see
:class:`~restorecli.export.onnx_session.OnnxFacts`), as the engine pads them.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from restorecli import __version__
from restorecli.engine.padding import round_up
from restorecli.engine.runner import estimate_bytes_per_pixel
from restorecli.errors import ConfigError, ExportError, ExportMismatchError, display_path
from restorecli.export.onnx_session import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxFacts,
    OnnxModule,
    import_optional,
    new_session,
)
from restorecli.images import atomic_path

if TYPE_CHECKING:
    from restorecli.zoo.descriptor import ModelDescriptor

DEFAULT_OPSET = 17  # the first with a fused LayerNormalization; widely supported by runtimes
MIN_OPSET = 13  # ReduceSum with its axes as an input (the linalg.vecdot translation below)
MAX_OPSET = 20  # the newest the TorchScript-based exporter of torch 2.x writes
# Largest absolute difference from the fp32 PyTorch output an export may show ([0, 1] pixels):
# float32 graphs differ by summation order only (~1e-6); float16 ones by rounding (~1/400 here).
DEFAULT_TOLERANCE = {"float32": 1e-3, "float16": 1e-2}
# The engine sizes tiles by activation bytes per pixel, which it cannot probe inside a graph: the
# export stores PyTorch's estimate with headroom, since onnxruntime's arena holds more than PyTorch's
# allocator on the same image (work MiB in bench/results/onnx-cpu.txt).
ONNXRUNTIME_MEMORY_FACTOR = 1.5
_CHECK_SIDE = 64  # verification inputs: about this side, rounded up to the padding multiple
_SEED = 0


@dataclass(frozen=True)
class SizeCheck:
    """One verification run: the input shape and the largest absolute output difference."""

    batch: int
    height: int
    width: int
    max_difference: float


@dataclass(frozen=True)
class OnnxExport:
    """A written export: where, what its metadata says, how it was verified, and its size in bytes."""

    path: Path
    facts: OnnxFacts
    checks: tuple[SizeCheck, ...]
    tolerance: float
    file_bytes: int


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (or ``"S"`` for a square) as ``(H, W)``.

    Raises:
        ConfigError: not two positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise ConfigError(f"Expected a size HxW of positive integers (e.g. 256x256), but got {text!r}")
    return int(parts[0]), int(parts[1])


def export_onnx(
    descriptor: ModelDescriptor,
    destination: Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    size: tuple[int, int] | None = None,
    tolerance: float | None = None,
) -> OnnxExport:
    """Export ``descriptor``'s network to ``destination``, verified with onnxruntime first.

    The graph runs in onnxruntime on seeded random inputs and its outputs are compared with the
    PyTorch module's in float32: at the traced size and, for a dynamic graph, at a second,
    non-square size with a batch of two. Nothing is written unless every difference is within
    ``tolerance``; the file appears atomically.

    Args:
        descriptor: a loaded model (its module is copied, never changed).
        destination: the ``.onnx`` file to write (replaced if it exists).
        opset: ONNX operator set, :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        fp16: a float16 graph (inputs, weights and outputs); verified against the float32 module.
        size: ``(H, W)`` for a fixed-size graph, each a multiple of the padding multiple; None for
            dynamic batch, height and width.
        tolerance: largest allowed absolute difference; None for :data:`DEFAULT_TOLERANCE`.

    Raises:
        ConfigError: an opset out of range or a size that is not a multiple of the padding multiple.
        MissingDependencyError: ``onnx`` or ``onnxruntime`` is not installed.
        ExportError: the exporter cannot translate the network.
        ExportMismatchError: onnxruntime's output differs from PyTorch's by more than ``tolerance``.
    """
    if isinstance(descriptor.module, OnnxModule):
        raise ConfigError(
            f"Expected a zoo entry or a PyTorch checkpoint to export, but got an ONNX graph ({descriptor.name})"
        )
    if not getattr(descriptor.module, "plain", True):  # a spandrel model that needs spandrel's own call
        raise ConfigError(
            f"Expected a network ONNX can hold as it is, but spandrel runs {descriptor.arch} through its own call "
            f"(a tuple output, a noise-level input or an output mapping) ({descriptor.name})"
        )
    onnx = import_optional("onnx")
    destination = Path(destination)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"Expected an ONNX opset from {MIN_OPSET} to {MAX_OPSET}, but got {opset}")
    shapes = _check_shapes(descriptor, size)
    dtype = torch.float16 if fp16 else torch.float32
    dtype_name = str(dtype).removeprefix("torch.")
    tolerance = DEFAULT_TOLERANCE[dtype_name] if tolerance is None else tolerance

    reference = copy.deepcopy(descriptor.module).to("cpu", torch.float32).eval()
    traced = copy.deepcopy(reference).to(dtype) if fp16 else reference
    batch, height, width = shapes[0]
    example = torch.zeros(batch, descriptor.in_channels, height, width, dtype=dtype)
    graph = onnx.load_from_string(_trace(traced, example, opset, dynamic=size is None, name=descriptor.name))
    session = new_session(graph.SerializeToString(), cpu_only=True)
    checks = tuple(_compare(session, reference, descriptor.in_channels, shape, dtype) for shape in shapes)
    worst = max(check.max_difference for check in checks)
    if not worst <= tolerance:  # also refuses NaN
        measured = ", ".join(f"{c.height}x{c.width}: {c.max_difference:.3g}" for c in checks)
        # Right at the traced size only: the trace froze sizes into the graph (window counts, say).
        frozen = checks[0].max_difference <= tolerance and len(checks) > 1
        advice = f"; it holds only the traced size: export with --size {height}x{width}" if frozen else ""
        raise ExportMismatchError(
            f"Expected onnxruntime to match PyTorch within {tolerance:g}, but the largest difference is "
            f"{worst:.3g} ({measured}){advice}; nothing written ({display_path(destination)})"
        )
    facts = _facts(descriptor, dtype_name, opset, worst, size)
    for key, value in facts.to_props().items():
        graph.metadata_props.add(key=key, value=value)
    data = graph.SerializeToString()
    with atomic_path(destination) as temporary:
        temporary.write_bytes(data)
    return OnnxExport(destination, facts, checks, tolerance, len(data))


def _check_shapes(descriptor: ModelDescriptor, size: tuple[int, int] | None) -> list[tuple[int, int, int]]:
    """``(N, H, W)`` of the verification inputs; the first is also the traced one."""
    multiple = descriptor.pad_multiple
    if size is not None:
        if any(side % multiple for side in size):
            raise ConfigError(
                f"Expected --size sides that are multiples of {multiple} ({descriptor.name}'s padding multiple), "
                f"but got {size[0]}x{size[1]}"
            )
        return [(1, *size)]
    side = max(round_up(_CHECK_SIDE, multiple), round_up(descriptor.min_size, multiple))
    # Different sides (unless the network takes squares only), so a size frozen into the trace
    # cannot pass by chance.
    width = side + multiple if descriptor.square else side + 2 * multiple
    return [(1, side, side), (2, side + multiple, width)]


def _trace(module: nn.Module, example: Tensor, opset: int, *, dynamic: bool, name: str) -> bytes:
    """The ONNX bytes of ``module`` traced on ``example``."""
    _register_symbolics()
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else None
    buffer = io.BytesIO()
    # The exporter warns that it is the legacy one, and the tracer about every Python value it
    # freezes; the two-size verification is what tells whether a frozen value matters.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if axes else None,
                do_constant_folding=True,
            )
        except (torch.onnx.errors.OnnxExporterError, RuntimeError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"Expected {name} to translate to ONNX opset {opset}, but {detail}") from exc
    return buffer.getvalue()


def _compare(
    session: Any, reference: nn.Module, channels: int, shape: tuple[int, int, int], dtype: torch.dtype
) -> SizeCheck:
    """Run the graph and the float32 module on one seeded random ``(N, channels, H, W)`` input of
    ``shape = (N, H, W)``; the largest absolute difference (infinite for a wrong shape or a non-finite output)."""
    batch, height, width = shape
    generator = torch.Generator().manual_seed(_SEED + height * 1000 + width)
    x = torch.rand(batch, channels, height, width, generator=generator)
    with torch.inference_mode():
        expected = reference(x).float().numpy()
    (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.to(dtype).numpy()})
    if output.shape != expected.shape:
        return SizeCheck(batch, height, width, math.inf)
    difference = float(np.abs(output.astype(np.float32) - expected).max())
    return SizeCheck(batch, height, width, difference if math.isfinite(difference) else math.inf)


def _facts(
    descriptor: ModelDescriptor, dtype: str, opset: int, max_difference: float, size: tuple[int, int] | None
) -> OnnxFacts:
    return OnnxFacts(
        name=descriptor.name,
        arch=descriptor.arch,
        config=descriptor.config,
        task=descriptor.task,
        in_channels=descriptor.in_channels,
        out_channels=descriptor.out_channels,
        pad_multiple=descriptor.pad_multiple,
        pad_mode=descriptor.pad_mode,
        dtype=dtype,
        opset=opset,
        max_difference=max_difference,
        version=__version__,
        scale=descriptor.scale,
        min_size=descriptor.min_size,
        square=descriptor.square,
        size=list(size) if size is not None else None,
        bytes_per_pixel=round(ONNXRUNTIME_MEMORY_FACTOR * estimate_bytes_per_pixel(descriptor), 1),
    )


@functools.cache
def _register_symbolics() -> None:
    """Teach the TorchScript exporter ``linalg.vecdot`` (Restormer's attention norms): ``sum(x * y, dim)``.

    torch ships no ONNX translation for it; registered once per process, for every opset from
    :data:`MIN_OPSET`.
    """
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "v", "i")
    def vecdot(graph: Any, x: Any, y: Any, dim: int) -> Any:
        axes = graph.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64))
        return graph.op("ReduceSum", graph.op("Mul", x, y), axes, keepdims_i=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the feature will be removed" with the TorchScript exporter
        torch.onnx.register_custom_op_symbolic("aten::linalg_vecdot", vecdot, MIN_OPSET)
