"""``restore eval`` through the real Typer app: outputs, exit codes and error messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.engine.options import RunOptions
from restorecli.images import read_array, write_array
from restorecli.metrics import psnr, ssim

runner = CliRunner()


@pytest.fixture()
def image_set(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    for index in range(2):
        clean = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
        noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).round().astype(np.uint8)
        write_array(tmp_path / "gt" / f"im{index}.png", clean)
        write_array(tmp_path / "pred" / f"im{index}.png", noisy)
    return tmp_path / "pred", tmp_path / "gt"


def _expected_means(pred_dir: Path, gt_dir: Path, **options: object) -> tuple[float, float]:
    pairs = [(read_array(p), read_array(gt_dir / p.name)) for p in sorted(pred_dir.iterdir())]
    return (
        float(np.mean([psnr(p, g, data_range=255, **options) for p, g in pairs])),  # type: ignore[arg-type]
        float(np.mean([ssim(p, g, data_range=255, **options) for p, g in pairs])),  # type: ignore[arg-type]
    )


def test_table_shows_convention_rows_and_mean(image_set: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = image_set
    result = runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--per-image", "--workers", "1"])
    assert result.exit_code == 0, result.output
    mean_psnr, mean_ssim = _expected_means(pred_dir, gt_dir)
    assert "channel=rgb crop_border=0 data_range=255" in result.stdout
    assert "im0" in result.stdout and "im1" in result.stdout
    mean_row = next(line for line in result.stdout.splitlines() if line.startswith("mean"))
    assert mean_row.split()[1:] == [f"{mean_psnr:.4f}", f"{mean_ssim:.6f}"]


def test_json_csv_and_y_channel(image_set: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, gt_dir = image_set
    csv_path = tmp_path / "out" / "scores.csv"
    result = runner.invoke(
        app,
        [
            "eval",
            str(pred_dir),
            "--gt",
            str(gt_dir),
            "--y-channel",
            "--crop-border",
            "2",
            "--json",
            "--per-image",
            "--csv",
            str(csv_path),
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    mean_psnr, mean_ssim = _expected_means(pred_dir, gt_dir, y_channel=True, crop_border=2)
    assert payload["convention"]["channel"] == "y-bt601"
    assert payload["convention"]["crop_border"] == 2
    assert payload["summary"]["psnr"] == pytest.approx(mean_psnr, abs=1e-9)
    assert payload["summary"]["ssim"] == pytest.approx(mean_ssim, abs=1e-9)
    assert [row["name"] for row in payload["images"]] == ["im0", "im1"]
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["name"] for row in rows] == ["im0", "im1"]
    assert float(rows[0]["psnr"]) == pytest.approx(payload["images"][0]["psnr"])


def test_identical_images_report_inf_in_strict_json(tmp_path: Path) -> None:
    image = np.full((16, 16), 7, np.uint8)
    write_array(tmp_path / "a.png", image)
    result = runner.invoke(app, ["eval", str(tmp_path / "a.png"), "--gt", str(tmp_path / "a.png"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["psnr"] == "inf" and summary["psnr_inf"] == 1 and summary["ssim"] == 1.0


def test_unmatched_files_fail_unless_allowed(image_set: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = image_set
    (pred_dir / "im1.png").rename(pred_dir / "other.png")
    result = runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--workers", "1"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Expected every file to have a partner")
    assert "other.png" in result.stderr
    allowed = runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--allow-missing", "--workers", "1"])
    assert allowed.exit_code == 0, allowed.output
    assert "Warning: skipped 1 predictions without ground truth: other.png" in allowed.stderr
    assert "restore eval: 1 pairs" in allowed.stdout


def test_mis_sized_pair_is_a_clear_error(tmp_path: Path) -> None:
    write_array(tmp_path / "p" / "x.png", np.zeros((16, 16, 3), np.uint8))
    write_array(tmp_path / "g" / "x.png", np.zeros((17, 16, 3), np.uint8))
    result = runner.invoke(app, ["eval", str(tmp_path / "p"), "--gt", str(tmp_path / "g"), "--workers", "1"])
    assert result.exit_code == 1
    assert "Skipped" in result.stderr and "x.png" in result.stderr
    assert "Expected the same size and channels, but got (16, 16, 3) and (17, 16, 3)" in result.stderr
    assert "Error: Expected at least one scorable pair, but all 1 failed" in result.stderr


def test_masks_with_gt_pattern(tmp_path: Path) -> None:
    target = np.zeros((24, 24), np.uint8)
    target[4:7, 4:7] = 255
    pred = np.zeros_like(target)
    pred[4:7, 5:8] = 255
    pred[15, 15] = 255  # one false-alarm pixel
    write_array(tmp_path / "pred" / "Misc_1.png", pred)
    write_array(tmp_path / "masks" / "Misc_1_pixels0.png", target)
    result = runner.invoke(
        app,
        ["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "masks"), "--gt-pattern", "{stem}_pixels0", "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["convention"]["metrics"] == ["miou", "niou", "pd", "fa"]
    summary = payload["summary"]
    assert summary["pd"] == 1.0
    assert summary["fa"] == pytest.approx(1 / 576)
    assert summary["niou"] == pytest.approx(6 / 13)
    assert payload["class_iou"]["1"] == pytest.approx(6 / 13)
    table = runner.invoke(
        app, ["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "masks"), "--gt-pattern", "{stem}_pixels0"]
    )
    assert "fa(x1e-6)" in table.stdout and "IoU per class" in table.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--metrics", "psnr,lpips"], "Error: Expected metrics among"),
        (["--round-y"], "Error: Expected round_y only together with y_channel"),
    ],
)
def test_bad_options_are_errors(image_set: tuple[Path, Path], arguments: list[str], message: str) -> None:
    pred_dir, gt_dir = image_set
    result = runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--workers", "1", *arguments])
    assert result.exit_code == 1
    assert result.stderr.startswith(message)


def test_model_and_pred_are_exclusive(image_set: tuple[Path, Path]) -> None:
    pred_dir, gt_dir = image_set
    assert runner.invoke(app, ["eval", "--gt", str(gt_dir)]).exit_code == 2
    assert (
        runner.invoke(app, ["eval", str(pred_dir), "--gt", str(gt_dir), "--model", "x", "--input", "y"]).exit_code == 2
    )
    assert runner.invoke(app, ["eval", "--gt", str(gt_dir), "--model", "x"]).exit_code == 2


def test_model_restores_on_the_fly_and_saves(
    image_set: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pred_dir, gt_dir = image_set
    clean = {p.stem: read_array(p) for p in gt_dir.iterdir()}
    calls: list[tuple] = []

    def fake_load(name: str, device: str = "auto") -> str:
        calls.append((name, device))
        return "descriptor"

    def fake_restore(model: str, image: np.ndarray, *, options: RunOptions) -> np.ndarray:
        calls.append((model, options.tile, options.precision, options.fallback))
        return next(c for c in clean.values() if c.shape == image.shape and np.abs(c.astype(int) - image).mean() < 20)

    fake_api = types.ModuleType("restorecli.api")  # the engine is not needed to test the wiring
    fake_api.load_model = fake_load  # type: ignore[attr-defined]
    fake_api.restore_image = fake_restore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "restorecli.api", fake_api)
    saved = tmp_path / "restored"
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "toy",
            "--input",
            str(pred_dir),
            "--gt",
            str(gt_dir),
            "--save",
            str(saved),
            "--tile",
            "64",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    # --device cpu names a device: it never falls back (the one policy of every command)
    assert calls[0] == ("toy", "cpu") and calls[1] == ("descriptor", 64, "fp32", False)
    assert json.loads(result.stdout)["summary"]["psnr_inf"] == 2
    assert sorted(p.name for p in saved.iterdir()) == ["im0.png", "im1.png"]
    np.testing.assert_array_equal(read_array(saved / "im0.png"), clean["im0"])


def test_every_option_has_help() -> None:
    from restorecli.cli.evaluate import evaluate

    hints = typing.get_type_hints(evaluate.__wrapped__, include_extras=True)  # type: ignore[attr-defined]
    parameters = [name for name in hints if name != "return"]
    assert len(parameters) >= 20
    for name in parameters:
        info = next(m for m in hints[name].__metadata__ if hasattr(m, "help"))
        assert info.help, name
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "--gt-pattern" in result.stdout and "--round-y" in result.stdout


def test_a_broken_pair_is_reported_and_the_rest_scored(tmp_path: Path) -> None:
    from restorecli.images import write_array

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        write_array(gt / f"{name}.png", image)
        write_array(pred / f"{name}.png", image // 2)
    write_array(gt / "c.png", np.zeros((16, 16, 3), np.uint8))
    (pred / "c.png").write_bytes(b"broken")
    result = runner.invoke(app, ["eval", str(pred), "--gt", str(gt), "--json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["count"] == 2 and [Path(f["pred"]).name for f in payload["failed"]] == ["c.png"]
    assert "c.png" in result.stderr and "1 of 3 pairs could not be scored" in result.stderr


def test_save_folder_may_not_be_the_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "in").mkdir()
    args = ["eval", "--model", "x.pth", "--input", str(tmp_path / "in"), "--gt", str(tmp_path / "gt")]
    result = runner.invoke(app, [*args, "--save", str(tmp_path / "gt")])
    assert result.exit_code == 1 and "would overwrite" in result.output


def test_scoring_files_does_not_import_torch(image_set: tuple[Path, Path]) -> None:
    # Plain scoring needs no network: loading torch would add seconds of start-up to every call.
    pred_dir, gt_dir = image_set
    script = (
        "import sys\n"
        "from restorecli.cli.app import app\n"
        "try:\n"
        f"    app(['eval', {str(pred_dir)!r}, '--gt', {str(gt_dir)!r}, '--workers', '1'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr
