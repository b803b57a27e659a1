"""Batch restoration of files: names, depth and alpha kept, broken files skipped, resume, safety, atomicity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restorecli.engine.batch import output_paths, restore_files
from restorecli.engine.options import RunOptions
from restorecli.errors import ConfigError, DatasetError, ImageWriteError
from restorecli.images import read_array, write_array
from restorecli.zoo.descriptor import ModelDescriptor


class Invert(nn.Module):
    """A model whose output is known exactly: 1 - x. Records the (padded) sizes it was run on."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append((x.shape[-2], x.shape[-1]))
        return 1 - x


def describe(module: nn.Module) -> ModelDescriptor:
    return ModelDescriptor(module, "invert", "test", {}, None, 3, 3, 8, "reflect")


def _pixels(shape: tuple[int, ...], dtype: type, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, np.ndarray]:
    """``tmp_path/in`` with good images of each kind and one corrupt file; returns the good pixels."""
    images = {
        "rgb.png": _pixels((21, 34, 3), np.uint8, 1),
        "deep.png": _pixels((19, 23, 3), np.uint16, 2),
        "grey.png": _pixels((17, 29), np.uint8, 3),
        "alpha.png": _pixels((16, 16, 4), np.uint8, 4),
        "photo10.tif": _pixels((12, 40, 3), np.uint16, 5),
    }
    (tmp_path / "in").mkdir()
    for name, array in images.items():
        write_array(tmp_path / "in" / name, array)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return images


def _inputs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "in").iterdir())


@pytest.mark.parametrize("io_threads", [0, 2])
def test_good_files_are_restored_and_a_broken_one_is_reported(
    tmp_path: Path, folder: dict[str, np.ndarray], io_threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        report = restore_files(
            describe(Invert()), _inputs(tmp_path), tmp_path / "out", progress=False, io_threads=io_threads
        )
    assert (report.succeeded, report.skipped, report.failed) == (5, 0, 1)
    broken = tmp_path / "in" / "broken.png"
    assert report.failures[0][0] == broken and "corrupt" in report.failures[0][1]
    assert [record.getMessage() for record in caplog.records] == [f"Skipped {broken}: {report.failures[0][1]}"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(folder)
    assert report.outputs == [tmp_path / "out" / path.name for path in _inputs(tmp_path) if path != broken]
    for name, array in folder.items():
        restored = read_array(tmp_path / "out" / name)
        maximum = np.iinfo(array.dtype).max
        assert restored.dtype == array.dtype and restored.shape == array.shape
        if array.ndim == 3 and array.shape[2] == 4:
            np.testing.assert_array_equal(restored[:, :, 3], array[:, :, 3])
            array, restored = array[:, :, :3], restored[:, :, :3]
        np.testing.assert_array_equal(restored, maximum - array)


def test_progress_bar_and_failure_lines_go_to_stderr(
    tmp_path: Path, folder: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    restore_files(describe(Invert()), _inputs(tmp_path), tmp_path / "out", progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err
    assert f"Skipped {tmp_path / 'in' / 'broken.png'}: Expected a decodable image" in err


def test_skip_existing_resumes_and_leaves_existing_outputs(tmp_path: Path, folder: dict[str, np.ndarray]) -> None:
    inputs = [path for path in _inputs(tmp_path) if path.name != "broken.png"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "rgb.png").write_bytes(b"from an interrupted run")
    model = Invert()
    report = restore_files(describe(model), inputs, tmp_path / "out", skip_existing=True, progress=False)
    assert (report.succeeded, report.skipped, report.failed) == (4, 1, 0)
    assert (tmp_path / "out" / "rgb.png").read_bytes() == b"from an interrupted run"
    assert (24, 40) not in model.sizes  # rgb.png (21 x 34, padded to 24 x 40) was not run
    runs = len(model.sizes)
    again = restore_files(describe(model), inputs, tmp_path / "out", skip_existing=True, progress=False)
    assert (again.succeeded, again.skipped, len(model.sizes)) == (0, 5, runs)
    overwrite = restore_files(describe(model), inputs, tmp_path / "out", progress=False)
    assert overwrite.succeeded == 5
    np.testing.assert_array_equal(read_array(tmp_path / "out" / "rgb.png"), 255 - folder["rgb.png"])


@pytest.mark.parametrize("target", ["in", "in/../in", "in/rgb.png"])
def test_refuses_to_write_into_the_input_folder_or_over_an_input(
    tmp_path: Path, folder: dict[str, np.ndarray], target: str
) -> None:
    model = Invert()
    before = {path: path.read_bytes() for path in _inputs(tmp_path)}
    with pytest.raises(ImageWriteError, match="Expected an output folder"):
        restore_files(describe(model), _inputs(tmp_path), tmp_path / target, progress=False)
    assert model.sizes == []
    assert {path: path.read_bytes() for path in _inputs(tmp_path)} == before


def test_refuses_an_output_folder_an_input_links_into(tmp_path: Path, folder: dict[str, np.ndarray]) -> None:
    (tmp_path / "elsewhere").mkdir()
    write_array(tmp_path / "elsewhere" / "real.png", folder["rgb.png"])
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "elsewhere" / "real.png")
    with pytest.raises(ImageWriteError, match="other than the input folder"):
        output_paths([tmp_path / "in" / "link.png"], tmp_path / "elsewhere")


def test_bad_options_fail_before_any_file(tmp_path: Path, folder: dict[str, np.ndarray]) -> None:
    model = Invert()
    with pytest.raises(ConfigError, match="Expected a tile of at least 40 pixels"):
        restore_files(describe(model), _inputs(tmp_path), tmp_path / "out", RunOptions(tile=16), progress=False)
    with pytest.raises(ConfigError, match="precision cpu supports"):
        restore_files(
            describe(model), _inputs(tmp_path), tmp_path / "out", RunOptions(precision="fp16"), progress=False
        )
    assert model.sizes == [] and not (tmp_path / "out").exists()


def test_refuses_duplicate_names_and_empty_input(tmp_path: Path, folder: dict[str, np.ndarray]) -> None:
    (tmp_path / "other").mkdir()
    write_array(tmp_path / "other" / "rgb.png", folder["rgb.png"])
    with pytest.raises(ImageWriteError, match="both write rgb.png"):
        output_paths([tmp_path / "in" / "rgb.png", tmp_path / "other" / "rgb.png"], tmp_path / "out")
    with pytest.raises(DatasetError, match="at least one input image"):
        restore_files(describe(Invert()), [], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_failed_write_leaves_no_partial_or_temp_file(
    tmp_path: Path, folder: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_bytes = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if ".deep." in self.name:  # the temp file of deep.png: write half, then the disk "fills up"
            real_write_bytes(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    inputs = [path for path in _inputs(tmp_path) if path.name != "broken.png"]
    report = restore_files(describe(Invert()), inputs, tmp_path / "out", progress=False)
    assert (report.succeeded, report.failed) == (4, 1)
    reason = f"Cannot write {tmp_path / 'out' / 'deep.png'}: No space left on device"
    assert report.failures == [(tmp_path / "in" / "deep.png", reason)]
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["alpha.png", "grey.png", "photo10.tif", "rgb.png"]  # no deep.png, no temp file
