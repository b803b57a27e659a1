"""The one loader: a zoo name or a checkpoint path -> a ready :class:`ModelDescriptor` on the CPU.

Checkpoints are read without unpickling code (``torch.load(weights_only=True)`` or safetensors).
A path alone is enough: the architecture comes from a model card beside the file, from an explicit
``arch``/zoo entry, or is inferred from the state-dict keys and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from restorecli.engine.padding import PadMode
from restorecli.errors import CheckpointError, ConfigError, UnknownModelError, WeightsNotFoundError, display_path
from restorecli.zoo import architectures, download, pretrained
from restorecli.zoo.card import read_card
from restorecli.zoo.checkpoint import build_skeleton, read_state_dict
from restorecli.zoo.descriptor import ModelDescriptor

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
ONNX_SUFFIX = ".onnx"
_MAX_LISTED_KEYS = 5


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
    # Sized and compared on the meta device: nothing is allocated for a config the file does not fit.
    skeleton = build_skeleton(arch, kwargs, source)
    report = _mismatch_report(skeleton, state, allow_missing=allow_missing)
    if report:
        raise CheckpointError(
            f"Expected the weights to fit {arch} {kwargs}, but {report} ({source}){_guess_entry(state)}"
        )
    if allow_missing or _needs_its_constructor(skeleton):
        module = architectures.build_model(arch, kwargs)  # what the file lacks keeps its initialisation
        module.load_state_dict(state, strict=not allow_missing)
        return module.eval(), kwargs
    # The file sets every tensor: the skeleton takes copies of them (in its own dtypes; never the file's
    # memory-mapped pages, which a rewrite of the file would change under the model), skipping the
    # random initialisation they would overwrite. ``to_empty`` would cost a fresh process 0.45 s
    # more: allocating from meta tensors imports PyTorch's meta registrations (and sympy).
    own = skeleton.state_dict()
    copies = {
        key: tensor.to("cpu", own[key].dtype, memory_format=torch.contiguous_format, copy=True)
        for key, tensor in state.items()
    }
    skeleton.load_state_dict(copies, assign=True)
    return skeleton.eval(), kwargs


def _needs_its_constructor(module: torch.nn.Module) -> bool:
    """Whether only ``module``'s constructor can set it up: it has tensors its state dict leaves out
    (non-persistent buffers), or one tensor under two names (tied weights, which assigning the file's
    tensors one name at a time would untie)."""
    saved = module.state_dict(keep_vars=True)
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    unsaved = any(name not in saved for name, _ in module.named_buffers())
    return unsaved or len({id(tensor) for _, tensor in named}) < len(named)


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
        channels_last=spec.channels_last,
        scale=spec.scale(kwargs),
        extra=extra or {},
    )


def build_descriptor(
    arch: str,
    config: str | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    device: torch.device | str = "cpu",
) -> ModelDescriptor:
    """A descriptor of ``arch(config)`` with freshly initialised weights, built directly on ``device``.

    For work that needs no trained weights (profiling, tests): ``meta`` gives shapes without
    allocating, and a large network is never initialised on the CPU only to be copied elsewhere.
    """
    kwargs = architectures.resolve_config(arch, config)
    with torch.device(device):
        module = architectures.build_model(arch, kwargs).eval()
    return describe(module, name or arch, arch, kwargs)


def load_descriptor(
    name_or_path: str | Path,
    *,
    weights: Path | None = None,
    arch_from: str | None = None,
    variant: str | None = None,
    progress: bool = True,
) -> ModelDescriptor:
    """Load a zoo entry or a checkpoint path into a descriptor on the CPU, in eval mode.

    Args:
        name_or_path: a zoo entry name, a ``.pth``/``.pt``/``.safetensors`` file, or an ``.onnx`` file
            written by ``restore export`` (run by onnxruntime, :mod:`restorecli.export`).
        weights: explicit weight file for a zoo entry (skips the cache and download).
        arch_from: for a bare checkpoint, a zoo entry whose architecture and config to use
            instead of inferring them from the keys.
        variant: run the weights in this variant of their architecture (NAFNet: ``tlc``, its test-time
            local converter; ``plain`` the network itself; :func:`~restorecli.zoo.architectures.arch_variant`).
            None keeps the entry's choice.
        progress: show a progress bar when downloading.
    """
    text = str(name_or_path)
    if pretrained.has_entry(text):
        entry = pretrained.get_entry(text)
        path = resolve_weights(entry, weights, progress=progress)
        return _load_checkpoint(path, entry, variant, name=entry.name)
    path = Path(text).expanduser()
    if path.suffix.lower() == ONNX_SUFFIX:
        return _describe_onnx(path, variant)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_file():
        entry = pretrained.get_entry(arch_from) if arch_from else None
        return _load_checkpoint(path, entry, variant, name=str(path))
    raise UnknownModelError(pretrained.unknown_name_message(text))


def _describe_onnx(path: Path, variant: str | None) -> ModelDescriptor:
    """An exported ONNX graph, run by onnxruntime behind an ``nn.Module``; its metadata gives the constraints."""
    from restorecli.export.onnx_session import OnnxModule

    if not path.is_file():
        raise CheckpointError(f"Expected an ONNX file, but nothing exists at {path}")
    if variant is not None:
        raise ConfigError(
            f"Expected no architecture variant (--tlc/--no-tlc) for an ONNX graph (fixed at export), "
            f"but got {variant!r} ({path})"
        )
    module = OnnxModule(path)
    fields = module.facts.descriptor_fields(str(path))
    return ModelDescriptor(module=module, name=str(path), **fields, extra={"onnx": module.facts})


def _load_checkpoint(
    path: Path, entry: pretrained.PretrainedEntry | None, variant: str | None, name: str
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
        found = architectures.recognise_arch(state)
        if found is None:
            if variant is not None:
                raise CheckpointError(
                    f"Expected a restorecli architecture for the variant {variant!r}, but the file is not one ({path})"
                )
            return _describe_spandrel(state, name, extra, str(path))
        arch, config = found
        task = None
    if variant is None and entry is not None:
        variant = entry.variant
    if variant is not None:
        try:
            arch = architectures.arch_variant(arch, variant)
        except ConfigError as exc:
            raise ConfigError(f"{exc} ({display_path(path)})") from None
    module, kwargs = build_and_load(arch, config, state, str(path))
    pad_mode = card.pad_mode if card is not None else None
    return describe(module, name, arch, kwargs, task, extra, pad_mode)


def _describe_spandrel(
    state: Mapping[str, torch.Tensor], name: str, extra: dict[str, Any], source: str
) -> ModelDescriptor:
    """A descriptor for an architecture restorecli has no native loader for, detected by spandrel."""
    from restorecli.zoo import via_spandrel

    found = via_spandrel.detect(state, source)
    facts = via_spandrel.facts(found)
    return ModelDescriptor(
        module=via_spandrel.SpandrelModule(found),
        name=name,
        arch=facts["arch"],
        config={},
        task=facts["task"],
        in_channels=facts["in_channels"],
        out_channels=facts["out_channels"],
        pad_multiple=facts["pad_multiple"],
        pad_mode="reflect-replicate",  # as spandrel pads (reflection, then replication past the side)
        scale=facts["scale"],
        min_size=facts["min_size"],
        square=facts["square"],
        extra={**extra, "spandrel": facts},
    )


def inspect_file(path: Path) -> dict[str, Any]:
    """What a weights file is, as ``restore inspect`` prints it: architecture, task, scale, channels,
    size rule, parameter count, and licence and scores where a zoo entry or model card says them."""
    descriptor = load_descriptor(Path(path))
    facts: dict[str, Any] = {
        "file": str(path),
        "arch": descriptor.arch,
        "config": descriptor.config,
        "task": descriptor.task,
        "scale": descriptor.scale,
        "in_channels": descriptor.in_channels,
        "out_channels": descriptor.out_channels,
        "pad_multiple": descriptor.pad_multiple,
        "pad_mode": descriptor.pad_mode,
        "min_size": descriptor.min_size,
        "square": descriptor.square,
        "parameters": sum(p.numel() for p in descriptor.module.parameters()),
    }
    card = descriptor.extra.get("card")
    if "spandrel" in descriptor.extra:
        detected = descriptor.extra["spandrel"]
        facts.update(architecture=detected["arch_name"], purpose=detected["purpose"], tags=detected["tags"])
    else:
        matches = pretrained.entries_matching(descriptor.arch, descriptor.config)
        named = [entry for entry in matches if card is not None and entry.name == card.name]
        if matches:
            facts["zoo_entries"] = [entry.name for entry in matches]
            # The file's own entry when its card names one; else every licence the fitting entries carry
            # (one architecture and config can be several releases under different terms).
            licences = {entry.name: entry.license for entry in (named or matches)}
            facts["license"] = next(iter(licences.values())) if len(set(licences.values())) == 1 else licences
    if card is not None:
        facts["card"] = {"name": card.name, "score": card.measured_score(), "stages": len(card.chain())}
    return facts
