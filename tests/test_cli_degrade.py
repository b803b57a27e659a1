"""``restore degrade noise|blur|rain``: round trips on generated images, reproducibility, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.images import read_array, write_array

runner = CliRunner()


def make_inputs(folder: Path) -> dict[str, np.ndarray]:
    """Three small images: 8-bit RGB, 16-bit RGB and 8-bit grey, with texture so blur changes them."""
    y, x = np.mgrid[0:48, 0:56].astype(np.float64)
    base = 0.5 + 0.4 * np.sin(x / 3.0) * np.cos(y / 4.0)
    rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=2)
    images = {
        "a.png": np.round(rgb * 255).astype(np.uint8),
        "b.png": np.round(rgb * 65535).astype(np.uint16),
        "c.png": np.round(base * 255).astype(np.uint8),
    }
    for name, pixels in images.items():
        write_array(folder / name, pixels)
    return images


def invoke(*args: str | Path) -> object:
    return runner.invoke(app, ["degrade", *(str(a) for a in args)])


def test_noise_round_trip_matches_the_benchmark_formula(tmp_path: Path) -> None:
    images = make_inputs(tmp_path / "in")
    result = invoke("noise", tmp_path / "in", tmp_path / "out", "--sigma", "15")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "Wrote 3 noise image(s)" in result.stdout  # type: ignore[attr-defined]
    for name, pixels in images.items():
        np.random.seed(0)
        reference = np.float32(pixels) / float(np.iinfo(pixels.dtype).max)
        reference += np.random.normal(0, 15 / 255.0, reference.shape)
        expected = np.round(np.clip(reference, 0, 1) * np.iinfo(pixels.dtype).max).astype(pixels.dtype)
        np.testing.assert_array_equal(read_array(tmp_path / "out" / name), expected)


def test_unclipped_noise_needs_npy_output(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in")
    refused = invoke("noise", tmp_path / "in", tmp_path / "out", "--no-clip", "--no-quantize")
    assert refused.exit_code == 1  # type: ignore[attr-defined]
    assert "Error: Expected clip and quantize" in refused.stderr  # type: ignore[attr-defined]
    accepted = invoke("noise", tmp_path / "in", tmp_path / "raw", "--no-clip", "--no-quantize", "--format", "npy")
    assert accepted.exit_code == 0, accepted.output  # type: ignore[attr-defined]
    raw = np.load(tmp_path / "raw/a.npy")
    assert raw.dtype == np.float32 and raw.shape == (48, 56, 3) and raw.min() < 0.0


@pytest.mark.parametrize("kind", ["noise", "blur", "rain"])
def test_seed_reproduces_and_changes_outputs(tmp_path: Path, kind: str) -> None:
    make_inputs(tmp_path / "in")
    extra = ["--seeding", "per-file"] if kind == "noise" else []
    for folder, seed in (("one", "5"), ("two", "5"), ("three", "6")):
        result = invoke(kind, tmp_path / "in", tmp_path / folder, "--seed", seed, *extra)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    for name in ("a.png", "b.png", "c.png"):
        first, second, third = (read_array(tmp_path / folder / name) for folder in ("one", "two", "three"))
        np.testing.assert_array_equal(first, second)
        assert not np.array_equal(first, third)


def test_blur_saves_kernels_of_the_requested_sizes(tmp_path: Path) -> None:
    images = make_inputs(tmp_path / "in")
    options = ["--kernel", "shake", "--kernel-size", "5", "9", "--save-kernel"]
    result = invoke("blur", tmp_path / "in", tmp_path / "out", *options)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    for name, pixels in images.items():
        out = read_array(tmp_path / "out" / name)
        assert out.dtype == pixels.dtype and out.shape == pixels.shape
        kernel = np.load(tmp_path / "out/kernels" / name.replace(".png", ".npy"))
        assert kernel.shape[0] in (5, 7, 9) and kernel.shape[0] == kernel.shape[1]
        assert abs(float(kernel.sum(dtype=np.float64)) - 1.0) < 1e-5
        assert read_array(tmp_path / "out/kernels" / name).shape == kernel.shape


def test_rain_options_and_json_summary(tmp_path: Path) -> None:
    images = make_inputs(tmp_path / "in")
    result = invoke("rain", tmp_path / "in", tmp_path / "out", "--preset", "rain100h", "--angle", "10", "20", "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert summary["written"] == 3 and summary["failed"] == []
    assert summary["settings"]["angle_range"] == [10.0, 20.0] and summary["settings"]["layers_range"] == [5, 5]
    for name, pixels in images.items():
        rainy = read_array(tmp_path / "out" / name)
        assert np.all(rainy >= pixels) and rainy.mean() > pixels.mean()


def test_bad_files_are_reported_and_the_exit_code_is_nonzero(tmp_path: Path) -> None:
    make_inputs(tmp_path / "in")
    (tmp_path / "in/zz.png").write_bytes(b"\x89PNG broken")
    result = invoke("rain", tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "Skipped" in result.stderr and "zz.png" in result.stderr  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_refuses_to_overwrite_inputs(tmp_path: Path) -> None:
    images = make_inputs(tmp_path / "in")
    result = invoke("blur", tmp_path / "in/a.png", tmp_path / "in/a.png")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr.startswith("Error: Expected an output path other than an input")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(read_array(tmp_path / "in/a.png"), images["a.png"])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])  # a JPEG's degraded copy would be a new .png beside it
def test_refuses_the_input_folder_as_output_folder(tmp_path: Path, suffix: str) -> None:
    for name, pixels in make_inputs(tmp_path / "in").items():
        if suffix != ".png" and pixels.dtype == np.uint8:
            (tmp_path / "in" / name).unlink()
            write_array((tmp_path / "in" / name).with_suffix(suffix), pixels)
    before = sorted(p.name for p in (tmp_path / "in").iterdir())
    result = invoke("noise", tmp_path / "in", tmp_path / "in")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr.startswith("Error: Expected an output folder other than the input folder")  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["blur", "--kernel-size", "4", "9"], "odd"),
        (["rain", "--density", "0.5", "0.1"], "low <= high"),
        (["rain", "--preset", "mixture", "--length", "5", "9"], "beside a mixture"),
        (["noise", "--format", "png", "--no-quantize"], "quantize"),
    ],
)
def test_invalid_settings_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    make_inputs(tmp_path / "in")
    result = invoke(args[0], tmp_path / "in", tmp_path / "out", *args[1:])
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr.startswith("Error: ") and message in result.stderr  # type: ignore[attr-defined]
    assert not (tmp_path / "out").exists()


def test_missing_input_is_an_error(tmp_path: Path) -> None:
    result = invoke("noise", tmp_path / "nothing", tmp_path / "out")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "nothing" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["noise", "blur", "rain"])
def test_every_subcommand_has_help(kind: str) -> None:
    result = runner.invoke(app, ["degrade", kind, "--help"])
    assert result.exit_code == 0
    assert "--seed" in result.stdout and "--format" in result.stdout
