"""Run an exported ONNX graph as an ``nn.Module``, so the engine pads, tiles and batches it unchanged.

The graph carries what the engine needs in its ``metadata_props`` (:class:`OnnxFacts`, written at
export by :mod:`restorecli.export.onnx_graph`): architecture, config, task, channels, scale, and the
padding rule. Padding is *not* inside the graph: like a PyTorch model, an ONNX graph takes sides that
are multiples of ``pad_multiple``, and the engine pads to them (mode ``pad_mode``) and crops back.

Only ``onnxruntime`` is needed here (the metadata is read through its session); the ``onnx`` package
is needed for exporting. Both come with the ``restorecli[onnx]`` extra.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from restorecli.errors import CheckpointError, ConfigError, MissingDependencyError, display_path

logger = logging.getLogger("restorecli")

INSTALL_HINT = 'pip install "restorecli[onnx]"'
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Prefix of every metadata key restorecli writes, so its facts stand apart from other tools' keys.
METADATA_PREFIX = "restorecli."
_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}


def import_optional(name: str) -> types.ModuleType:
    """Import ``onnx`` or ``onnxruntime``, or say which extra provides it.

    Raises:
        MissingDependencyError: the package is not installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"Expected the {name} package for ONNX export and inference, but it is not installed; {INSTALL_HINT}"
        ) from exc


@dataclass(frozen=True)
class OnnxFacts:
    """What an exported graph is and how the engine must feed it, stored in its ``metadata_props``.

    Attributes:
        name: the zoo entry or checkpoint it was exported from.
        arch / config / task: as in :class:`~restorecli.zoo.descriptor.ModelDescriptor`.
        in_channels / out_channels / scale: input and output channels, output side / input side.
        pad_multiple / pad_mode: input sides must be multiples of ``pad_multiple``; the engine pads
            bottom/right with ``pad_mode`` (not the graph).
        min_size / square: the descriptor's input constraints, carried over.
        bytes_per_pixel: activation bytes per input pixel the engine sizes tiles by (0: unknown, a file
            written before exports stored it; the engine then probes, which sees no activations).
        dtype: ``float32`` or ``float16``: the graph's input and output element type.
        size: ``[H, W]`` of a fixed-size graph, or None when height and width are dynamic.
        opset: the ONNX operator set.
        max_difference: the largest absolute difference from PyTorch measured at export.
        version: the restorecli version that wrote the file.
    """

    name: str
    arch: str
    config: dict[str, Any]
    task: str | None
    in_channels: int
    out_channels: int
    pad_multiple: int
    pad_mode: str
    dtype: str
    opset: int
    max_difference: float
    version: str
    scale: int = 1
    min_size: int = 0
    square: bool = False
    size: list[int] | None = field(default=None)
    bytes_per_pixel: float = 0.0

    def to_props(self) -> dict[str, str]:
        """``metadata_props`` entries: one JSON value per field, keys prefixed ``restorecli.``."""
        return {METADATA_PREFIX + key: json.dumps(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> OnnxFacts:
        """The facts back from ``metadata_props``.

        Raises:
            CheckpointError: a required key is missing or a value is not JSON (not a restorecli export).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        found = {key[len(METADATA_PREFIX) :]: value for key, value in props.items() if key.startswith(METADATA_PREFIX)}
        missing = sorted(required - set(found))
        if missing:
            raise CheckpointError(
                f"Expected an ONNX file written by `restore export` (metadata {METADATA_PREFIX}arch, ...), "
                f"but it lacks {', '.join(METADATA_PREFIX + key for key in missing)} ({source})"
            )
        try:
            values = {key: json.loads(value) for key, value in found.items() if key in names}
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"Expected JSON values in the restorecli metadata, but {exc} ({source})") from exc
        return cls(**values)

    def descriptor_fields(self, source: str) -> dict[str, Any]:
        """The engine's constraints as :class:`~restorecli.zoo.descriptor.ModelDescriptor` fields.

        A fixed-size ``S x S`` graph becomes padding to a multiple of ``S``: smaller images are padded
        up to it, and ``--tile S`` cuts larger ones into graph-sized tiles.

        Raises:
            ConfigError: a fixed size that is not square (the engine tiles in squares).
        """
        multiple = self.pad_multiple
        if self.size is not None:
            height, width = self.size
            if height != width:
                raise ConfigError(
                    f"Expected a dynamic or square fixed-size graph to run here, but got {height}x{width}; "
                    f"export with --size SxS or without --size ({source})"
                )
            multiple = height
        return {
            "arch": self.arch,
            "config": self.config,
            "task": self.task,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "pad_multiple": multiple,
            "pad_mode": self.pad_mode,
            "scale": self.scale,
            "min_size": self.min_size,
            "square": self.square,
            "bytes_per_pixel": self.bytes_per_pixel or None,
        }


def new_session(model: str | bytes, threads: int | None = None, *, cpu_only: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` on a file path or serialised bytes, quiet below errors.

    Args:
        model: a path or the graph's bytes.
        threads: intra-op threads; None follows PyTorch's setting (``torch.get_num_threads()``), so
            ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` govern both runtimes alike.
        cpu_only: skip the CUDA provider even when ``onnxruntime-gpu`` offers it (verification).
    """
    ort = import_optional("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only: fp16 constant-folding notes would flood stderr
    wanted = ("CPUExecutionProvider",) if cpu_only else ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(model, options, providers=providers)


class OnnxModule(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface the engine calls.

    Takes and returns ``(N, C, H, W)`` float tensors on any device; the graph runs on ONNX Runtime's
    CPU (or CUDA, when ``onnxruntime-gpu`` provides it) and the output comes back as float32 on the
    input's device. It holds no parameters, so the engine sees a CPU model that never moves. The
    graph's precision is fixed at export: a ``--precision`` other than the graph's is announced
    once and has no effect.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (see :func:`new_session`).
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        source = display_path(path)
        try:
            self.session = new_session(str(path), threads)
        except MissingDependencyError:
            raise
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise CheckpointError(f"Expected an ONNX graph onnxruntime can load, but {exc} ({source})") from exc
        self.facts = OnnxFacts.from_props(self.session.get_modelmeta().custom_metadata_map, source)
        self.path = Path(path)
        self._numpy_dtype = _NUMPY_DTYPES.get(self.facts.dtype, np.float32)
        self._warned_precision = False

    def extra_repr(self) -> str:
        size = "x".join(map(str, self.facts.size)) if self.facts.size else "dynamic"
        return f"path={self.path}, dtype={self.facts.dtype}, size={size}"

    def forward(self, x: Tensor) -> Tensor:
        size = self.facts.size
        if size is not None and list(x.shape[-2:]) != size:
            raise ConfigError(
                f"Expected {size[0]}x{size[1]} inputs for this fixed-size graph, but got "
                f"{x.shape[-2]}x{x.shape[-1]}; restore with --tile {size[0]} --tile-overlap 0 (tiles meet without "
                f"blending), or export without --size "
                f"({display_path(self.path)})"
            )
        self._note_precision(x.device)
        pixels = x.detach().to("cpu", torch.float32).contiguous().numpy().astype(self._numpy_dtype, copy=False)
        # A fixed-size graph also has a fixed batch of one: a batch of tiles runs one at a time.
        batches = np.split(pixels, len(pixels)) if size is not None else [pixels]
        outputs = [self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0] for batch in batches]
        output = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
        return torch.from_numpy(output.astype(np.float32, copy=False)).to(x.device)

    def _note_precision(self, device: torch.device) -> None:
        """Announce once that an autocast precision other than the graph's changes nothing."""
        if self._warned_precision or not torch.is_autocast_enabled(device.type):
            return
        requested = torch.get_autocast_dtype(device.type)
        if str(requested).removeprefix("torch.") != self.facts.dtype:
            self._warned_precision = True
            logger.warning(
                "%s is a %s ONNX graph: its precision is fixed at export, so %s has no effect",
                display_path(self.path),
                self.facts.dtype,
                str(requested).removeprefix("torch."),
            )
