"""A built wheel carries the shipped defaults: an install runs them offline from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from restorecli.images import read_array
from restorecli.zoo import pretrained

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_defaults_and_runs_offline(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("restorecli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for command in ("derain", "deblur", "denoise"):
        stem = f"restorecli/weights/{pretrained.default_for(command).filename}"
        assert stem in names
        assert stem.replace(".safetensors", ".json") in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere, home = tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    home.mkdir()
    noisy = ROOT / "examples" / "noisy" / "kodim23.png"
    # The wheel's package comes first on the path; torch and the other dependencies from this environment.
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(target), "RESTORECLI_HOME": str(home / "cache")}
    env.pop("XDG_CACHE_HOME", None)
    script = (
        "import sys, restorecli; assert restorecli.__file__.startswith(sys.argv[1]), restorecli.__file__; "
        "from restorecli.cli.app import main; sys.argv = ['restore', 'denoise', sys.argv[2], 'out', '-q']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(target), str(noisy)],
        check=False,
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    restored = read_array(elsewhere / "out" / "kodim23.png")
    assert restored.shape == read_array(noisy).shape
    assert not np.array_equal(restored, read_array(noisy))
