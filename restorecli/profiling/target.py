"""What to profile: an architecture config, a zoo entry, or a checkpoint, resolved to one record.

Profiling needs no weights: parameters, MACs, latency and memory do not depend on weight values, so
the network is randomly initialised (or built on the meta device) unless a weights file is given,
in which case it is loaded strictly, which also checks that the file fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restorecli.errors import ConfigError
from restorecli.zoo import architectures, loader, pretrained
from restorecli.zoo.descriptor import ModelDescriptor


@dataclass(frozen=True)
class ProfileTarget:
    """A network to profile.

    Attributes:
        label: how reports name it (``restormer (deraining)``, a zoo name, or a checkpoint path).
        arch / config: architecture registry name and full constructor kwargs.
        in_channels: image channels the network takes.
        pad_multiple: inputs are padded bottom/right to a multiple of this, as inference does.
        weights: the weights file loaded into ``module``, or None for random initialisation.
        module: the loaded network on the CPU (only when ``weights`` is given).
    """

    label: str
    arch: str
    config: dict[str, Any]
    in_channels: int
    pad_multiple: int
    weights: str | None = None
    module: nn.Module | None = field(default=None, repr=False, compare=False)


def resolve_target(
    *,
    arch: str | None = None,
    config: str | None = None,
    model: str | None = None,
    weights: Path | None = None,
) -> ProfileTarget:
    """Resolve ``--arch [--config]``, ``--model`` or ``--weights`` alone into a target.

    Args:
        arch: architecture registry name (``restormer``, ``nafnet``, ``nafnet-local``).
        config: a named config of ``arch``, or a JSON object of constructor arguments.
        model: a zoo entry name (its architecture and config; TLC when the entry uses it).
        weights: a checkpoint to load; alone, its architecture comes from a model card or its keys.

    Raises:
        ConfigError: conflicting or missing selectors, or a malformed JSON config.
        UnknownModelError / CheckpointError: from the registry and the loader.
    """
    if arch is not None and model is not None:
        raise ConfigError(f"Expected either --arch or --model, but got both ({arch!r} and {model!r})")
    if config is not None and arch is None:
        raise ConfigError(f"Expected --arch with --config, but got --config {config!r} alone")
    if arch is not None:
        kwargs = architectures.resolve_config(arch, _parse_config(config))
        label = f"{arch} ({_config_label(config, architectures.get_arch(arch).default_config)})"
        if weights is None:
            return target_from_config(arch, kwargs, label)
        state = loader.read_state_dict(weights)
        module, kwargs = loader.build_and_load(arch, kwargs, state, str(weights))
        return target_from_config(arch, kwargs, label, weights, module)
    if model is not None:
        if weights is not None:
            descriptor = loader.load_descriptor(model, weights=weights, progress=False)
            return target_from_config(descriptor.arch, descriptor.config, model, weights, descriptor.module)
        entry = pretrained.get_entry(model)
        entry_arch = architectures.local_variant(entry.arch) if entry.tlc else entry.arch
        return target_from_config(entry_arch, architectures.resolve_config(entry_arch, entry.config), entry.name)
    if weights is not None:
        descriptor = loader.load_descriptor(weights, progress=False)
        return target_from_config(descriptor.arch, descriptor.config, str(weights), weights, descriptor.module)
    raise ConfigError("Expected a network: --arch NAME [--config NAME], --model NAME or --weights FILE, but got none")


def _parse_config(config: str | None) -> str | dict[str, Any] | None:
    """A config name stays a name; text starting with ``{`` is a JSON object of kwargs."""
    if config is None or not config.lstrip().startswith("{"):
        return config
    try:
        parsed = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Expected a config name or a JSON object, but got {config!r} ({exc.msg})") from None
    return parsed  # text starting with "{" that parses is an object


def _config_label(config: str | None, default: str) -> str:
    if config is None:
        return default
    return "custom" if config.lstrip().startswith("{") else config


def target_from_config(
    arch: str,
    kwargs: dict[str, Any],
    label: str | None = None,
    weights: Path | None = None,
    module: nn.Module | None = None,
) -> ProfileTarget:
    """A target for ``arch`` with full constructor ``kwargs`` (labelled ``arch`` unless given)."""
    spec = architectures.get_arch(arch)
    return ProfileTarget(
        label=arch if label is None else label,
        arch=arch,
        config=kwargs,
        in_channels=spec.channels(kwargs)[0],
        pad_multiple=spec.padding(kwargs)[0],
        weights=None if weights is None else str(weights),
        module=None if module is None else module.eval(),
    )


def describe(target: ProfileTarget, module: nn.Module, device: torch.device) -> ModelDescriptor:
    """The engine's record for ``module`` (already on ``device``), to run it as inference does."""
    spec = architectures.get_arch(target.arch)
    in_channels, out_channels = spec.channels(target.config)
    multiple, mode = spec.padding(target.config)
    return ModelDescriptor(
        module=module,
        name=target.label,
        arch=target.arch,
        config=target.config,
        task=None,
        in_channels=in_channels,
        out_channels=out_channels,
        pad_multiple=multiple,
        pad_mode=mode,
        local=spec.is_local(target.config),
        device=device,
    )


def instantiate(target: ProfileTarget, device: torch.device) -> nn.Module:
    """The target's network in eval mode on ``device`` (``meta`` for shapes only).

    Loaded weights are moved there (meta always gets a fresh, weightless build); otherwise the
    network is built there directly, so a large model is never initialised on the CPU only to be
    copied.
    """
    if target.module is not None and device.type != "meta":
        return target.module.to(device)
    with torch.device(device):
        return architectures.build_model(target.arch, target.config).eval()
