"""Recipes: parsing, typed overrides, validation errors, round trip, and the shipped recipes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.errors import ConfigError
from restorecli.train.recipe import Stage, load_recipe, parse_override, recipe_from_dict, recipe_to_dict

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

MINIMAL = """
name = "m"
[model]
arch = "nafnet"
config = "tiny"
[data]
clean = ["clean"]
[degradation]
kind = "noise"
[schedule]
iterations = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("task", ["denoise", "derain", "deblur"])
def test_shipped_recipes_parse_and_validate_on_kodak(task: str) -> None:
    recipe = load_recipe(RECIPES / f"{task}.toml")
    assert recipe.task == task
    assert recipe.model.arch == "nafnet"
    assert recipe.data.clean == ("../shared/data/train/CBSD432",)
    assert recipe.validation is not None and recipe.validation.clean == "../shared/data/val/Kodak24"
    assert recipe.validation.seed == 0
    assert recipe.output.dir == f"runs/{task}"


def test_denoise_recipe_is_blind_0_to_50_and_validates_at_sigma_25() -> None:
    recipe = load_recipe(RECIPES / "denoise.toml")
    assert recipe.degradation is not None and recipe.degradation.params == {"sigma_range": [0.0, 50.0]}
    assert recipe.validation is not None and recipe.validation.degradation is not None
    assert recipe.validation.degradation.params == {"sigma": 25.0}


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("schedule.iterations=500", ["schedule", "iterations"], 500),
        ("optim.lr=5e-4", ["optim", "lr"], 5e-4),
        ("optim.betas=[0.9, 0.99]", ["optim", "betas"], [0.9, 0.99]),
        ("data.augment=false", ["data", "augment"], False),
        ("runtime.channels_last=true", ["runtime", "channels_last"], True),
        ("output.dir=runs/x", ["output", "dir"], "runs/x"),
        ('name="with spaces"', ["name"], "with spaces"),
        ("degradation.params={sigma = 25}", ["degradation", "params"], {"sigma": 25}),
    ],
)
def test_parse_override_types_values_by_toml(text: str, keys: list[str], value: object) -> None:
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("text", ["iterations", "=5", "a..b=1"])
def test_parse_override_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override(text)


def test_overrides_and_settings_apply_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(
        path, ["schedule.iterations=20", "optim.lr=0.01", "data.patch=64"], {"schedule.iterations": 30}
    )
    assert recipe.schedule.iterations == 30
    assert recipe.optim.lr == 0.01
    assert recipe.data.patch == 64


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"ietrations.*recipe\.toml"):
        load_recipe(path, ["schedule.ietrations=5"])


def test_a_single_clean_folder_may_be_a_plain_string(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL.replace('clean = ["clean"]', 'clean = "photos"')))
    assert recipe.data.clean == ("photos",)


def test_wrong_type_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="schedule.iterations to be int"):
        load_recipe(path, ["schedule.iterations=ten"])
    with pytest.raises(ConfigError, match="loss.kind to be one of"):
        load_recipe(path, ["loss.kind=l3"])


def test_clean_and_paired_are_exclusive(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="one of data.clean or data.paired"):
        load_recipe(path, ["data.paired=pairs"])


def test_clean_data_needs_a_degradation(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('[degradation]\nkind = "noise"\n', ""))
    with pytest.raises(ConfigError, match=r"\[degradation\]"):
        load_recipe(path)


def test_stages_must_increase(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="increasing"):
        load_recipe(path, ["schedule.stages=[{until=8, patch=32, batch=2}, {until=4, patch=16, batch=4}]"])


def test_round_trip_through_plain_data(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES / "deblur.toml")
    plain = recipe_to_dict(recipe)
    assert json.loads(json.dumps(plain)) == plain
    assert recipe_from_dict(plain) == recipe


def test_stage_at_follows_the_progressive_schedule(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    flat = load_recipe(path)
    assert flat.stage_at(0) == Stage(until=10, patch=128, batch=8)
    staged = load_recipe(path, ["schedule.stages=[{until=3, patch=16, batch=8}, {until=6, patch=32, batch=2}]"])
    assert [staged.stage_at(i).patch for i in range(8)] == [16, 16, 16, 32, 32, 32, 32, 32]
    assert [staged.stage_at(i).batch for i in (0, 3, 9)] == [8, 2, 2]


def test_cli_dry_run_prints_the_resolved_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(path),
            "--dry-run",
            "--iterations",
            "7",
            "--out",
            "runs/t",
            "--set",
            "optim.ema=0.9",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["schedule"]["iterations"] == 7
    assert resolved["output"]["dir"] == "runs/t"
    assert resolved["optim"]["ema"] == 0.9
    assert resolved["runtime"]["threads"] == 1


def test_cli_reports_recipe_errors_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    result = CliRunner().invoke(app, ["train", str(path), "--dry-run", "--set", "optim.nope=1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Expected keys among")
    missing = CliRunner().invoke(app, ["train", str(tmp_path / "absent.toml")])
    assert missing.exit_code == 1 and "readable recipe file" in missing.stderr
    neither = CliRunner().invoke(app, ["train"])
    assert neither.exit_code == 1 and "recipe file" in neither.stderr


def test_a_recipe_extends_another_and_overrides_what_differs(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(
        'name = "base"\nseed = 1\n[model]\narch = "nafnet"\nconfig = "tiny"\n'
        '[data]\nclean = ["a", "b"]\npatch = 32\nbatch = 4\n'
        '[degradation]\nkind = "noise"\nparams = { sigma = 25.0 }\n[schedule]\niterations = 10\n',
        encoding="utf-8",
    )
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.toml"
    child.write_text('extends = "../base.toml"\nseed = 2\n[data]\nclean = ["c"]\nbatch = 8\n', encoding="utf-8")
    grandchild = tmp_path / "sub" / "grand.toml"
    grandchild.write_text('extends = "child.toml"\n[data]\npatch = 64\n', encoding="utf-8")

    recipe = load_recipe(grandchild, overrides=["data.batch=2"])
    assert recipe.name == "base" and recipe.seed == 2 and recipe.model.config == "tiny"
    assert recipe.data.clean == ("c",) and recipe.data.patch == 64 and recipe.data.batch == 2
    assert recipe.degradation is not None and recipe.degradation.params == {"sigma": 25.0}


def test_extends_cycles_and_missing_parents_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="without a cycle"):
        load_recipe(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('extends = "nowhere.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="nowhere.toml"):
        load_recipe(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "0 < optim.lr"),
        ("optim.lr=0", "0 < optim.lr"),
        ("optim.min_lr=0.1", "min_lr <= optim.lr"),
        ("optim.betas=[1.5, 0.9]", "optim.betas as two values in"),
        ("optim.weight_decay=-0.1", "optim.weight_decay >= 0"),
        ("optim.grad_clip=-1", "optim.grad_clip >= 0"),
        ("loss.fft_weight=-5", "loss.fft_weight >= 0"),
        ("seed=-1", "seed in"),
        ("validation.max_images=-1", "validation.max_images >= 0"),
        ("validation.crop=-8", "validation.crop >= 0"),
        ("validation.crop_border=30", "crop_border below half of validation.crop"),
    ],
)
def test_values_training_would_fail_on_later_are_refused_up_front(tmp_path: Path, override: str, message: str) -> None:
    """Each of these trained for a while and then raised a traceback (or trained nothing, or decayed the
    learning rate upwards); the recipe check names them before any work, with the file."""
    path = write(tmp_path, MINIMAL + '[validation]\nclean = "val"\ncrop = 48\n')
    load_recipe(path)  # valid as written
    with pytest.raises(ConfigError, match=rf"{re.escape(message)}.*recipe\.toml"):
        load_recipe(path, [override])
