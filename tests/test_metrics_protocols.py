"""Paper protocols: presets, their place in the report, and the zoo scores that name them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.errors import ConfigError
from restorecli.images import read_array, write_array
from restorecli.metrics import PROTOCOLS, EvalSettings, psnr, ssim, ssim3d
from restorecli.zoo import pretrained

runner = CliRunner()


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(11)
    for index in range(2):
        clean = rng.integers(0, 256, (26, 30, 3), dtype=np.uint8)
        noisy = np.clip(clean + rng.normal(0, 9, clean.shape), 0, 255).round().astype(np.uint8)
        write_array(tmp_path / "gt" / f"p{index}.png", clean)
        write_array(tmp_path / "pred" / f"p{index}.png", noisy)
    return tmp_path / "pred", tmp_path / "gt"


def _loaded(pred_dir: Path, gt_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_array(path), read_array(gt_dir / path.name)) for path in sorted(pred_dir.iterdir())]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_protocol_makes_valid_settings(name: str) -> None:
    settings = EvalSettings.for_protocol(name, num_classes=2)
    assert settings.protocol == name and settings.metrics == PROTOCOLS[name].metrics
    assert settings.convention([255.0])["protocol_source"] == PROTOCOLS[name].source


def test_presets_set_what_the_papers_use() -> None:
    derain = EvalSettings.for_protocol("restormer-derain")
    assert (derain.y_channel, derain.round_y, derain.crop_border, derain.metrics) == (True, True, 0, ("psnr", "ssim"))
    for name in ("nafnet-sidd", "nafnet-gopro", "restormer-gopro"):
        preset = EvalSettings.for_protocol(name)
        assert (preset.y_channel, preset.crop_border, preset.metrics) == (False, 0, ("psnr", "ssim3d"))
    for scale in (2, 3, 4):
        sr = EvalSettings.for_protocol(f"sr-x{scale}")
        assert (sr.y_channel, sr.round_y, sr.crop_border) == (True, False, scale)
    assert EvalSettings.for_protocol("denoise-rgb").crop_border == 0


def test_unknown_protocol_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="did you mean nafnet-sidd"):
        EvalSettings.for_protocol("nafnet-sid")


def test_every_zoo_score_names_a_known_protocol() -> None:
    for entry in pretrained.ENTRIES:
        if entry.protocol is None:
            assert "no PSNR" in entry.paper_score, entry.name  # only entries whose papers give no score
        else:
            assert entry.protocol in PROTOCOLS, (entry.name, entry.protocol)
    by_name = {entry.name: entry.protocol for entry in pretrained.ENTRIES}
    assert by_name["nafnet-sidd-width64"] == "nafnet-sidd" and by_name["nafnet-gopro-width32"] == "nafnet-gopro"
    assert by_name["restormer-derain"] == "restormer-derain" and by_name["restormer-deblur-motion"] == "restormer-gopro"


def test_models_lists_each_scores_protocol() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["nafnet-sidd-width32"]["protocol"] == "nafnet-sidd"
    # The shipped cards' benchmark tables come along; a paper entry has none.
    assert [row["case"] for row in rows["restorecli-derain"]["benchmarks"]][:2] == [
        "rain100l seed 1717",
        "rain100h seed 1717",
    ]
    assert rows["nafnet-sidd-width32"]["benchmarks"] == []


def test_protocol_in_header_json_and_numbers(pairs: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = pairs
    loaded = _loaded(pred_dir, gt_dir)
    arguments = ["eval", str(pred_dir), "--gt", str(gt_dir), "--protocol", "nafnet-sidd", "--workers", "1"]
    table = runner.invoke(app, arguments)
    assert table.exit_code == 0, table.output
    assert "protocol=nafnet-sidd channel=rgb crop_border=0" in table.stdout
    mean_row = table.stdout.splitlines()[-1].split()
    expected = [
        np.mean([psnr(p, g, data_range=255) for p, g in loaded]),
        np.mean([ssim3d(p, g, data_range=255) for p, g in loaded]),
    ]
    assert mean_row == ["mean", f"{expected[0]:.4f}", f"{expected[1]:.6f}"]
    payload = json.loads(runner.invoke(app, [*arguments, "--json"]).stdout)
    assert payload["convention"]["protocol"] == "nafnet-sidd" and payload["convention"]["metrics"] == ["psnr", "ssim3d"]
    assert payload["summary"]["ssim3d"] == pytest.approx(expected[1], abs=1e-12)


def test_derain_protocol_scores_rounded_y(pairs: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = pairs
    loaded = _loaded(pred_dir, gt_dir)
    result = runner.invoke(
        app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--protocol", "restormer-derain", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["convention"]["channel"] == "y-bt601-rounded"
    options = {"data_range": 255, "y_channel": True, "round_y": True}
    assert payload["summary"]["ssim"] == pytest.approx(np.mean([ssim(p, g, **options) for p, g in loaded]), abs=1e-12)


@pytest.mark.parametrize("extra", [["--metrics", "psnr"], ["--crop-border", "0"], ["--y-channel"]])
def test_protocol_with_its_own_options_is_a_usage_error(pairs: tuple[Path, Path], extra: list[str]) -> None:
    pred_dir, gt_dir = pairs
    result = runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--protocol", "denoise-rgb", *extra])
    assert result.exit_code == 2
    assert extra[0] in result.output


def test_every_protocol_and_metric_is_named_in_the_help() -> None:
    import typing

    from restorecli.cli.evaluate import evaluate
    from restorecli.metrics import METRICS

    hints = typing.get_type_hints(evaluate.__wrapped__, include_extras=True)  # type: ignore[attr-defined]

    def help_of(parameter: str) -> str:
        return next(m for m in hints[parameter].__metadata__ if hasattr(m, "help")).help

    assert all(name in help_of("protocol") for name in PROTOCOLS)
    assert all(name in help_of("metrics") for name in METRICS)
