"""End-to-end training on tiny generated data: learning, exact resume, Ctrl-C, export through the zoo loader."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.errors import CheckpointError, ConfigError
from restorecli.images import write_array
from restorecli.train import checkpoint as ckpt
from restorecli.train.export import export_run
from restorecli.train.loop import train
from restorecli.train.recipe import Recipe, recipe_from_dict
from restorecli.train.trainer import Trainer
from restorecli.zoo.architectures import build_model
from restorecli.zoo.loader import load_descriptor

CARD_KEYS = {
    "name",
    "arch",
    "config",
    "pad_mode",
    "task",
    "recipe",
    "data",
    "iterations",
    "wall_time_s",
    "val",
    "created",
    "restorecli_version",
    "stages",
    "benchmarks",
}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:40]
    for i in range(4):
        freq = rng.uniform(3, 8, size=3)
        image = np.stack([0.5 + 0.4 * np.sin((x + 2 * y) / f + c) for c, f in enumerate(freq)], axis=-1)
        write_array(tmp_path / "clean" / f"c{i}.png", (image * 255).round().astype(np.uint8))
    return tmp_path


def make_recipe(root: Path, run: str = "run", iterations: int = 6, **sections: dict) -> Recipe:
    raw: dict = {
        "name": "tiny-denoise",
        "model": {"arch": "nafnet", "config": "tiny"},
        "data": {"clean": [str(root / "clean")], "patch": 16, "batch": 4, "workers": 0},
        "degradation": {"kind": "noise", "params": {"sigma_range": [10.0, 30.0]}},
        "schedule": {"iterations": iterations, "warmup": 1},
        "optim": {"lr": 3e-3, "ema": 0.9},
        "loss": {"kind": "l1"},
        "validation": {
            "every": 3,
            "clean": str(root / "clean"),
            "max_images": 2,
            "crop": 24,
            "final_max_images": 2,
            "degradation": {"kind": "noise", "params": {"sigma": 20.0}},
        },
        "output": {"dir": str(root / run), "checkpoint_every": 3, "log_every": 1},
        "runtime": {"device": "cpu", "threads": 1},
    }
    raw.update(sections)
    return recipe_from_dict(raw)


def log_lines(run_dir: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == kind]


def test_a_short_run_lowers_the_loss_and_exports_a_loadable_model(data: Path) -> None:
    recipe = make_recipe(data, iterations=24, schedule={"iterations": 24, "warmup": 2})
    result = train(recipe, progress=False)
    assert result.iteration == 24 and result.stopped is None
    losses = [line["loss"] for line in log_lines(result.run_dir, "train")]
    assert len(losses) == 24
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert [line["iteration"] for line in log_lines(result.run_dir, "val")] == [3, 6, 9, 12, 15, 18, 21, 24]

    export = result.export
    assert export is not None and export.weights.name == "tiny-denoise.safetensors"
    card = json.loads(export.card.read_text())
    assert set(card) == CARD_KEYS
    assert card["benchmarks"] == []  # the bench scripts' --card fills it
    assert card["arch"] == "nafnet" and card["task"] == "denoise" and card["iterations"] == 24
    assert card["config"]["width"] == 4 and card["config"]["enc_blk_nums"] == [1, 1]
    assert card["data"]["train"]["images"] == 4
    assert set(card["val"]) >= {"psnr", "ssim", "input_psnr", "input_ssim", "images"} and card["val"]["images"] == 2
    assert recipe_from_dict(card["recipe"]) == recipe
    (stage,) = card["stages"]  # a fresh start: the chain is this run alone
    assert stage["iterations"] == 24 and stage["weights_from"] is None and stage["seed"] == recipe.seed

    tensors = load_file(str(export.weights))
    reference = build_model(card["arch"], card["config"]).state_dict()
    assert sorted(tensors) == sorted(reference)  # safetensors stores keys sorted
    assert all(tensors[k].shape == v.shape for k, v in reference.items())

    descriptor = load_descriptor(export.weights)
    assert descriptor.arch == "nafnet" and descriptor.task == "denoise" and descriptor.config == card["config"]
    assert card["pad_mode"] == descriptor.pad_mode == "constant"  # NAFNet's official zeros: the recipe left it
    final = ckpt.load_checkpoint(ckpt.latest_checkpoint(result.run_dir))
    for key, value in descriptor.module.state_dict().items():
        assert torch.equal(value, final["ema"][key])


def test_the_recipe_pad_mode_reaches_validation_the_card_and_the_loader(data: Path) -> None:
    # Validation crops of 22 px are not a multiple of the tiny NAFNet's 4: the padding shows in the scores.
    validation = {
        "every": 2,
        "clean": str(data / "clean"),
        "max_images": 2,
        "crop": 22,
        "final_max_images": 2,
        "final_crop": 22,
        "degradation": {"kind": "noise", "params": {"sigma": 20.0}},
    }
    cards, weights = {}, {}
    for mode in ("constant", "reflect"):
        model = {"arch": "nafnet", "config": "tiny", "pad_mode": mode}
        recipe = make_recipe(data, run=mode, iterations=2, model=model, validation=validation)
        assert Trainer(recipe, torch.device("cpu")).pad_mode == mode
        export = train(recipe, progress=False).export
        assert export is not None
        cards[mode], weights[mode] = json.loads(export.card.read_text()), load_file(str(export.weights))
        assert cards[mode]["pad_mode"] == load_descriptor(export.weights).pad_mode == mode
    assert all(torch.equal(weights["constant"][key], weights["reflect"][key]) for key in weights["constant"])
    assert cards["constant"]["val"]["psnr"] != cards["reflect"]["val"]["psnr"]  # same weights, other borders
    # Exporting the zero-padded run again with the override reproduces the reflect run's card.
    again = export_run(data / "constant", out_dir=data / "again", overrides=["model.pad_mode=reflect"])
    assert again.card_data.pad_mode == "reflect" and again.card_data.recipe["model"]["pad_mode"] == "reflect"
    assert again.card_data.to_dict()["val"] == cards["reflect"]["val"]

    export.card.write_text(json.dumps({**cards["reflect"], "pad_mode": "zeros"}))
    with pytest.raises(CheckpointError, match="pad_mode.*'zeros'"):
        load_descriptor(export.weights)
    with pytest.raises(ConfigError, match="model.pad_mode to be one of"):
        make_recipe(data, model={"arch": "nafnet", "config": "tiny", "pad_mode": "zeros"})


def test_checkpoints_load_with_weights_only_and_keep_the_newest(data: Path) -> None:
    result = train(
        make_recipe(data, iterations=9, output={"dir": str(data / "run"), "checkpoint_every": 2, "keep": 2}),
        progress=False,
    )
    assert [i for i, _ in ckpt.list_checkpoints(result.run_dir)] == [8, 9]
    state = torch.load(ckpt.latest_checkpoint(result.run_dir), weights_only=True)
    assert state["iteration"] == 9 and state["ema_updates"] == 9
    assert state["sample"] == 9 * 4


def interrupt_at(monkeypatch: pytest.MonkeyPatch, iteration: int) -> None:
    """Deliver a real SIGINT while step ``iteration`` runs, as a user pressing Ctrl-C would."""
    real_step = Trainer.step

    def step(self: Trainer, degraded: torch.Tensor, clean: torch.Tensor) -> float:
        if self.iteration + 1 == iteration:
            signal.raise_signal(signal.SIGINT)
        return real_step(self, degraded, clean)

    monkeypatch.setattr(Trainer, "step", step)


def test_ctrl_c_finishes_the_step_saves_and_resume_matches_an_uninterrupted_run(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = {
        "iterations": 8,
        "warmup": 2,
        "stages": [{"until": 4, "patch": 8, "batch": 6}, {"until": 8, "patch": 16, "batch": 3}],
    }
    straight = train(make_recipe(data, "straight", schedule=stages), progress=False)
    assert straight.iteration == 8 and straight.stopped is None

    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)
        stopped = train(make_recipe(data, "resumed", schedule=stages), progress=False)
    assert stopped.stopped == "interrupted" and stopped.iteration == 5 and stopped.export is None
    assert stopped.checkpoint == ckpt.checkpoint_path(data / "resumed", 5)
    assert log_lines(data / "resumed", "stop")[-1]["reason"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    torch.manual_seed(123)  # the resumed run must not depend on the global RNG it starts with
    resumed = train(make_recipe(data, "resumed", schedule=stages), resume=True, progress=False)
    assert resumed.iteration == 8 and resumed.export is not None

    straight_losses = [line["loss"] for line in log_lines(data / "straight", "train")]
    resumed_losses = [line["loss"] for line in log_lines(data / "resumed", "train")]
    assert resumed_losses == straight_losses  # iterations 6..8 repeat bit for bit
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(data / "straight"))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(data / "resumed"))
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


def test_keyboard_interrupt_between_steps_saves_a_checkpoint(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_iter = torch.utils.data.DataLoader.__iter__
    fetched = {"count": 0}

    class Interrupting:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __next__(self) -> object:
            fetched["count"] += 1
            if fetched["count"] == 3:
                raise KeyboardInterrupt
            return next(self.inner)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__iter__", lambda self: Interrupting(real_iter(self)))
    result = train(make_recipe(data), progress=False)
    assert result.stopped == "interrupted" and result.iteration == 2
    assert ckpt.latest_checkpoint(result.run_dir) == ckpt.checkpoint_path(result.run_dir, 2)


def test_time_limit_stops_with_a_checkpoint(data: Path) -> None:
    result = train(make_recipe(data), progress=False, time_limit_s=0.0)
    assert result.stopped == "time limit" and result.iteration == 1
    assert ckpt.latest_checkpoint(result.run_dir) == ckpt.checkpoint_path(result.run_dir, 1)


def test_existing_checkpoints_need_resume(data: Path) -> None:
    recipe = make_recipe(data)
    train(recipe, progress=False, time_limit_s=0.0)
    with pytest.raises(ConfigError, match="--resume"):
        train(recipe, progress=False)


def test_cli_trains_and_exports_a_run(data: Path) -> None:
    recipe = data / "tiny.toml"
    recipe.write_text(
        f"""
name = "cli-tiny"
[model]
arch = "nafnet"
config = "tiny"
[data]
paired = "{data / "pairs"}"
patch = 16
batch = 2
workers = 0
[schedule]
iterations = 3
[runtime]
threads = 1
""",
        encoding="utf-8",
    )
    for i in range(2):
        clean = (np.random.default_rng(i).random((24, 24, 3)) * 255).astype(np.uint8)
        write_array(data / "pairs" / "target" / f"p{i}.png", clean)
        write_array(data / "pairs" / "input" / f"p{i}.png", clean // 2)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(recipe), "--out", str(data / "cli-run"), "--no-progress", "--json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["iteration"] == 3 and Path(summary["weights"]).is_file()
    assert json.loads(Path(summary["card"]).read_text())["val"] is None  # no [validation] section

    exported = runner.invoke(
        app, ["train", "--export", str(data / "cli-run"), "--out", str(data / "exported"), "--json"]
    )
    assert exported.exit_code == 0, exported.output
    assert (data / "exported" / "cli-tiny.safetensors").is_file() and (data / "exported" / "cli-tiny.json").is_file()

    again = runner.invoke(app, ["train", str(recipe), "--out", str(data / "cli-run")])
    assert again.exit_code == 1 and "--resume" in again.stderr
    empty = runner.invoke(app, ["train", "--export", str(data / "nowhere")])
    assert empty.exit_code == 1 and "checkpoints" in empty.stderr


def test_fine_tuning_starts_from_the_given_weights(data: Path, tmp_path: Path) -> None:
    start = build_model("nafnet", "tiny")
    with torch.no_grad():
        for parameter in start.parameters():
            parameter.add_(0.5)
    weights = tmp_path / "start.pth"
    torch.save({"params": start.state_dict()}, weights)
    recipe = make_recipe(data, "tuned", model={"arch": "nafnet", "config": "tiny", "weights": str(weights)})
    trainer = Trainer(recipe, torch.device("cpu"))
    for key, value in start.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value)
        assert torch.equal(trainer.ema.state[key], value.float())


def test_fine_tuning_weights_of_another_architecture_are_refused(data: Path, tmp_path: Path) -> None:
    weights = tmp_path / "restormer.pth"
    torch.save(build_model("restormer", "tiny").state_dict(), weights)
    recipe = make_recipe(data, "bad", model={"arch": "nafnet", "config": "tiny", "weights": str(weights)})
    with pytest.raises(CheckpointError, match="Expected the weights to fit nafnet"):
        Trainer(recipe, torch.device("cpu"))


def test_growing_a_trained_network_into_a_deeper_config_keeps_its_output(data: Path, tmp_path: Path) -> None:
    shallow = build_model("nafnet", "tiny").eval()
    with torch.no_grad():
        for name, parameter in shallow.named_parameters():
            if name.endswith(("beta", "gamma")):
                parameter.fill_(0.3)  # trained blocks are not identities
    weights = tmp_path / "shallow.pth"
    torch.save(shallow.state_dict(), weights)
    deeper = {"width": 4, "enc_blk_nums": [1, 3], "middle_blk_num": 2, "dec_blk_nums": [1, 1]}
    model = {"arch": "nafnet", "config": deeper, "weights": str(weights)}
    with pytest.raises(CheckpointError, match="missing: encoders.1.1"):
        Trainer(make_recipe(data, "strict", model=model), torch.device("cpu"))
    trainer = Trainer(make_recipe(data, "grown", model={**model, "grow": True}), torch.device("cpu"))
    grown = trainer.model.eval()
    added = ("encoders.1.1.", "encoders.1.2.", "middle_blks.1.")  # enc [1, 1] -> [1, 3], middle 1 -> 2
    assert trainer.fresh_tensors == sorted(key for key in grown.state_dict() if key.startswith(added))
    assert len(trainer.fresh_tensors) > 0
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(image), shallow(image), rtol=0, atol=1e-6)
    # The run's log names them once, at the fresh start, not on resume.
    recipe = make_recipe(data, "grown-run", iterations=2, model={**model, "grow": True})
    train(recipe, progress=False)
    train(make_recipe(data, "grown-run", iterations=3, model={**model, "grow": True}), resume=True, progress=False)
    (logged,) = log_lines(data / "grown-run", "grow")
    assert logged["weights"] == str(weights)
    assert logged["fresh"] == trainer.fresh_tensors
    # Grow still refuses what does not fit: another width.
    other = {"arch": "nafnet", "config": {**deeper, "width": 8}, "weights": str(weights), "grow": True}
    with pytest.raises(CheckpointError, match="mis-shaped"):
        Trainer(make_recipe(data, "wider", model=other), torch.device("cpu"))


def test_grow_needs_weights(data: Path) -> None:
    with pytest.raises(ConfigError, match="model.grow is set without them"):
        make_recipe(data, "nothing", model={"arch": "nafnet", "config": "tiny", "grow": True})


def test_a_run_from_exported_weights_records_the_whole_chain(data: Path) -> None:
    first = train(make_recipe(data, "first", iterations=3), progress=False).export
    assert first is not None
    model = {"arch": "nafnet", "config": "tiny", "weights": str(first.weights)}
    second = train(make_recipe(data, "second", iterations=2, model=model, seed=7), progress=False).export
    assert second is not None
    stages = json.loads(second.card.read_text())["stages"]
    assert [stage["iterations"] for stage in stages] == [3, 2]
    assert [stage["run"] for stage in stages] == [str(data / "first"), str(data / "second")]
    assert stages[0]["weights_from"] is None and stages[1]["weights_from"] == str(first.weights)
    assert stages[1]["seed"] == 7 and stages[1]["data"]["images"] == stages[0]["data"]["images"]


def test_a_resumed_run_takes_the_recipes_optimiser_settings(data: Path) -> None:
    """``--resume --set optim.lr=...`` (what a non-finite loss asks for) changes the learning rate from the
    next step on, where the schedule stands; the checkpoint's moment estimates are kept."""
    train(make_recipe(data, "run", iterations=6), progress=False, time_limit_s=0.0)  # stops after step 1
    lower = {"lr": 3e-4, "ema": 0.9, "weight_decay": 0.25, "betas": [0.8, 0.95]}
    trainer = Trainer(make_recipe(data, "run", iterations=6, optim=lower), torch.device("cpu"))
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(data / "run"))
    trainer.load_state_dict(state, data / "run")
    group = trainer.optimizer.param_groups[0]
    factor = trainer.scheduler.lr_lambdas[0](trainer.scheduler.last_epoch)
    assert group["lr"] == pytest.approx(3e-4 * factor) and group["initial_lr"] == 3e-4
    assert (group["weight_decay"], group["betas"]) == (0.25, (0.8, 0.95))
    assert torch.equal(trainer.optimizer.state_dict()["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    trainer.scheduler.step()
    assert group["lr"] == pytest.approx(3e-4 * trainer.scheduler.lr_lambdas[0](trainer.scheduler.last_epoch))


def test_a_failing_validation_keeps_the_steps_before_it(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = make_recipe(data, "run", iterations=6, output={"dir": str(data / "run"), "checkpoint_every": 6})

    def fails(self: Trainer, *args: object) -> object:
        raise ConfigError("validation failed")

    monkeypatch.setattr(Trainer, "validate", fails)
    with pytest.raises(ConfigError, match="validation failed"):
        train(recipe, progress=False)
    assert ckpt.latest_checkpoint(data / "run") == ckpt.checkpoint_path(data / "run", 3)  # validation every 3


def test_resuming_removes_the_temporary_file_of_a_killed_checkpoint_write(data: Path) -> None:
    recipe = make_recipe(data, "run", iterations=6)
    train(recipe, progress=False, time_limit_s=0.0)  # a checkpoint at iteration 1
    folder = ckpt.checkpoint_path(data / "run", 2).parent
    leftover = folder / f".{ckpt.checkpoint_path(data / 'run', 2).stem}.k1ll3d00.tmp.pt"
    leftover.write_bytes(b"half a checkpoint")
    unrelated = folder / "notes.txt"
    unrelated.write_text("mine")
    train(recipe, resume=True, progress=False)
    assert not leftover.exists() and unrelated.exists()
