"""Training recipes: a TOML file kept in the repository, overridable from the command line.

A recipe is parsed into frozen dataclasses, so a typo (``ietrations``) or a wrong type is a
``ConfigError`` naming the key and the file, not a silent default. The resolved recipe is plain data
(:func:`recipe_to_dict`) stored in every checkpoint and model card, and :func:`recipe_from_dict`
rebuilds it, so a run can be exported or resumed from its own record.

Paths in a recipe (data folders, output folder) are relative to the working directory the command
runs in (the repository root for the shipped recipes), not to the recipe file.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from restorecli.data.degradations import make_params, size_factor
from restorecli.engine.padding import PadMode
from restorecli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

LossKind = Literal["l1", "charbonnier", "psnr"]
Precision = Literal["fp32", "bf16"]
InputFormat = Literal["png", "npy"]


@dataclass(frozen=True)
class ModelSection:
    """Which network to train: a zoo architecture and a named config or explicit kwargs.

    ``weights`` (a ``.pth``/``.pt``/``.safetensors`` file, e.g. an exported default or an official
    checkpoint) initialises the network for fine-tuning; it must fit the architecture exactly.
    ``pad_mode`` (``reflect`` or ``constant``) is how validation and, through the model card,
    inference pad an image to the architecture's size multiple; unset keeps the architecture's
    official rule (NAFNet pads with zeros, which leaves a dark edge for the network to see).
    ``grow`` lets ``weights`` come from a shallower config of the same architecture: tensors it
    lacks (the extra blocks) keep their fresh initialisation, and a fresh NAFNet block is the
    identity (its residual scales start at zero), so training starts from the trained network's output.
    """

    arch: str
    config: str | dict[str, Any] | None = None
    weights: str | None = None
    pad_mode: PadMode | None = None
    grow: bool = False


@dataclass(frozen=True)
class DegradationSection:
    """A synthetic degradation from :mod:`restorecli.data.degradations` (``noise``, ``blur``, ``rain``, ``downscale``).

    ``params`` holds the fields of that kind's parameter dataclass; missing fields keep its defaults.
    ``downscale`` (``params = { scale = 4 }``) trains super-resolution: the clean patch is the
    high-resolution target and its MATLAB-bicubic reduction the input.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """Training pairs: clean folders degraded on the fly, or a paired dataset folder.

    Attributes:
        clean: folders of clean images (needs a ``[degradation]`` section).
        paired: a dataset folder holding degraded and clean sibling folders matched by file stem
            (``input/`` + ``target/``, e.g. written by ``restore degrade`` or ``restore crop-patches``).
        dirs: the two sibling folder names under ``paired``: degraded first, clean second.
        patterns: per-folder file-stem templates with ``{id}`` where names differ between the folders
            (Rain100L: ``{ input = "rain-{id}", target = "norain-{id}" }``); plain stems otherwise.
        split: optional split list of ids for ``paired`` (one per line, as ``restore split`` writes).
        patch / batch: crop size and batch size (overridden per stage by ``schedule.stages``); for
            super-resolution the patch is the high-resolution target, a multiple of the scale.
        workers: DataLoader worker processes (0 = load in the training process).
        margin: extra context cropped around a patch before degrading it, so blur and rain near the
            patch border see real neighbouring pixels; the margin is cut away afterwards. Not used
            by ``downscale``, which must keep the patch and its reduction aligned.
        augment: random flips and 90-degree rotations.
        grey_fraction: share of clean patches turned grey (BT.601 luma in every channel) before they
            are degraded, so one colour network also learns grey scans and photos.
    """

    clean: tuple[str, ...] = ()
    paired: str | None = None
    dirs: tuple[str, str] = ("input", "target")
    patterns: dict[str, str] = field(default_factory=dict)
    split: str | None = None
    patch: int = 128
    batch: int = 8
    workers: int = 1
    margin: int = 16
    augment: bool = True
    grey_fraction: float = 0.0


@dataclass(frozen=True)
class Stage:
    """One step of progressive learning (Restormer): up to ``until`` iterations, use this patch and batch."""

    until: int
    patch: int
    batch: int


@dataclass(frozen=True)
class ScheduleSection:
    """Length of the run, linear warm-up then cosine decay, and progressive patch/batch stages."""

    iterations: int
    warmup: int = 0
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class OptimSection:
    """AdamW settings, gradient clipping (max global norm, 0 = off) and the EMA decay (0 = off)."""

    lr: float = 1e-3
    min_lr: float = 1e-7
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.9)
    grad_clip: float = 0.0
    ema: float = 0.999


@dataclass(frozen=True)
class LossSection:
    """Pixel loss plus an optional L1 term on the 2-D FFT (weight 0 = off)."""

    kind: LossKind = "l1"
    fft_weight: float = 0.0
    charbonnier_eps: float = 1e-3


@dataclass(frozen=True)
class ValidationSection:
    """Periodic PSNR/SSIM on a fixed set, with the EMA weights.

    Either a ``paired`` dataset folder (``dirs``, ``patterns``, ``split`` as in ``[data]``) or a ``clean`` folder
    degraded exactly as ``restore degrade --seed SEED`` would (``degradation`` defaults to the
    training kind with the degradation module's default parameters). ``input_format`` names the file
    ``restore degrade`` would have written: ``png`` rounds the degraded input to 8 bits; ``npy``
    keeps the raw float (for noise, the denoising benchmark protocol: unclipped noise from the
    legacy generator re-seeded per image).

    Each image is centre-cropped to ``crop`` (0 = whole image) after degrading, and at most
    ``max_images`` are used (0 = all), to keep periodic validation cheap. The model card's scores
    use ``final_crop`` and ``final_max_images`` instead (default: every whole image).

    For ``downscale`` (super-resolution), each high-resolution image is first cut to multiples of
    the scale (as SR benchmarks are made), ``degradation`` defaults to the training one, crops are
    high-resolution sizes (multiples of the scale), and the input scores are those of the bicubic
    upscaled input. The SR papers' protocol is ``y_channel = true`` and ``crop_border`` = scale.
    """

    every: int = 1000
    clean: str | None = None
    paired: str | None = None
    dirs: tuple[str, str] = ("input", "target")
    patterns: dict[str, str] = field(default_factory=dict)
    split: str | None = None
    degradation: DegradationSection | None = None
    seed: int = 0
    input_format: InputFormat = "png"
    max_images: int = 8
    crop: int = 256
    final_max_images: int = 0
    final_crop: int = 0
    crop_border: int = 0
    y_channel: bool = False


@dataclass(frozen=True)
class OutputSection:
    """Where the run lives (checkpoints, log, exported weights) and how often it writes."""

    dir: str = "runs/default"
    checkpoint_every: int = 1000
    keep: int = 2
    log_every: int = 50


@dataclass(frozen=True)
class RuntimeSection:
    """Device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), compute precision, and CPU threads.

    ``threads`` sets ``torch.set_num_threads`` for the run (0 = PyTorch's default, one per core).
    On a CPU shared with other busy processes, 1 thread can be several times faster than 2, because
    OpenMP threads waiting for a descheduled sibling spin instead of working. ``channels_last``
    trains in channels-last memory format; None follows the architecture's preference (NAFNet: on,
    about 20% less CPU time per training step here).
    """

    device: str = "auto"
    precision: Precision = "fp32"
    threads: int = 0
    channels_last: bool | None = None


@dataclass(frozen=True)
class Recipe:
    """A whole training run. ``name`` is the exported file stem; ``task`` goes into the model card."""

    name: str
    model: ModelSection
    data: DataSection
    schedule: ScheduleSection
    task: str | None = None
    seed: int = 0
    degradation: DegradationSection | None = None
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()
    validation: ValidationSection | None = None
    output: OutputSection = OutputSection()
    runtime: RuntimeSection = RuntimeSection()

    def stage_at(self, iteration: int) -> Stage:
        """Patch and batch size used for 0-based ``iteration``; the last stage extends to the end."""
        for stage in self.schedule.stages:
            if iteration < stage.until:
                return stage
        if self.schedule.stages:
            return self.schedule.stages[-1]
        return Stage(until=self.schedule.iterations, patch=self.data.patch, batch=self.data.batch)


def load_recipe(path: str | Path, overrides: Sequence[str] = (), settings: Mapping[str, Any] | None = None) -> Recipe:
    """Read a TOML recipe, apply ``key.sub=value`` overrides then typed ``settings``, and validate it.

    A recipe may start with ``extends = "other.toml"`` (a path relative to the recipe's own folder):
    it then holds only what differs from that recipe. Tables merge key by key, any other value
    (arrays included) replaces the inherited one, and chains of ``extends`` are followed.

    Args:
        path: the recipe file.
        overrides: ``--set`` strings, values typed by TOML (see :func:`parse_override`).
        settings: dotted keys with Python values (``{"schedule.iterations": 500}``), for CLI options.
    """
    path = Path(path)
    raw = _read_with_parents(path, ())
    for override in overrides:
        keys, value = parse_override(override)
        set_value(raw, keys, value)
    for key, value in (settings or {}).items():
        set_value(raw, key.split("."), value)
    return recipe_from_dict(raw, source=str(path))


def _read_with_parents(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The raw table of ``path`` laid over the recipes it ``extends``."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"Expected recipes that extend others without a cycle, but got {chain}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Expected a readable recipe file, but got {exc.strerror} ({path})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Expected valid TOML, but got {exc} ({path})") from exc
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"Expected extends to be a recipe file name, but got {parent!r} ({path})")
    return _merged(_read_with_parents(path.parent / parent, (*seen, path.resolve())), raw)


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it: tables merge recursively, other values replace."""
    merged = dict(base)
    for key, value in changes.items():
        inherited = merged.get(key)
        merged[key] = _merged(inherited, value) if isinstance(inherited, dict) and isinstance(value, dict) else value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into keys and a value typed by TOML (bare words are strings).

    ``schedule.iterations=500`` gives an int, ``optim.betas=[0.9,0.99]`` a list,
    ``output.dir=runs/x`` the string ``"runs/x"``.
    """
    key, sep, value = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise ConfigError(f"Expected an override shaped key.sub=value, but got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return [k.strip() for k in keys], parsed


def set_value(raw: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    """Set ``raw[k1][k2]...[kn] = value`` in a raw recipe mapping, creating tables as needed."""
    table = raw
    for key in keys[:-1]:
        child = table.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"Expected {key!r} to be a table, but it is {child!r} (setting {'.'.join(keys)})")
        table = child
    table[keys[-1]] = value


def recipe_from_dict(raw: Mapping[str, Any], source: str = "recipe") -> Recipe:
    """Validate a raw mapping (parsed TOML or :func:`recipe_to_dict` output) into a :class:`Recipe`."""
    recipe = _build(Recipe, raw, source, "")
    _check(recipe, source)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain JSON-able data (lists, dicts, numbers, strings, None) that round-trips through the parser."""
    return to_plain(dataclasses.asdict(recipe))


def to_plain(value: Any) -> Any:
    """Nested mappings and sequences as dicts and lists, as JSON and TOML hold them."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _build(cls: type, raw: Any, source: str, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Expected a table at [{where or 'top level'}], but got {raw!r} ({source})")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"Expected keys among {sorted(names)} in [{where or 'top level'}], but got {unknown} ({source})"
        )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            key = f"{where}.{f.name}" if where else f.name
            values[f.name] = _coerce(hints[f.name], raw[f.name], source, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"Expected a value for {where + '.' if where else ''}{f.name}, but it is missing ({source})"
            )
    return cls(**values)


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    """Check ``value`` against a field's type hint, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # an optional field: the one type's own message is the useful one
            return _coerce(options[0], value, source, key)
        for option in options:
            try:
                return _coerce(option, value, source, key)
            except ConfigError:
                continue
        raise _type_error(hint, value, source, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"Expected {key} to be one of {list(args)}, but got {value!r} ({source})")
        return value
    if origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        if variadic and args[0] is str and isinstance(value, str):
            return (value,)  # one folder may be written without the list brackets
        if not isinstance(value, (list, tuple)):
            raise _type_error(hint, value, source, key)
        if variadic:
            return tuple(_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"Expected {key} to hold {len(args)} values, but got {list(value)} ({source})")
        return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(hint, value, source, key)
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if hint is Any:
        return value
    raise _type_error(hint, value, source, key)


def _type_error(hint: Any, value: Any, source: str, key: str) -> ConfigError:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ConfigError(f"Expected {key} to be {name}, but got {value!r} ({source})")


def _check(recipe: Recipe, source: str) -> None:
    """Cross-field rules the types cannot say."""
    if recipe.model.grow and recipe.model.weights is None:
        raise ConfigError(f"Expected model.weights to grow from, but model.grow is set without them ({source})")
    data = recipe.data
    if bool(data.clean) == bool(data.paired):
        raise ConfigError(f"Expected one of data.clean or data.paired, but got both or neither ({source})")
    if data.clean and recipe.degradation is None:
        raise ConfigError(
            f"Expected a [degradation] section to degrade data.clean on the fly, but it is missing ({source})"
        )
    positive = {
        "schedule.iterations": recipe.schedule.iterations,
        "data.patch": data.patch,
        "data.batch": data.batch,
        "output.checkpoint_every": recipe.output.checkpoint_every,
        "output.log_every": recipe.output.log_every,
        "output.keep": recipe.output.keep,
    }
    for stage in recipe.schedule.stages:
        positive[f"stage patch (until {stage.until})"] = stage.patch
        positive[f"stage batch (until {stage.until})"] = stage.batch
    if recipe.validation is not None:
        positive["validation.every"] = recipe.validation.every
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"Expected {key} > 0, but got {value} ({source})")
    untils = [s.until for s in recipe.schedule.stages]
    if untils != sorted(set(untils)):
        raise ConfigError(f"Expected schedule.stages in increasing 'until' order, but got {untils} ({source})")
    if not 0 <= data.grey_fraction <= 1:
        raise ConfigError(f"Expected data.grey_fraction in [0, 1], but got {data.grey_fraction} ({source})")
    optim = recipe.optim
    if not 0 <= optim.ema < 1:
        raise ConfigError(f"Expected optim.ema in [0, 1), but got {optim.ema} ({source})")
    if not 0 < optim.lr or not 0 <= optim.min_lr <= optim.lr:
        raise ConfigError(
            f"Expected 0 < optim.lr and 0 <= optim.min_lr <= optim.lr (the schedule decays from lr to min_lr), "
            f"but got lr {optim.lr} and min_lr {optim.min_lr} ({source})"
        )
    if len(optim.betas) != 2 or not all(0 <= beta < 1 for beta in optim.betas):
        raise ConfigError(f"Expected optim.betas as two values in [0, 1), but got {list(optim.betas)} ({source})")
    at_least_zero = {
        "optim.weight_decay": optim.weight_decay,
        "optim.grad_clip": optim.grad_clip,
        "loss.fft_weight": recipe.loss.fft_weight,
    }
    if recipe.validation is not None:
        for name in ("max_images", "crop", "final_max_images", "final_crop", "crop_border", "seed"):
            at_least_zero[f"validation.{name}"] = getattr(recipe.validation, name)
    for key, value in at_least_zero.items():
        if value < 0:
            raise ConfigError(f"Expected {key} >= 0, but got {value} ({source})")
    if not 0 <= recipe.seed < 2**32:
        raise ConfigError(f"Expected seed in [0, 2**32), but got {recipe.seed} ({source})")
    if min(recipe.schedule.warmup, data.workers, data.margin, recipe.runtime.threads) < 0:
        raise ConfigError(f"Expected schedule.warmup, data.workers, data.margin and runtime.threads >= 0 ({source})")
    validation = recipe.validation
    if validation is not None:
        if bool(validation.clean) == bool(validation.paired):
            raise ConfigError(
                f"Expected one of validation.clean or validation.paired, but got both or neither ({source})"
            )
        if validation.clean and validation.degradation is None and recipe.degradation is None:
            raise ConfigError(
                f"Expected validation.degradation to degrade validation.clean, but it is missing ({source})"
            )
        for crop in ("crop", "final_crop"):  # 0: whole images, whose size only the images know
            size = getattr(validation, crop)
            if size and 2 * validation.crop_border >= size:
                raise ConfigError(
                    f"Expected validation.crop_border below half of validation.{crop}, but got "
                    f"{validation.crop_border} for {size} ({source})"
                )
    _check_scale(recipe, source)


def _size_factor(section: DegradationSection | None, source: str, where: str) -> int:
    """The degradation's size factor (1 when there is none); its settings are checked on the way."""
    if section is None:
        return 1
    try:
        return size_factor(make_params(section.kind, section.params))
    except ConfigError as exc:
        raise ConfigError(f"{exc} ([{where}] of {source})") from exc


def _check_scale(recipe: Recipe, source: str) -> None:
    """Super-resolution sizes: high-resolution patches and crops must shrink to whole pixels, aligned."""
    scale = _size_factor(recipe.degradation, source, "degradation")
    validation = recipe.validation
    if validation is not None and validation.clean and validation.degradation is not None:
        validation_scale = _size_factor(validation.degradation, source, "validation.degradation")
        if validation_scale != scale:
            raise ConfigError(
                f"Expected validation.degradation to shrink images as [degradation] does ({scale}x), "
                f"but got {validation_scale}x ({source})"
            )
    if scale == 1:
        return
    sizes = {
        "data.patch": recipe.data.patch,
        **{f"stage patch (until {s.until})": s.patch for s in recipe.schedule.stages},
    }
    if validation is not None:
        sizes.update({"validation.crop": validation.crop, "validation.final_crop": validation.final_crop})
    for key, size in sizes.items():
        if size % scale:
            raise ConfigError(
                f"Expected {key} to be a multiple of the downscaling scale {scale} (a high-resolution size that "
                f"shrinks to whole pixels), but got {size} ({source})"
            )
