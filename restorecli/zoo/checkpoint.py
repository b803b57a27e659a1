"""Reading weight files without trusting them, and sizing a network before it is allocated.

A weights file may come from anyone. It is read without unpickling code (``torch.load(weights_only=True)``
or safetensors), its kind is told from its first bytes rather than its suffix, every exception the
readers raise becomes one :class:`~restorecli.errors.CheckpointError` line, and nothing is allocated
from what it declares until that was checked:

- a tensor must hold its own elements: a stride-0 (expanded) tensor of a few bytes can declare
  billions of elements, and a network built to fit it would allocate them;
- the config a network is built from (inferred from the keys, from a model card or a zoo entry) is
  checked for its numbers and built on the ``meta`` device first, so a key such as
  ``middle_blks.9999999.conv1.weight`` or a card with ``"width": 30000`` is refused in milliseconds.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from restorecli.errors import CheckpointError, RestoreError, display_path
from restorecli.zoo import architectures

CheckpointKind = Literal["zip", "pickle", "safetensors"]

MAX_PARAMETERS = 1_000_000_000  # ~4 GB of fp32 weights; the largest restoration networks hold ~0.1 G
MAX_BLOCKS = 512  # all blocks of a network together; the official models have 28-36
MAX_CONFIG_VALUE = 4096  # any one number of a config: a width, a head count, a block count
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since PyTorch 1.6
_PICKLE_PROTO = 0x80  # the legacy format: a bare pickle, protocol 2 or later
_SAFETENSORS_HEADER_START = 8  # an 8-byte little-endian header length, then the JSON header
_MAX_LISTED_KEYS = 5


def checkpoint_kind(path: Path) -> CheckpointKind:
    """Tell a PyTorch zip, a legacy PyTorch pickle or a safetensors file apart by its first bytes.

    Raises:
        CheckpointError: none of the three (a text file, an image, random bytes), or unreadable.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise CheckpointError(f"Cannot read {display_path(path)}: {exc.strerror or exc}") from exc
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head[:1] == bytes([_PICKLE_PROTO]) and len(head) > 2:
        return "pickle"
    if len(head) > _SAFETENSORS_HEADER_START and head[_SAFETENSORS_HEADER_START] == ord("{"):
        header_length = int.from_bytes(head[:_SAFETENSORS_HEADER_START], "little")
        if header_length <= size - _SAFETENSORS_HEADER_START:
            return "safetensors"
    raise CheckpointError(
        f"Expected a PyTorch or safetensors checkpoint, but the file is neither (starts with {head[:8]!r}) "
        f"({display_path(path)})"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _load_torch(path: Path, kind: CheckpointKind) -> Any:
    # mmap: a zip's storages stay in the file until copied into the network, and a storage cannot
    # claim more bytes than the file holds. The weights-only unpickler of a hostile file raises
    # anything (KeyError, IndexError, struct.error...), hence the broad catch at this boundary.
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"Expected a PyTorch checkpoint, but its zip archive is truncated or damaged (no central directory) "
            f"({display_path(path)})"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 1": our line says what went wrong
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"Expected a checkpoint of plain tensors, but it holds pickled objects that weights_only "
                f"loading refuses to execute ({display_path(path)})"
            ) from exc
        raise CheckpointError(
            f"Expected a PyTorch checkpoint, but its pickle is malformed: {_describe(exc)} ({display_path(path)})"
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            f"Expected a PyTorch checkpoint, but reading failed: {_describe(exc)} ({display_path(path)})"
        ) from exc


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:  # the reader checks every tensor's offsets against the file before it copies
        return load_file(str(path))
    except Exception as exc:
        raise CheckpointError(
            f"Expected a valid .safetensors file, but reading failed: {_describe(exc)} ({display_path(path)})"
        ) from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, unwrapped from ``params_ema``/``params``/``state_dict`` and ``module.``.

    Raises:
        CheckpointError: missing, of another kind, unreadable, holding code, not a state dict of text
            keys and tensors, or declaring tensors larger than their storage (see :func:`check_tensors`).
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "nothing"
        raise CheckpointError(f"Expected a checkpoint file, but {what} exists at {display_path(path)}")
    kind = checkpoint_kind(path)
    loaded = _load_safetensors(path) if kind == "safetensors" else _load_torch(path, kind)
    state = _unwrap(loaded, path)
    check_tensors(state, path)
    return state


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        key = next((k for k in WRAPPER_KEYS if k in loaded), None)
        if key is None:
            raise CheckpointError(
                f"Expected a state dict or one under {'/'.join(WRAPPER_KEYS)}, but found keys "
                f"{sorted(map(str, loaded))[:_MAX_LISTED_KEYS]} ({display_path(path)})"
            )
        loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(
            f"Expected a non-empty state dict of tensors, but got {type(loaded).__name__} ({display_path(path)})"
        )
    odd = next((key for key in loaded if not isinstance(key, str)), None)
    if odd is not None:
        raise CheckpointError(
            f"Expected a state dict with text keys, but got the {type(odd).__name__} key {odd!r} ({display_path(path)})"
        )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _is_state_dict(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())


def check_tensors(state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """Refuse tensors that declare more elements than their storage holds (expanded or overlapping
    views), and tensors that are not on the CPU; only shapes, strides and storage sizes are read.

    Raises:
        CheckpointError: naming the first such key.
    """
    for key, tensor in state.items():
        if tensor.device.type != "cpu" or tensor.is_sparse or tensor.is_quantized:
            raise CheckpointError(
                f"Expected dense CPU tensors, but {key} is {tensor.layout} on {tensor.device} ({display_path(path)})"
            )
        declared = tensor.numel() * tensor.element_size()
        held = tensor.untyped_storage().nbytes()
        if declared > held:
            raise CheckpointError(
                f"Expected tensors that hold their own elements, but {key} declares shape {tuple(tensor.shape)} "
                f"({declared:,} bytes) over {held:,} bytes of storage, an expanded tensor ({display_path(path)})"
            )


def _numbers(value: Any, name: str) -> Iterator[tuple[str, int]]:
    """Every integer of a config value, with its key name (bools are flags, not sizes)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield name, value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _numbers(item, name)


def check_config(arch: str, config: Mapping[str, Any], source: str) -> None:
    """Refuse a config whose numbers are out of range before anything is built from it.

    Raises:
        CheckpointError: a negative number, one above :data:`MAX_CONFIG_VALUE`, or more than
            :data:`MAX_BLOCKS` blocks (keys naming ``blk``/``block``) in all.
    """
    numbers = [pair for key, value in config.items() for pair in _numbers(value, key)]
    for key, value in numbers:
        if not 0 <= value <= MAX_CONFIG_VALUE:
            raise CheckpointError(
                f"Expected {arch} config values from 0 to {MAX_CONFIG_VALUE}, but {key} = {value:,} "
                f"({display_path(source)})"
            )
    blocks = sum(value for key, value in numbers if "blk" in key or "block" in key)
    if blocks > MAX_BLOCKS:
        raise CheckpointError(
            f"Expected at most {MAX_BLOCKS} blocks in a {arch} network, but its config declares {blocks:,} "
            f"({display_path(source)})"
        )


def build_skeleton(arch: str, config: Mapping[str, Any], source: str) -> torch.nn.Module:
    """``arch(config)`` on the meta device (shapes and key names, no memory) after :func:`check_config`.

    Raises:
        CheckpointError: the config is out of range, the constructor rejects it (``"width": 0``), or
            the network would hold more than :data:`MAX_PARAMETERS` parameters.
    """
    check_config(arch, config, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Initializing zero-element tensors is a no-op"
            skeleton = architectures.build_on_meta(arch, dict(config))
    except RestoreError:
        raise
    except Exception as exc:  # constructors reject odd values with ValueError, ZeroDivisionError...
        raise CheckpointError(
            f"Expected a config {arch} can be built from, but {dict(config)} fails: {_describe(exc)} "
            f"({display_path(source)})"
        ) from exc
    parameters = sum(parameter.numel() for parameter in skeleton.parameters())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"Expected at most {MAX_PARAMETERS:,} parameters, but {arch} {dict(config)} would hold {parameters:,} "
            f"({display_path(source)})"
        )
    return skeleton
