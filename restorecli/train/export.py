"""Export a run's EMA weights as ``<name>.safetensors`` plus the JSON model card the zoo loader reads.

The tensors keep the module's own state-dict keys, so ``restorecli.load_model(path)`` builds the
card's ``arch``/``config`` and loads them strictly. The card records how the weights were made
(resolved recipe, data, iterations, wall time) and their validation scores on the full validation
set (``validation.final_crop`` / ``final_max_images``), measured here with the EMA weights.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from restorecli import __version__
from restorecli.engine.device import resolve_device
from restorecli.engine.options import RunOptions
from restorecli.errors import CheckpointError
from restorecli.images import atomic_path
from restorecli.train import checkpoint as ckpt
from restorecli.train.data import build_validation_set
from restorecli.train.recipe import Recipe, parse_override, recipe_from_dict, set_value
from restorecli.train.validate import validate
from restorecli.zoo.architectures import get_arch
from restorecli.zoo.card import ModelCard, TrainingStage, Validation, read_card, write_card
from restorecli.zoo.loader import build_and_load, describe

TASK_BY_DEGRADATION = {"noise": "denoise", "blur": "deblur", "rain": "derain", "downscale": "upscale"}


@dataclass(frozen=True)
class ExportResult:
    """Paths of the exported weights and card, and the card's content."""

    weights: Path
    card: Path
    card_data: ModelCard


def task_of(recipe: Recipe) -> str | None:
    """The recipe's task, or the one its degradation implies (noise -> denoise, ...)."""
    if recipe.task is not None:
        return recipe.task
    return TASK_BY_DEGRADATION.get(recipe.degradation.kind) if recipe.degradation else None


def export_run(
    run_dir: Path, *, out_dir: Path | None = None, device: str | None = None, overrides: Sequence[str] = ()
) -> ExportResult:
    """Write the latest checkpoint's EMA weights and model card into ``out_dir`` (default: the run folder).

    Args:
        run_dir: a run folder holding ``checkpoints/``.
        out_dir: where to write ``<name>.safetensors`` and ``<name>.json``.
        device: device for the final validation (default: the recipe's).
        overrides: ``key.sub=value`` changes to the run's recipe before the final validation, e.g.
            ``model.pad_mode=reflect`` or ``validation.final_crop=256``; the card records the result.

    Raises:
        CheckpointError: the run has no checkpoint, or it does not fit its recorded architecture.
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(f"Expected a run folder with checkpoints/iter_*.pt, but found none ({run_dir})")
    state = ckpt.load_checkpoint(latest)
    raw = copy.deepcopy(state["recipe"])
    for override in overrides:
        set_value(raw, *parse_override(override))
    recipe = recipe_from_dict(raw, source=str(latest))
    spec = get_arch(state["arch"])
    model, _ = build_and_load(spec.name, state["config"], state["ema"], f"EMA weights of {latest}")

    _, mode = spec.padding(state["config"], recipe.model.pad_mode)
    val: Validation | None = None
    if recipe.validation is not None:
        section = dataclasses.replace(
            recipe.validation, crop=recipe.validation.final_crop, max_images=recipe.validation.final_max_images
        )
        target = resolve_device(device or recipe.runtime.device)
        items = build_validation_set(section, recipe, spec.channels(state["config"])[0])
        descriptor = describe(model.to(target), recipe.name, spec.name, state["config"], pad_mode=mode)
        scores = validate(
            descriptor,
            items,
            options=RunOptions(fallback=False),
            crop_border=section.crop_border,
            y_channel=section.y_channel,
        )
        val = Validation(**asdict(scores), crop=section.crop, source=section.clean or section.paired)

    card = ModelCard(
        name=recipe.name,
        arch=spec.name,
        config=state["config"],
        pad_mode=mode,  # how the zoo loader pads inputs for this model (the card's validation did so)
        task=task_of(recipe),
        recipe=raw,
        data=state["data"],
        iterations=int(state["iteration"]),
        wall_time_s=round(float(state["wall_time_s"]), 1),
        val=val,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        restorecli_version=__version__,
    )
    card = dataclasses.replace(card, stages=(*earlier_stages(recipe), card.this_stage()))
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    weights = out_dir / f"{recipe.name}.safetensors"
    card_path = out_dir / f"{recipe.name}.json"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt", "arch": spec.name, "name": recipe.name})
    write_card(card, card_path)
    return ExportResult(weights=weights, card=card_path, card_data=card)


def earlier_stages(recipe: Recipe) -> tuple[TrainingStage, ...]:
    """The chain of the weights a run started from (their card's stages), empty for a fresh start.

    Weights without a card beside them (an official checkpoint) start the chain with one stage that
    names the file.
    """
    source = recipe.model.weights
    if source is None:
        return ()
    parent = read_card(Path(source)) if Path(source).is_file() else None
    if parent is None:
        return (
            TrainingStage(run=source, config=None, weights_from=None, iterations=0, wall_time_s=0.0, seed=0, data={}),
        )
    return parent.chain()
