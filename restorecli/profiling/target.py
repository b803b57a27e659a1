"""What to profile: an architecture config, a zoo entry, or a checkpoint, resolved to one record.

The network comes from the zoo's loader as a :class:`~restorecli.zoo.descriptor.ModelDescriptor`,
the record inference runs, so a profile sees the same channels, padding rule and memory format.
Profiling needs no weights: parameters, MACs, latency and memory do not depend on weight values,
so the network is built on the ``meta`` device (shapes only, nothing allocated) and randomly
initialised on the measuring device only when latency or memory is measured. A weights file is
loaded strictly, which also checks that it fits.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from restorecli.errors import ConfigError
from restorecli.zoo import architectures, loader, pretrained
from restorecli.zoo.descriptor import ModelDescriptor

# A --config is typed by a person: numbers past these are typos or attacks. Block counts and levels
# bound the build time (a meta build takes milliseconds per block); widths only bound the numbers,
# since a wide network is still counted on the meta device and memory is checked before allocating.
# The official releases use at most 36 blocks, 4 levels and width 64. (Checkpoints get the tighter
# limits of restorecli.zoo.checkpoint: a file declares a network to build, not a what-if.)
MAX_BLOCKS = 1024
MAX_LEVELS = 16
MAX_INTEGER = 1 << 16
_BLOCK_KEY = re.compile(r"bl(oc)?k|group", re.IGNORECASE)


@dataclass(frozen=True)
class ProfileTarget:
    """A network to profile.

    Attributes:
        label: how reports name it (``restormer (deraining)``, a zoo name, or a checkpoint path).
        descriptor: the zoo's record of the network: on the ``meta`` device without weights, or the
            loaded weights on the CPU.
        weights: the weights file loaded into ``descriptor.module``, or None for random initialisation.
    """

    label: str
    descriptor: ModelDescriptor = field(repr=False, compare=False)
    weights: str | None = None

    @property
    def arch(self) -> str:
        """Architecture registry name."""
        return self.descriptor.arch

    @property
    def config(self) -> dict[str, Any]:
        """Full constructor keyword arguments."""
        return self.descriptor.config

    @property
    def in_channels(self) -> int:
        """Image channels the network takes."""
        return self.descriptor.in_channels

    @property
    def pad_multiple(self) -> int:
        """Inputs are padded bottom/right to a multiple of this, as inference does."""
        return self.descriptor.pad_multiple


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
        ConfigError: conflicting or missing selectors, a malformed JSON config, or config values
            out of range (see :func:`check_config_values`).
        UnknownModelError / CheckpointError: from the registry and the loader.
    """
    if arch is not None and model is not None:
        raise ConfigError(f"Expected either --arch or --model, but got both ({arch!r} and {model!r})")
    if config is not None and arch is None:
        raise ConfigError(f"Expected --arch with --config, but got --config {config!r} alone")
    if arch is not None:
        parsed = _parse_config(config)
        if isinstance(parsed, dict):
            check_config_values(parsed)
        kwargs = architectures.resolve_config(arch, parsed)
        label = f"{arch} ({_config_label(config, architectures.get_arch(arch).default_config)})"
        if weights is None:
            return target_from_config(arch, kwargs, label)
        state = loader.read_state_dict(weights)
        module, kwargs = loader.build_and_load(arch, kwargs, state, str(weights))
        return ProfileTarget(label, loader.describe(module, label, arch, kwargs), str(weights))
    if model is not None:
        if weights is not None:
            return ProfileTarget(model, loader.load_descriptor(model, weights=weights, progress=False), str(weights))
        entry = pretrained.get_entry(model)
        entry_arch = architectures.arch_variant(entry.arch, entry.variant) if entry.variant else entry.arch
        return target_from_config(entry_arch, entry.config, entry.name)
    if weights is not None:
        return ProfileTarget(str(weights), loader.load_descriptor(weights, progress=False), str(weights))
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


def check_config_values(config: Mapping[str, Any]) -> None:
    """Check the numbers of a typed config before anything is built from it.

    Block counts (keys naming blocks or groups, alone or per level) are integers from 0, at most
    :data:`MAX_BLOCKS` in all; other integers (widths, heads, channels, sizes) from 1 to
    :data:`MAX_INTEGER`; other numbers (expansion factors) finite and positive; lists hold at most
    :data:`MAX_LEVELS` values.

    Raises:
        ConfigError: the first value out of range, named by its key.
    """
    blocks = 0
    for key, value in config.items():
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_LEVELS:
            raise ConfigError(f"Expected at most {MAX_LEVELS} values per list in --config, but {key} has {len(items)}")
        counts_blocks = bool(_BLOCK_KEY.search(key))
        low = 0 if counts_blocks else 1
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            if isinstance(item, float) and not (math.isfinite(item) and 0 < item <= MAX_INTEGER):
                raise ConfigError(f"Expected a positive finite number in --config, but got {key}={value!r}")
            if isinstance(item, int) and not low <= item <= MAX_INTEGER:
                raise ConfigError(f"Expected integers from {low} to {MAX_INTEGER} in --config, but got {key}={value!r}")
            blocks += item if counts_blocks else 0
    if blocks > MAX_BLOCKS:
        raise ConfigError(f"Expected at most {MAX_BLOCKS} blocks in all in --config, but it declares {blocks:,}")


def target_from_config(
    arch: str, config: str | Mapping[str, Any] | None = None, label: str | None = None
) -> ProfileTarget:
    """A weightless target for ``arch(config)`` (labelled ``arch`` unless given), built on the meta device.

    Raises:
        ConfigError: the network cannot be built from ``config`` (the constructor's own complaint).
    """
    name = arch if label is None else label
    try:
        with warnings.catch_warnings(record=True):  # torch warns about empty layers; the check below names them
            descriptor = loader.build_descriptor(arch, config, name=name, device="meta")
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise ConfigError(f"Expected a config {arch} can be built from, but building it failed: {exc}") from exc
    empty = next((key for key, tensor in descriptor.module.named_parameters() if tensor.numel() == 0), None)
    if empty is not None:
        raise ConfigError(f"Expected every layer of {arch} to have weights, but the config leaves {empty} empty")
    return ProfileTarget(name, descriptor)


def instantiate(target: ProfileTarget, device: torch.device) -> ModelDescriptor:
    """The target's descriptor with its network in eval mode on ``device``, ready for the engine.

    Loaded weights are moved there; otherwise the network is built there directly with random
    weights, so a large model is never initialised on the CPU only to be copied.
    """
    if target.weights is not None:
        target.descriptor.module.to(device)
        return target.descriptor
    return loader.build_descriptor(target.arch, target.config, name=target.label, device=device)
