"""The model card: what a trained weight file is and how it was made, as one typed record.

``restore train`` writes it beside the weights (``<name>.json``); the zoo loader and ``restore models``
read it through :func:`read_card`, so the writer and the readers share one definition. A card records
the chain of training stages that led to the weights: a run that starts from another run's weights
(``model.weights`` in its recipe) copies that card's stages and appends its own.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from restorecli.engine.padding import PadMode
from restorecli.errors import CheckpointError
from restorecli.images import atomic_path


@dataclass(frozen=True)
class Validation:
    """Mean scores of the weights on a validation set (dB for PSNR), and of the degraded inputs."""

    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    images: int
    crop: int = 0
    source: str | None = None


@dataclass(frozen=True)
class Benchmark:
    """One row of a model's benchmark table: a validation set under one named degradation, restored.

    Written by the bench scripts that make the table (``bench/bench_denoise_levels.py``,
    ``bench/bench_derain_presets.py`` with ``--card``), so the card carries the numbers the README quotes.

    Attributes:
        case: the degradation, e.g. ``colour sigma 25`` or ``rain100h seed 1717``.
        input_psnr / psnr: mean PSNR (dB) of the degraded inputs and of the restored images.
        images: images scored.
        source: the clean images (a folder).
        protocol: how the inputs were made and scored, in words (the script names it).
    """

    case: str
    input_psnr: float
    psnr: float
    images: int
    source: str
    protocol: str


@dataclass(frozen=True)
class TrainingStage:
    """One training run of the chain: where it started and what it cost.

    Attributes:
        run: the run's output folder (``output.dir``), which names the stage.
        config: the architecture config name or kwargs the stage trained.
        weights_from: the weight file the stage started from (None: fresh initialisation).
        iterations / wall_time_s: steps taken and seconds spent.
        seed: the recipe's seed (patch order and degradations).
        data: the training data summary (folders, image count, degradation).
        psnr: the stage's final validation PSNR, when it was validated.
    """

    run: str
    config: str | dict[str, Any] | None
    weights_from: str | None
    iterations: int
    wall_time_s: float
    seed: int
    data: dict[str, Any]
    psnr: float | None = None


@dataclass(frozen=True)
class ModelCard:
    """A trained model's card: enough to rebuild the network and to tell where its weights came from."""

    name: str
    arch: str
    config: dict[str, Any]
    pad_mode: PadMode | None
    task: str | None
    recipe: dict[str, Any]
    data: dict[str, Any]
    iterations: int
    wall_time_s: float
    val: Validation | None
    created: str
    restorecli_version: str
    stages: tuple[TrainingStage, ...] = field(default_factory=tuple)
    benchmarks: tuple[Benchmark, ...] = field(default_factory=tuple)

    def this_stage(self) -> TrainingStage:
        """The run that wrote this card, as a stage of a longer chain."""
        model = self.recipe.get("model", {})
        return TrainingStage(
            run=str(self.recipe.get("output", {}).get("dir", self.name)),
            config=model.get("config"),
            weights_from=model.get("weights"),
            iterations=self.iterations,
            wall_time_s=self.wall_time_s,
            seed=int(self.recipe.get("seed", 0)),
            data=self.data.get("train", {}),
            psnr=self.val.psnr if self.val else None,
        )

    def chain(self) -> tuple[TrainingStage, ...]:
        """Every stage from the first run to this one (a card written before 0.2 holds only its own)."""
        return self.stages or (self.this_stage(),)

    def measured_score(self) -> str:
        """The validation result, as one line for tables."""
        if self.val is None:
            return "not validated"
        source = Path(self.val.source or "validation set").name
        return f"{source} {self.val.psnr:.2f} dB / {self.val.ssim:.3f} (input {self.val.input_psnr:.2f} dB)"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, as the card file stores it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str) -> ModelCard:
        """Validate parsed JSON into a card; ``source`` names the file in errors."""
        if "arch" not in raw or "config" not in raw:
            raise CheckpointError(f"Expected 'arch' and 'config' in the model card ({source})")
        if not isinstance(raw["config"], Mapping):
            raise CheckpointError(
                f"Expected the model card's config to be a table, but got {raw['config']!r} ({source})"
            )
        pad_modes = typing.get_args(PadMode)
        if raw.get("pad_mode") not in (None, *pad_modes):
            raise CheckpointError(
                f"Expected the model card's pad_mode among {list(pad_modes)}, but got {raw['pad_mode']!r} ({source})"
            )
        try:
            val = raw.get("val")
            return cls(
                name=str(raw.get("name", Path(source).stem)),
                arch=str(raw["arch"]),
                config=dict(raw["config"]),
                pad_mode=raw.get("pad_mode"),
                task=raw.get("task"),
                recipe=dict(raw.get("recipe") or {}),
                data=dict(raw.get("data") or {}),
                iterations=int(raw.get("iterations", 0)),
                wall_time_s=float(raw.get("wall_time_s", 0.0)),
                val=Validation(**val) if val else None,
                created=str(raw.get("created", "")),
                restorecli_version=str(raw.get("restorecli_version", "")),
                stages=tuple(TrainingStage(**stage) for stage in raw.get("stages") or ()),
                benchmarks=tuple(Benchmark(**row) for row in raw.get("benchmarks") or ()),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"Expected a model card as restore train writes it, but {exc} ({source})") from exc


def card_path(weights_path: Path) -> Path:
    """Where the card of a weight file lives: beside it, same stem, ``.json``."""
    return Path(weights_path).with_suffix(".json")


def read_card(weights_path: Path) -> ModelCard | None:
    """The card beside ``weights_path``, or None when there is none."""
    path = card_path(weights_path)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Expected a JSON model card, but reading failed: {exc} ({path})") from exc
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"Expected a JSON object in the model card, but got {type(raw).__name__} ({path})")
    return ModelCard.from_dict(raw, str(path))


def write_card(card: ModelCard, path: Path) -> None:
    """Write ``card`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")


def record_benchmarks(path: Path, rows: Sequence[Mapping[str, Any]], source: str, protocol: str) -> None:
    """Replace the benchmark table of the card at ``path`` (a card, or the weight file it sits beside).

    ``rows``: mappings with the :class:`Benchmark` fields ``case``, ``input_psnr``, ``psnr`` and
    ``images`` (other keys are ignored); ``source`` and ``protocol`` are the same for every row.
    """
    weights = Path(path).with_suffix(".safetensors")
    card = read_card(weights)
    if card is None:
        raise CheckpointError(f"Expected a model card to record benchmarks in, but found none ({card_path(weights)})")
    table = tuple(
        Benchmark(str(row["case"]), float(row["input_psnr"]), float(row["psnr"]), int(row["images"]), source, protocol)
        for row in rows
    )
    write_card(replace(card, benchmarks=table), card_path(weights))
