"""``restore derain|deblur|denoise`` end to end with a tiny checkpoint on generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.images import read_array, write_array
from restorecli.zoo import architectures, download

runner = CliRunner()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    write_array(folder / "a.png", rng.integers(0, 256, (37, 45, 3), dtype=np.uint8))
    write_array(folder / "b16.png", rng.integers(0, 65536, (20, 23, 3), dtype=np.uint16))
    write_array(folder / "c_rgba.png", rng.integers(0, 256, (16, 19, 4), dtype=np.uint8))
    write_array(folder / "d_grey.png", rng.integers(0, 256, (21, 17), dtype=np.uint8))
    return folder


def test_folder_is_restored_with_depth_alpha_and_names_kept(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(images), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    assert "4 restored, 0 skipped, 0 failed" in result.output
    for source in images.iterdir():
        restored, original = read_array(out / source.name), read_array(source)
        assert restored.shape == original.shape and restored.dtype == original.dtype
    np.testing.assert_array_equal(read_array(out / "c_rgba.png")[..., 3], read_array(images / "c_rgba.png")[..., 3])
    assert not list(out.glob(".*tmp*"))


def test_broken_file_is_reported_and_the_rest_processed(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    result = runner.invoke(app, ["derain", str(images), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 1
    assert "4 restored, 0 skipped, 1 failed" in result.output
    assert "broken.jpg" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b16.png", "c_rgba.png", "d_grey.png"]


def test_skip_existing_resumes(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"kept")
    result = runner.invoke(app, ["deblur", str(images), str(out), "--model", str(checkpoint), "--skip-existing", "-q"])
    assert result.exit_code == 0, result.output
    assert "3 restored, 1 skipped" in result.output
    assert (out / "a.png").read_bytes() == b"kept"


def test_refuses_to_write_into_the_input_folder(checkpoint: Path, images: Path) -> None:
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    result = runner.invoke(app, ["denoise", str(images), str(images), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 1
    assert "Error: Expected an output folder other than the input folder" in result.output
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_single_file_input_with_tiling(checkpoint: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "denoise",
        str(images / "a.png"),
        str(out),
        "--model",
        str(checkpoint),
        "--tile",
        "16",
        "--tile-overlap",
        "8",
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["a.png"]


def test_missing_default_weights_give_the_clear_message(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "SHIPPED_WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv("RESTORECLI_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["derain", str(images), str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1
    assert "Error: Expected the weights of restorecli-derain at" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_model_and_bad_device_are_one_line_errors(images: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["derain", str(images), str(tmp_path / "o"), "--model", "restormer-derian"])
    assert result.exit_code == 1 and "did you mean restormer-derain" in result.output
    result = runner.invoke(app, ["derain", str(images), str(tmp_path / "o"), "--device", "tpu"])
    assert result.exit_code == 1 and result.output.startswith("Error:")


def test_models_lists_the_zoo() -> None:
    result = runner.invoke(app, ["models", "--task", "derain"])
    assert result.exit_code == 0
    assert "restorecli-derain" in result.output and "restormer-derain" in result.output
    assert "restormer-deblur-motion" not in result.output


@pytest.mark.parametrize("arch", ["nafnet", "restormer"])
def test_weights_alone_reads_the_file_as_model_file_does(arch: str, images: Path, tmp_path: Path) -> None:
    # No --model: the architecture and config come from the file, as `--model FILE` reads it.
    checkpoint = tmp_path / f"{arch}.pth"
    torch.save({"params": architectures.build_model(arch, "tiny").state_dict()}, checkpoint)
    by_model, by_weights = tmp_path / "by-model", tmp_path / "by-weights"
    for flag, out in (("--model", by_model), ("--weights", by_weights)):
        result = runner.invoke(app, ["derain", str(images), str(out), flag, str(checkpoint), "-q"])
        assert result.exit_code == 0, result.output
    for source in images.iterdir():
        np.testing.assert_array_equal(read_array(by_weights / source.name), read_array(by_model / source.name))


def test_weights_with_a_zoo_model_use_its_config_and_name_the_entry_the_file_fits(images: Path, tmp_path: Path) -> None:
    from restorecli.zoo import pretrained

    shipped = download.SHIPPED_WEIGHTS_DIR / pretrained.get_entry("restorecli-denoise").filename
    args = ["derain", str(images), str(tmp_path / "out"), "--model", "restormer-derain", "--weights", str(shipped)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: Expected the weights to fit restormer" in result.output
    assert "fits zoo entries" in result.output and "restorecli-denoise" in result.output


def test_run_options_are_built_once_from_the_shared_options(
    checkpoint: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from restorecli.engine import batch
    from restorecli.engine.options import RunOptions

    seen: list[RunOptions | None] = []
    real = batch.restore_files

    def spy(descriptor: object, inputs: object, output_dir: object, options: RunOptions | None = None, **kw: object):
        seen.append(options)
        return real(descriptor, inputs, output_dir, options, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "restore_files", spy)
    common = ["denoise", str(images / "a.png"), "--model", str(checkpoint), "-q"]
    extra = ["--tile", "32", "--tile-overlap", "8", "--tile-batch", "2", "--max-memory", "512MiB"]
    assert runner.invoke(app, [*common[:2], str(tmp_path / "o1"), *common[2:], *extra]).exit_code == 0
    assert runner.invoke(app, [*common[:2], str(tmp_path / "o2"), *common[2:], "--device", "cpu"]).exit_code == 0
    assert seen == [
        RunOptions(tile=32, overlap=8, tile_batch=2, fallback=True, max_memory=512 << 20),  # auto may fall back
        RunOptions(fallback=False),  # a named device never does
    ]


@pytest.mark.parametrize("value", ["lots", "0", "-4GiB"])
def test_a_bad_max_memory_is_a_usage_error_naming_the_option(checkpoint: Path, images: Path, value: str) -> None:
    result = runner.invoke(
        app, ["denoise", str(images), str(images / "o"), "--model", str(checkpoint), "--max-memory", value]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--max-memory" in result.output and "Expected a memory size such as 4GiB" in result.output
