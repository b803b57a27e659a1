"""Fault suite: a generated corpus of bad, odd and hostile inputs run through the commands, each checked
by one definition of clean (:func:`assert_clean`). Write faults, kill -9, two processes and
memory-hungry cases run in subprocesses, under resource limits where a failing guard could hurt."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.images import FOLLOW_SYMLINKS_ENV, MAX_PIXELS_ENV, read_array, write_array
from restorecli.zoo import architectures
from tests.test_hostile_images import png_bomb

runner = CliRunner()
BAD = ["bomb.png", "truncated.png", "magic.png", "text.jpg", "pages.tif", "odd\nname\x1b[31m.png", "empty.png"]


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands install their input policy in the environment: keep it from leaking into other tests."""
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.delenv(FOLLOW_SYMLINKS_ENV, raising=False)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(architectures.build_model("nafnet", "tiny").state_dict(), path)
    return path


def good_images(folder: Path, count: int = 3, size: int = 24) -> list[str]:
    rng = np.random.default_rng(0)
    names = [f"good{i:02d}.png" for i in range(count)]
    for name in names:
        write_array(folder / name, rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8))
    return names


def corpus(folder: Path) -> list[str]:
    """Good images plus one file of each bad kind (names in :data:`BAD`) and a link out of the folder."""
    names = good_images(folder)
    (folder / "bomb.png").write_bytes(png_bomb(13_500))
    good = (folder / names[0]).read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "magic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (folder / "text.jpg").write_text("not an image\n")
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    (folder / "odd\nname\x1b[31m.png").write_bytes(b"junk")
    (folder / "empty.png").write_bytes(b"")
    secret = folder.parent / "secret.png"
    write_array(secret, np.zeros((8, 8), np.uint8))
    (folder / "link.png").symlink_to(secret)
    return names


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under ``root`` (outside ``skip``) with its SHA-256, links not followed."""
    found = {}
    for path in root.rglob("*"):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_clean(
    stderr: str,
    exit_code: int,
    *,
    bad: list[str],
    out: Path,
    outputs: list[str],
    before: dict[str, str],
    root: Path,
) -> None:
    """Clean: no traceback; exit 1 and exactly one line per bad input (0 without bad inputs); every good
    input's output present and decodable; no partial or temporary file; no input changed; nothing
    written outside ``out``."""
    assert "Traceback" not in stderr, stderr
    assert exit_code == (1 if bad else 0), stderr
    lines = stderr.splitlines()
    for name in bad:
        shown = name.replace("\n", "\\n").replace("\x1b", "\\033")
        assert sum(shown in line for line in lines) == 1, (name, stderr)
    assert all(line.isprintable() for line in lines), stderr
    assert not [line for line in lines if line.startswith(("libpng", "[ WARN", "[ERROR"))], stderr
    for name in outputs:
        assert read_array(out / name).size > 0
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "temporary file left"
    assert snapshot(root, skip=out) == before, "an input changed or a file was written outside the output"


def test_inference_over_the_corpus_is_clean(model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    good = corpus(folder)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["denoise", str(folder), str(out), "--model", str(model), "-q", "--device", "cpu"])
    stderr = result.stderr + capfd.readouterr().err
    assert_clean(stderr, result.exit_code, bad=[*BAD, "link.png"], out=out, outputs=good, before=before, root=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == good
    assert "--follow-symlinks" in stderr and f"{len(good)} restored" in result.stdout


def test_follow_symlinks_and_max_pixels_options(model: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    good_images(folder, count=1)
    write_array(tmp_path / "outside.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    args = ["denoise", str(folder), str(out), "--model", str(model), "-q", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--follow-symlinks"])
    assert result.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["good00.png", "link.png"]
    result = runner.invoke(app, [*args, "--max-pixels", "100"])
    assert result.exit_code == 1 and result.stderr.count("Expected at most 100 pixels") == 1


def test_eval_refuses_a_folder_as_csv_before_scoring(tmp_path: Path) -> None:
    folder = tmp_path / "pred"
    folder.mkdir()
    good_images(folder)
    started = time.perf_counter()
    result = runner.invoke(app, ["eval", str(folder), "--gt", str(folder), "--csv", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: Expected a file name for --csv, but got a folder")
    assert time.perf_counter() - started < 5


def test_eval_skips_a_bomb_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder in (pred, gt):
        folder.mkdir()
        good_images(folder)
        (folder / "bomb.png").write_bytes(png_bomb(13_500))
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["eval", str(pred), "--gt", str(gt), "--workers", "1"])
    stderr = result.stderr + capfd.readouterr().err
    assert "Traceback" not in stderr and result.exit_code == 1
    assert sum("bomb.png" in line for line in stderr.splitlines()) == 1, stderr
    assert "3 pairs" in result.stdout
    assert snapshot(tmp_path) == before


def test_crop_patches_and_degrade_skip_bad_files(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = corpus(folder)
    (folder / "odd\nname\x1b[31m.png").unlink()  # crop-patches ids come from names; keep its report simple
    bad = [name for name in BAD if "odd" not in name]
    before = snapshot(tmp_path)
    crops = tmp_path / "crops"
    result = runner.invoke(
        app, ["crop-patches", str(folder), str(crops), "--size", "8", "--step", "8", "--workers", "1"]
    )
    stderr = result.stderr + capfd.readouterr().err
    assert "Traceback" not in stderr and result.exit_code == 1
    for name in bad:
        assert sum(line.startswith(f"Failed {Path(name).stem}:") for line in stderr.splitlines()) == 1, stderr
    assert snapshot(tmp_path, skip=crops) == before
    degraded = tmp_path / "noisy"
    before = snapshot(tmp_path)  # the patches are now part of what must stay untouched
    result = runner.invoke(app, ["degrade", "noise", str(folder), str(degraded)])
    stderr = result.stderr + capfd.readouterr().err
    assert_clean(stderr, result.exit_code, bad=bad, out=degraded, outputs=good, before=before, root=tmp_path)


def test_model_files_that_are_not_checkpoints_are_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good_images(folder, count=1)
    text = tmp_path / "notes.pth"
    text.write_text("hello\n")
    for model in (str(text), "/etc/passwd"):
        result = runner.invoke(app, ["denoise", str(folder), str(tmp_path / "out"), "--model", model, "-q"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.stderr.startswith("Error: Expected a PyTorch or safetensors checkpoint, but the file is neither")
        assert len(result.stderr.splitlines()) == 1


# Subprocess cases: what an in-process runner cannot show (signals, resource limits, races).
_LIMITED = """
import json, resource, signal, sys
limits = json.loads(sys.argv[1])
if "fsize" in limits:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write then fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
if "as" in limits:
    resource.setrlimit(resource.RLIMIT_AS, (limits["as"], limits["as"]))
sys.argv = ["restore", *sys.argv[2:]]
from restorecli.cli.app import main
main()
"""


def restore_command(*args: str, limits: dict[str, int] | None = None) -> list[str]:
    return [sys.executable, "-c", _LIMITED, json.dumps(limits or {}), *args]


def restore_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}


def restore(*args: str, limits: dict[str, int] | None = None) -> subprocess.CompletedProcess[str]:
    command = restore_command(*args, limits=limits)
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=restore_env(), check=False)


def test_kill_9_then_skip_existing_gives_the_uninterrupted_result(model: Path, tmp_path: Path) -> None:
    folder, out, reference = tmp_path / "in", tmp_path / "out", tmp_path / "reference"
    folder.mkdir()
    names = good_images(folder, count=40, size=48)
    args = ["--model", str(model), "-q", "--device", "cpu"]
    command = restore_command("denoise", str(folder), str(out), *args)
    process = subprocess.Popen(command, env=restore_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and len(list(out.glob("good*.png"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["denoise", str(folder), str(out), *args, "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["denoise", str(folder), str(reference), *args]).exit_code == 0
    assert snapshot(out) == snapshot(reference), "resumed outputs differ from an uninterrupted run"
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file of the killed run left
    assert {k: v for k, v in snapshot(tmp_path).items() if k.startswith("in/")} == {
        k: v for k, v in before.items() if k.startswith("in/")
    }


def test_two_processes_on_one_folder(model: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    names = good_images(folder, count=12, size=32)
    before = snapshot(tmp_path)
    args = ["--model", str(model), "-q", "--device", "cpu", "--skip-existing"]
    command = restore_command("denoise", str(folder), str(out), *args)
    processes = [subprocess.Popen(command, env=restore_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        assert_clean(stderr, process.returncode, bad=[], out=out, outputs=names, before=before, root=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == names


def test_write_faults_and_a_bomb_without_limit_under_resource_limits(model: Path, tmp_path: Path) -> None:
    """Writes past RLIMIT_FSIZE fail (EFBIG) without a partial file; a 1.6 GP bomb read with ``--max-pixels 0``
    is stopped by OpenCV's own cap or the address-space limit, not by the machine running out of memory."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    small = good_images(folder, count=2, size=8)
    rng = np.random.default_rng(1)
    write_array(folder / "large.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))  # ~12 KB of noise
    (folder / "bomb.png").write_bytes(png_bomb(40_000))
    before = snapshot(tmp_path)
    args = ["denoise", str(folder), str(out), "--model", str(model), "-q", "--device", "cpu", "--max-pixels", "0"]
    done = restore(*args, limits={"fsize": 4096, "as": 3 << 30})
    bad = ["large.png", "bomb.png"]
    assert_clean(done.stderr, done.returncode, bad=bad, out=out, outputs=small, before=before, root=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == small


@pytest.mark.parametrize(
    "args",
    [
        ["export", "{folder}", "--model", "{model}"],
        ["export", "{file}/m.onnx", "--model", "{model}"],
        ["crop-patches", "{data}", "{file}/patches", "--size", "16"],
        ["split", "{data}", "--materialize", "{file}/laid-out"],
    ],
    ids=["export to a folder", "export under a file", "crop-patches under a file", "split --materialize under a file"],
)
def test_unwritable_output_paths_get_one_line_before_any_work(tmp_path: Path, model: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    for index in range(4):
        write_array(data / f"im{index}.png", np.full((40, 40, 3), 30 * index, np.uint8))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    before = snapshot(tmp_path)
    paths = {"folder": tmp_path / "folder", "file": tmp_path / "file", "data": data, "model": model}
    result = runner.invoke(app, [arg.format(**paths) for arg in args])
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: Expected a f") and len(result.stderr.splitlines()) == 1, result.stderr
    assert snapshot(tmp_path) == before  # nothing written: no lists, no patches, no graph


def test_a_file_name_that_is_not_utf8_is_processed_like_any_other(tmp_path: Path) -> None:
    """degrade seeds by the name's bytes and crop-patches lists it in its manifest: neither stops there."""
    from restorecli.data.patches import read_manifest

    folder = tmp_path / "in"
    odd = os.fsdecode(b"b\xff")
    for stem in ("a", odd, "c"):
        write_array(folder / f"{stem}.png", np.random.default_rng(len(stem)).integers(0, 256, (40, 40, 3), np.uint8))
    degraded = runner.invoke(app, ["degrade", "noise", str(folder), str(tmp_path / "noisy"), "--sigma", "10"])
    assert degraded.exit_code == 0, degraded.stderr
    assert sorted(p.stem for p in (tmp_path / "noisy").iterdir()) == sorted(["a", odd, "c"])
    cropped = runner.invoke(app, ["crop-patches", str(folder), str(tmp_path / "patches"), "--size", "32", "-q"])
    assert cropped.exit_code == 0, cropped.stderr
    rows = read_manifest(tmp_path / "patches/patches.csv")
    assert {row["source"] for row in rows} == {"a.png", f"{odd}.png", "c.png"}
    assert all((tmp_path / "patches" / str(row["patch"])).is_file() for row in rows)
