"""The bench/ scripts run end to end in their short modes: JSON structure and equality checks, no timings.

Each script runs in a fresh interpreter as a user would (``python bench/x.py ... --json PATH``); one test
function per script, built on :func:`run_bench`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from restorecli.images import write_array
from restorecli.zoo.architectures import build_model

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(tmp_path: Path, script: str, *args: str) -> dict:
    """Run ``bench/<script> ARGS --json FILE`` (temp files under ``tmp_path``); the parsed JSON."""
    output = tmp_path / f"{Path(script).stem}.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(output)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(output.read_text())


def load_bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``bench/<name>.py`` (not a package) to test its helpers directly; forgotten after the test."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_eval_short_mode(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "bench_eval.py", "--pairs", "2", "--size", "48", "--workers", "1")
    assert (result["pairs"], result["size"]) == (2, 48)
    rows = result["rows"]
    assert [row["name"] for row in rows] == ["scikit-image loop", "restore eval (CLI)", "evaluate_paths workers=1"]
    assert [row["workers"] for row in rows] == [1, None, 1]
    loop = rows[0]
    assert 10 < loop["psnr"] < 60 and 0 < loop["ssim"] < 1  # noisy but related images
    for row in rows:
        assert row["seconds"] > 0 and row["cpu_s_per_pair"] > 0
        assert row["pairs_per_s"] == pytest.approx(2 / row["seconds"])
        assert row["speedup"] == pytest.approx(row["pairs_per_s"] / loop["pairs_per_s"])
        # Checked here too, not only through the script's own verdict.
        assert row["psnr"] == pytest.approx(loop["psnr"], abs=1e-9)
        assert row["ssim"] == pytest.approx(loop["ssim"], abs=1e-9)
        assert row["psnr_diff"] == pytest.approx(abs(row["psnr"] - loop["psnr"]), abs=1e-15)
    assert result["means_agree"] is True


def test_bench_crop_short_mode(tmp_path: Path) -> None:
    args = ("--count", "2", "--width", "300", "--height", "260", "--size", "128", "--step", "64", "--workers", "1,2")
    result = run_bench(tmp_path, "bench_crop.py", *args)
    # Offsets 0, 64, 128 plus the border-flush one (172 across, 132 down): 4 x 4 patches per image.
    assert (result["images"], result["size"], result["step"]) == (2, 128, 64)
    assert [row["name"] for row in result["rows"]] == [
        "BasicSR-style loop",
        "restorecli workers=1",
        "restorecli workers=2",
    ]
    for row in result["rows"]:
        assert row["patches_per_s"] == pytest.approx(32 / row["seconds"])
        assert row["ratio"] == pytest.approx(row["images_per_s"] / result["rows"][0]["images_per_s"])
    assert [check["workers"] for check in result["checks"]] == [1, 2]
    for check in result["checks"]:
        assert check["patches"] == check["identical_pixels"] == 32
        assert (check["missing"], check["extra"], check["different"], check["same"]) == ([], [], [], True)
    assert result["same_outputs"] is True


def test_crop_check_reports_differences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compare = load_bench("bench_crop", monkeypatch).compare
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    for folder in ("theirs", "ours"):
        write_array(tmp_path / folder / "a_s001.png", pixels)
    write_array(tmp_path / "theirs" / "a_s002.png", pixels)
    write_array(tmp_path / "ours" / "a_s002.png", pixels, png_compression=9)  # other bytes, same pixels
    write_array(tmp_path / "theirs" / "a_s003.png", pixels)
    write_array(tmp_path / "ours" / "a_s003.png", pixels[::-1])
    write_array(tmp_path / "theirs" / "a_s004.png", pixels)
    write_array(tmp_path / "ours" / "b_s001.png", pixels)
    check = compare(tmp_path / "theirs", tmp_path / "ours", 1)
    assert (check.identical_bytes, check.identical_pixels) == (1, 2)
    assert (check.missing, check.extra, check.different) == (["a_s004.png"], ["b_s001.png"], ["a_s003.png"])
    assert not check.same


def test_bench_performance_short_mode_compares_with_the_reference(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "bench_performance.py", "--short", "--models", "restormer:tiny", "--sizes", "40x56")
    assert result["matmul_peak_gflops"]["fp32"] > 0 and result["matmul_peak_gflops"]["bf16"] > 0
    rows = {row["mode"]: row for row in result["rows"]}
    assert set(rows) == {"reference", "fp32", "bf16"}
    assert all(row["seconds"] > 0 and row["peak_mib"] > 0 and row["gflops"] > 0 for row in rows.values())
    assert rows["fp32"]["speedup"] > 0 and rows["fp32"]["memory_ratio"] > 0
    # The same weights and image: restorecli fp32 equals the official path to float rounding (no tiles
    # at this size), and bf16 stays close to fp32.
    assert rows["fp32"]["psnr_against"] == "reference" and rows["fp32"]["psnr"] > 100
    assert rows["bf16"]["psnr_against"] == "fp32" and 30 < rows["bf16"]["psnr"] < 100
    extra = rows["fp32"]["extra"]  # the conv/matmul efficiency case ran
    assert extra["product_gflops"] > 0 and extra["dense_gflops"] > 0 and extra["timed_seconds"] > 0


def test_bench_performance_row_over_its_memory_cap_reports_out_of_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("bench_performance", monkeypatch)
    # 0.9 x 1.6 GiB of address space: enough to import torch, not for a 4096x4096 reference forward.
    monkeypatch.setattr(bench, "available_mib", lambda: 1600.0)
    args = bench.argparse.Namespace(repeats=1, threads=1, timeout=120)
    result = bench.measure(args, "restormer:tiny", "4096", "reference", None, False)
    assert result == {"error": "out of memory: an allocation did not fit in 90% of the available memory"}
    small = bench.measure(args, "restormer:tiny", "32", "reference", None, False)
    assert small["seconds"] > 0  # the same cap leaves room for a row that fits


def test_bench_train_short_mode_times_both_precisions_on_the_same_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index in range(3):
        write_array(tmp_path / "clean" / f"img{index}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        f"""name = "tiny-deblur"
[model]
arch = "nafnet"
config = "tiny"
weights = "{tmp_path / "not-there.safetensors"}"
[data]
clean = ["{tmp_path / "clean"}"]
patch = 16
batch = 2
[degradation]
kind = "blur"
params = {{ kernel_size_range = [3, 5] }}
[schedule]
iterations = 10
[optim]
lr = 1e-3
""",
        encoding="utf-8",
    )
    result = run_bench(tmp_path, "bench_train.py", str(recipe), "--steps", "3", "--warmup", "1", "--threads", "1")
    assert [row["precision"] for row in result] == ["fp32", "bf16"]
    for row in result:
        assert (row["patch"], row["batch"], row["threads"]) == (16, 2, 1)
        assert row["weights"] == "initialisation"  # the recipe's file is missing: seeded start instead
        assert row["step_s_median"] > 0 and row["data_s_mean"] > 0 and row["peak_mib"] > 0
    # Same start, same batches: bf16 autocast trains like fp32 (a different stream would differ more).
    fp32, bf16 = (row["mean_loss"] for row in result)
    assert bf16 == pytest.approx(fp32, rel=0.02)


def test_bench_streaming_short_mode_streams_exactly(tmp_path: Path) -> None:
    args = ("--short", "--modes", "official,streamed", "--precisions", "fp32")
    result = run_bench(tmp_path, "bench_streaming.py", *args)
    rows = {row["mode"]: row for row in result["rows"]}
    assert set(rows) == {"official", "streamed"}
    assert all(row["seconds"] > 0 and row["peak_mib"] > 0 for row in rows.values())
    streamed = rows["streamed"]
    # The CPU's 64-row strips (two on 72 rows), a 40-pixel-wide image in one piece.
    assert "streams through restormer:tiny in 64-row strips, 1 piece(s) across" in streamed["note"]
    assert streamed["psnr_against"] == "official-fp32" and streamed["psnr"] > 100  # equal to float rounding
    assert streamed["speedup"] > 0 and streamed["memory_ratio"] > 0


def test_bench_end_to_end_runs_both_processes_on_the_same_checkpoint_and_image(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "bench_end_to_end.py", "--short")
    assert (result["size"], result["config"]) == (64, "tiny")
    assert all(result[side]["seconds"] > 0 and result[side]["peak_mib"] > 0 for side in ("official", "restore"))
    assert result["psnr_db"] > 60  # restore derain's PNG is the official PNG up to rounding


def test_bench_block_ab_runs_both_versions_of_a_block_alike(tmp_path: Path) -> None:
    tree = BENCH.parent / "restorecli" / "archs" / "streaming.py"  # the same code loaded twice: equal outputs
    result = run_bench(tmp_path, "bench_block_ab.py", "--base", str(tree), "--level", "latent", "--rounds", "1")
    assert result["max_difference"] == 0
    assert [len(values) for values in result["seconds"].values()] == [1, 1]


def test_bm3d_reference_routes_grey_and_colour_and_rounds_to_8_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake(name: str):  # type: ignore[no-untyped-def]
        def run(image: np.ndarray, sigma: float) -> np.ndarray:
            calls.append((name, image.shape, sigma))
            return image + 0.3 / 255  # rounds back to the input's levels

        return run

    monkeypatch.setitem(sys.modules, "bm3d", type(sys)("bm3d"))
    monkeypatch.setattr(sys.modules["bm3d"], "bm3d", fake("grey"), raising=False)
    monkeypatch.setattr(sys.modules["bm3d"], "bm3d_rgb", fake("colour"), raising=False)
    monkeypatch.syspath_prepend(str(BENCH))  # its sibling modules, as when it runs from bench/
    reference = load_bench("bench_bm3d_reference", monkeypatch)
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    colour = np.stack([grey, grey[::-1], 255 - grey], axis=-1)
    assert np.array_equal(reference.denoise(grey, 25), grey)
    assert np.array_equal(reference.denoise(colour, 50), colour)
    assert calls == [("grey", (4, 5), 25 / 255), ("colour", (4, 5, 3), 50 / 255)]

    # --compare adds the model's row after each reference row, scored image by image on the same inputs.
    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        write_array(folder / name, rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params": build_model("nafnet", "tiny").state_dict()}, checkpoint)
    rows = reference.measure(folder, ["colour", "grey"], [25.0], None, compare=str(checkpoint))
    assert [(row["case"], row["method"]) for row in rows] == [
        ("colour sigma 25", "CBM3D"),
        ("colour sigma 25", str(checkpoint)),
        ("grey sigma 25", "BM3D"),
        ("grey sigma 25", str(checkpoint)),
    ]
    for row in rows:
        assert len(row["per_image"]) == 2 and np.mean(row["per_image"]) == pytest.approx(row["psnr"])
    for bm3d_row in rows[::2]:
        assert bm3d_row["psnr"] == pytest.approx(bm3d_row["input_psnr"])  # the fake denoiser returned the noisy input


def test_reproduce_scores_an_entry_with_its_protocol_beside_the_paper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import save_file

    from restorecli import load_model, restore_image
    from restorecli.images import read_array
    from restorecli.metrics.psnr_ssim import psnr
    from restorecli.zoo import architectures, pretrained

    reproduce = load_bench("reproduce", monkeypatch)
    entry = pretrained.get_entry("nafnet-sidd-width32")
    torch.manual_seed(0)
    weights = tmp_path / "seeded.safetensors"
    state = architectures.build_model(entry.arch, entry.config).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    rng = np.random.default_rng(0)
    for index in range(2):
        clean = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        write_array(tmp_path / "gt" / f"{index}.png", clean)
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
        write_array(tmp_path / "input" / f"{index}.png", noisy)

    result = reproduce.reproduce(entry.name, tmp_path / "input", tmp_path / "gt", weights=weights, device="cpu")
    assert result["protocol"] == entry.protocol == "nafnet-sidd" and result["paper"] == entry.paper_score
    model = load_model(entry.name, device="cpu", weights=weights)
    expected = np.mean(
        [
            psnr(
                restore_image(model, read_array(tmp_path / "input" / f"{i}.png")),
                read_array(tmp_path / "gt" / f"{i}.png"),
                data_range=255,
            )
            for i in range(2)
        ]
    )
    assert result["images"] == 2 and abs(result["measured"]["psnr"] - expected) < 1e-9
    assert set(result["measured"]) >= {"psnr", "ssim3d"}


def test_bench_derain_presets_scores_the_rain_restore_degrade_writes(tmp_path: Path) -> None:
    from restorecli.images import read_array
    from restorecli.metrics.psnr_ssim import psnr

    rng = np.random.default_rng(3)
    for index in range(2):
        write_array(tmp_path / "clean" / f"{index}.png", (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    card = tmp_path / "card.json"
    card.write_text((BENCH.parent / "weights" / "restorecli-derain.json").read_text())
    rows = run_bench(
        tmp_path, "bench_derain_presets.py", "--clean", str(tmp_path / "clean"), "--limit", "2", "--card", str(card)
    )
    assert [row["preset"] for row in rows] == ["rain100l", "rain100h", "photoshop", "heavy", "0.1 thin streaks"]
    # The rainy inputs are `restore degrade rain --preset rain100h --seed 1717`'s files.
    done = subprocess.run(
        [sys.executable, "-m", "restorecli", "degrade", "rain", str(tmp_path / "clean"), str(tmp_path / "rainy")]
        + ["--preset", "rain100h", "--seed", "1717", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    inputs = [
        psnr(
            read_array(tmp_path / "rainy" / name),
            read_array(tmp_path / "clean" / name),
            data_range=255,
            y_channel=True,
            round_y=True,
        )
        for name in ("0.png", "1.png")
    ]
    heavy_rain = rows[1]
    assert heavy_rain["images"] == 2 and heavy_rain["seed"] == 1717
    assert abs(heavy_rain["input_psnr"] - np.mean(inputs)) < 1e-9
    assert all(np.isfinite(row["psnr"]) and row["input_psnr"] < 40 for row in rows)
    # --card records the same rows as the card's benchmark table.
    table = json.loads(card.read_text())["benchmarks"]
    assert [(entry["case"], entry["psnr"]) for entry in table] == [(row["case"], row["psnr"]) for row in rows]
