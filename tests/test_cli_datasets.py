"""`restore split` and `restore crop-patches` through the real Typer app: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.images import read_array, write_array

runner = CliRunner()


def _sirst(root: Path, ids: list[str], size: tuple[int, int] = (40, 50)) -> Path:
    """An NUAA-SIRST-like layout: images/<id>.png and masks/<id>_pixels0.png."""
    for item_id in ids:
        write_array(root / "images" / f"{item_id}.png", np.random.randint(0, 256, size, dtype=np.uint8))
        write_array(root / "masks" / f"{item_id}_pixels0.png", (np.random.rand(*size) > 0.9).astype(np.uint8) * 255)
    return root


def test_split_prints_counts_and_writes_lists(tmp_path: Path) -> None:
    root = _sirst(tmp_path / "sirst", [f"Misc_{i}" for i in range(1, 11)])
    result = runner.invoke(app, ["split", str(root), "--test-ratio", "0.5", "--pattern", "masks={id}_pixels0"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["split", "ids", "kept", "new"]
    train = (root / "50_50" / "train.txt").read_text().splitlines()
    test = (root / "50_50" / "test.txt").read_text().splitlines()
    assert set(lines[1]) <= {"-", " "}  # the rule under the header
    assert lines[2].split() == ["train", str(len(train)), "0", str(len(train))]
    assert lines[4].split() == ["total", "10"] and len(train) + len(test) == 10


def test_split_json_with_materialize(tmp_path: Path) -> None:
    root = _sirst(tmp_path / "sirst", ["a", "b", "c", "d"])
    args = ["split", str(root), "--train", "0.7", "--val", "0.1", "--seed", "3", "--pattern", "masks={id}_pixels0"]
    result = runner.invoke(app, [*args, "--materialize", str(tmp_path / "laid"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["name"] == "70_10_20" and payload["folders"] == ["images", "masks"]
    assert sum(payload["counts"].values()) == 4
    assert payload["materialized"]["linked"] + payload["materialized"]["copied"] == 8
    first_train = (root / "70_10_20" / "train.txt").read_text().split()
    assert all((tmp_path / "laid" / "train" / "masks" / f"{i}_pixels0.png").is_file() for i in first_train)


def test_split_missing_ids_exit_1_with_one_error_line(tmp_path: Path) -> None:
    root = _sirst(tmp_path / "sirst", ["a", "b"])
    result = runner.invoke(app, ["split", str(root)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Expected every id in every folder")
    assert "--pattern masks={id}_pixels0" in result.stderr and len(result.stderr.splitlines()) == 1

    (root / "masks" / "b_pixels0.png").unlink()
    allowed = runner.invoke(app, ["split", str(root), "--pattern", "masks={id}_pixels0", "--allow-missing"])
    assert allowed.exit_code == 0 and "1 ids lack a file" in allowed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "0.6", "--test", "0.6"], "sum to 1"),
        (["--pattern", "masks"], "FOLDER=TEMPLATE"),
        (["--dirs", "images,labels"], "folder labels/"),
    ],
)
def test_split_bad_options_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    root = _sirst(tmp_path / "sirst", ["a"])
    result = runner.invoke(app, ["split", str(root), *args])
    assert result.exit_code == 1 and message in result.stderr


def test_crop_patches_pairs_from_a_split_list(tmp_path: Path) -> None:
    root = _sirst(tmp_path / "sirst", ["a", "b", "c"], size=(40, 60))
    (root / "50_50").mkdir()
    (root / "50_50" / "train.txt").write_bytes(b"a\r\nc\r\n")
    out = tmp_path / "patches"
    args = ["crop-patches", str(root), str(out), "--size", "32", "--step", "16", "--pattern", "masks={id}_pixels0"]
    result = runner.invoke(app, [*args, "--list", str(root / "50_50" / "train.txt"), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # x starts 0, 16, 28; y starts 0, 8 -> 6 positions, two folders, two ids
    assert (payload["images"], payload["cropped"], payload["patches"], payload["failed"]) == (2, 2, 24, 0)
    assert payload["folders"] == ["images", "masks"]
    mask = read_array(root / "masks" / "c_pixels0.png")
    assert np.array_equal(read_array(out / "masks" / "c_s006.png"), mask[8:40, 28:60])
    assert not (out / "images" / "b_s001.png").exists()


def test_crop_patches_table_counts_small_images(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "big.png", np.zeros((64, 64, 3), np.uint8))
    write_array(tmp_path / "in" / "small.png", np.zeros((10, 64, 3), np.uint8))
    result = runner.invoke(
        app, ["crop-patches", str(tmp_path / "in"), str(tmp_path / "out"), "--size", "64", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert rows["images"] == "2" and rows["cropped"] == "1" and rows["small"] == "1" and rows["patches"] == "1"
    assert "skipped" in result.stdout and (tmp_path / "out" / "patches.csv").is_file()


def test_crop_patches_bad_image_reported_and_exit_1(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "good.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    result = runner.invoke(
        app, ["crop-patches", str(tmp_path / "in"), str(tmp_path / "out"), "--size", "32", "--workers", "1"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Failed bad: Expected a decodable image")
    assert (tmp_path / "out" / "good_s001.png").is_file()


def test_crop_patches_refuses_nonempty_output_and_bad_small_value(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "a.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"x")
    result = runner.invoke(app, ["crop-patches", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 1 and result.stderr.startswith("Error: Expected an empty output folder")
    usage = runner.invoke(app, ["crop-patches", str(tmp_path / "in"), str(tmp_path / "o2"), "--small", "crop"])
    assert usage.exit_code == 2


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "split",
            [
                "--train",
                "--val",
                "--test",
                "--seed",
                "--name",
                "--dirs",
                "--pattern",
                "--allow-missing",
                "--materialize",
            ],
        ),
        (
            "crop-patches",
            ["--size", "--step", "--thresh-size", "--pairs", "--list", "--small", "--workers", "--skip-existing"],
        ),
    ],
)
def test_help_describes_every_option(command: str, options: list[str]) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in options:
        assert option in result.stdout
