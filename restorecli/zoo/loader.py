"""The one loader: a zoo name or a checkpoint path -> a ready :class:`ModelDescriptor` on the CPU.

Checkpoints are read without unpickling code (``torch.load(weights_only=True)`` or safetensors).
A path alone is enough: the architecture comes from a model card beside the file, from an explicit
``arch``/zoo entry, or is inferred from the state-dict keys and shapes.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from restorecli.engine.padding import PadMode
from restorecli.errors import CheckpointError, UnknownModelError, WeightsNotFoundError
from restorecli.zoo import architectures, download, pretrained
from restorecli.zoo.card import read_card
from restorecli.zoo.descriptor import ModelDescriptor

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
_MAX_LISTED_KEYS = 5


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, unwrapped from ``params_ema``/``params``/``state_dict`` and ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Expected a checkpoint file, but nothing exists at {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            loaded: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"Expected a valid .safetensors file, but reading failed: {exc} ({path})") from exc
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"Expected a checkpoint of plain tensors, but it holds pickled objects that weights_only "
                f"loading refuses to execute ({path})"
            ) from exc
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"Expected a PyTorch checkpoint, but reading failed: {exc} ({path})") from exc
    return _unwrap(loaded, path)


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        key = next((k for k in _WRAPPER_KEYS if k in loaded), None)
        if key is None:
            raise CheckpointError(
                f"Expected a state dict or one under {'/'.join(_WRAPPER_KEYS)}, but found keys "
                f"{sorted(map(str, loaded))[:_MAX_LISTED_KEYS]} ({path})"
            )
        loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(f"Expected a non-empty state dict of tensors, but got {type(loaded).__name__} ({path})")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def _is_state_dict(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())


def resolve_weights(entry: pretrained.PretrainedEntry, weights: Path | None = None, *, progress: bool = True) -> Path:
    """Find an entry's weight file: explicit path, local folders, or a verified download."""
    if weights is not None:
        if not Path(weights).is_file():
            raise WeightsNotFoundError(f"Expected a weights file, but nothing exists at {weights}")
        return Path(weights)
    local = download.find_local(entry.filename)
    if local is not None:
        return local
    target = download.cache_dir() / entry.filename
    if entry.url is None:
        raise WeightsNotFoundError(
            f"Expected the weights of {entry.name} at {download.SHIPPED_WEIGHTS_DIR / entry.filename}, but the file "
            f"is missing; {entry.origin}"
        )
    return download.download(entry.url, target, sha256=entry.sha256, progress=progress)


def _mismatch_report(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, allow_missing: bool = False) -> str:
    expected = module.state_dict()
    missing = [] if allow_missing else [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_MAX_LISTED_KEYS])}{more}")
    return "; ".join(parts)


def _guess_entry(state: Mapping[str, torch.Tensor]) -> str:
    try:
        arch, kwargs = architectures.infer_arch(state)
    except CheckpointError:
        return ""
    matches = pretrained.entries_matching(arch, kwargs)
    if matches:
        return f"; the file looks like {arch} and fits zoo entries {', '.join(e.name for e in matches)}"
    return f"; the file looks like {arch} with config {kwargs}"


def build_and_load(
    arch: str,
    config: str | Mapping[str, Any] | None,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    allow_missing: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build ``arch(config)`` and load ``state`` strictly; on mismatch list the offending keys.

    ``allow_missing`` lets the network have tensors ``state`` lacks (they keep their initialisation),
    for growing a trained network into a deeper config; every tensor ``state`` has must still fit.
    """
    kwargs = architectures.resolve_config(arch, config)
    module = architectures.build_model(arch, kwargs)
    report = _mismatch_report(module, state, allow_missing=allow_missing)
    if report:
        raise CheckpointError(
            f"Expected the weights to fit {arch} {kwargs}, but {report} ({source}){_guess_entry(state)}"
        )
    module.load_state_dict(state, strict=not allow_missing)
    return module.eval(), kwargs


def describe(
    module: torch.nn.Module,
    name: str,
    arch: str,
    kwargs: dict[str, Any],
    task: str | None = None,
    extra: dict[str, Any] | None = None,
    pad_mode: PadMode | None = None,
) -> ModelDescriptor:
    """Wrap a built module in the descriptor the engine reads (constraints from its ArchSpec).

    ``pad_mode`` overrides the architecture's official padding mode (a model card's choice).
    """
    spec = architectures.get_arch(arch)
    in_channels, out_channels = spec.channels(kwargs)
    multiple, mode = spec.padding(kwargs, pad_mode)
    return ModelDescriptor(
        module=module,
        name=name,
        arch=arch,
        config=kwargs,
        task=task,
        in_channels=in_channels,
        out_channels=out_channels,
        pad_multiple=multiple,
        pad_mode=mode,
        local=spec.is_local(kwargs),
        device=torch.device("cpu"),
        channels_last=spec.channels_last,
        extra=extra or {},
    )


def load_descriptor(
    name_or_path: str | Path,
    *,
    weights: Path | None = None,
    arch_from: str | None = None,
    tlc: bool | None = None,
    progress: bool = True,
) -> ModelDescriptor:
    """Load a zoo entry or a checkpoint path into a descriptor on the CPU, in eval mode.

    Args:
        name_or_path: a zoo entry name, or a ``.pth``/``.pt``/``.safetensors`` file.
        weights: explicit weight file for a zoo entry (skips the cache and download).
        arch_from: for a bare checkpoint, a zoo entry whose architecture and config to use
            instead of inferring them from the keys.
        tlc: force the NAFNet test-time local converter on/off (None keeps the entry's choice).
        progress: show a progress bar when downloading.
    """
    text = str(name_or_path)
    if pretrained.has_entry(text):
        entry = pretrained.get_entry(text)
        path = resolve_weights(entry, weights, progress=progress)
        return _load_checkpoint(path, entry, tlc, name=entry.name)
    path = Path(text).expanduser()
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file():
        entry = pretrained.get_entry(arch_from) if arch_from else None
        return _load_checkpoint(path, entry, tlc, name=str(path))
    raise UnknownModelError(pretrained.unknown_name_message(text))


def _load_checkpoint(
    path: Path, entry: pretrained.PretrainedEntry | None, tlc: bool | None, name: str
) -> ModelDescriptor:
    state = read_state_dict(path)
    card = read_card(path)
    extra: dict[str, Any] = {"weights": str(path)}
    if card is not None:
        extra["card"] = card
    if entry is not None:
        arch, config, task = entry.arch, entry.config, entry.task
        extra.update(entry.display_facts())
    elif card is not None:
        arch, config, task = card.arch, card.config, card.task
    else:
        arch, config = architectures.infer_arch(state)
        task = None
    use_tlc = entry.tlc if (tlc is None and entry is not None) else bool(tlc)
    arch = architectures.local_variant(arch) if use_tlc else arch
    module, kwargs = build_and_load(arch, config, state, str(path))
    pad_mode = card.pad_mode if card is not None else None
    return describe(module, name, arch, kwargs, task, extra, pad_mode)
