"""Sharded runs: the shard rule, the one-process Session, and real 2-process CPU jobs (gloo).

The multi-process tests launch ``python -m torch.distributed.run`` (torchrun) or, where each rank's
exit code must be read, the two ranks directly with the environment torchrun would give them.
Every one compares with a single-process run of the same command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restorecli import distributed
from restorecli.cli.app import app
from restorecli.distributed import DistContext, Session, detect, rank_device, shard
from restorecli.errors import ConfigError, DeviceError, ImageReadError, RestoreError
from restorecli.images import write_array
from restorecli.zoo import architectures

runner = CliRunner()
TIMEOUT = 180  # seconds for one launch: generous on a loaded machine, finite if a rank hangs
NAMES = [f"im{index}.png" for index in range(1, 9)]  # round-robin: rank 0 gets im1, im3, im5, im7
LARGE = "im2.png"  # first of rank 1's share: keeps rank 1 busy while rank 0 finishes (killed-rank test)


# ----------------------------------------------------------------------------------------- shard rule


@pytest.mark.parametrize("count, world", [(0, 3), (1, 4), (7, 2), (8, 2), (10, 3), (13, 16)])
def test_shards_are_disjoint_cover_everything_and_are_balanced(count: int, world: int) -> None:
    items = [f"f{i}.png" for i in range(count)]
    shares = [shard(items, rank, world) for rank in range(world)]
    flat = [item for share in shares for item in share]
    assert sorted(flat) == sorted(items) and len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares == [shard(list(items), rank, world) for rank in range(world)]  # stable on a relaunch


def test_shard_is_round_robin_in_the_given_order() -> None:
    assert shard(["a", "b", "c", "d", "e"], 1, 2) == ["b", "d"]
    assert shard(range(7), 2, 3) == [2, 5]
    with pytest.raises(ConfigError, match="rank 2 of 2"):
        shard([1, 2], 2, 2)


def test_detect_reads_torchrun_environment() -> None:
    assert detect({}) == DistContext()
    context = detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert context == DistContext(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert context.distributed and not context.is_main
    with pytest.raises(ConfigError, match="RANK=x"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="RANK=2 WORLD_SIZE=2"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})


def test_rank_device_is_cuda_local_rank_only_for_auto_or_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    rank = DistContext(rank=3, world_size=4, local_rank=1, local_world_size=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [rank_device(request, rank) for request in ("auto", "cuda", "cpu", "cuda:0")] == [
        "cuda:1",
        "cuda:1",
        "cpu",
        "cuda:0",
    ]
    assert rank_device("auto", DistContext()) == "auto"  # one process: the request as it was
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto", rank) == "auto"


def test_one_process_session_is_plain_local_calls() -> None:
    session = Session()
    assert session.is_main and not session.distributed and session.label == ""
    assert session.shard([1, 2, 3]) == [1, 2, 3]
    assert session.all_gather("x") == ["x"] and session.gather("x") == ["x"]
    assert session.from_main(lambda: 5) == 5 and session.in_stages(lambda: 6) == 6
    with pytest.raises(ImageReadError, match="as it is"):  # no wrapping: errors read as they always did
        session.settle(_raise(ImageReadError("as it is")))
    with session.progress(3, enabled=False) as bar:
        bar.update(2)


def test_errors_from_several_ranks_combine_into_one() -> None:
    same = (ImageReadError, "Expected an image")
    assert _message(distributed._combined([(0, same), (1, same)], 2)) == (ImageReadError, "Expected an image")
    assert _message(distributed._combined([(1, same)], 3)) == (ImageReadError, "Expected an image (on rank 1)")
    other = (DeviceError, "Expected cuda:1")
    assert _message(distributed._combined([(0, same), (1, other), (2, same)], 3)) == (
        RestoreError,
        "ranks 0, 2: Expected an image; rank 1: Expected cuda:1",
    )


def _raise(error: Exception) -> Callable[[], None]:
    def thunk() -> None:
        raise error

    return thunk


def _message(error: RestoreError) -> tuple[type, str]:
    return type(error), str(error)


# --------------------------------------------------------------------------- 2-process jobs on the CPU


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint, 8 images (``LARGE`` is 1024 px, the rest tiny) and the single-process outputs."""
    root = tmp_path_factory.mktemp("job")
    torch.manual_seed(0)
    torch.save({"params": architectures.build_model("nafnet", "tiny").state_dict()}, root / "tiny.pth")
    rng = np.random.default_rng(8)
    for index, name in enumerate(NAMES):
        shape = (1024, 1024, 3) if name == LARGE else (17 + index, 23, 3)
        write_array(root / "in" / name, rng.integers(0, 256, shape, dtype=np.uint8))
    result = runner.invoke(app, ["denoise", str(root / "in"), str(root / "single"), "--model", str(root / "tiny.pth")])
    assert result.exit_code == 0, result.output
    return root


def _environment(**extra: str) -> dict[str, str]:
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    environment = {key: value for key, value in os.environ.items() if key not in names}
    return {**environment, "OMP_NUM_THREADS": "1", **extra}


def _torchrun_command(*arguments: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return [*launcher, "-m", "restorecli", *arguments]


def _torchrun(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = _torchrun_command(*arguments)
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=TIMEOUT, env=_environment())


def _ranks(*arguments: str) -> list[subprocess.CompletedProcess[str]]:
    """Start two ranks directly, as torchrun would (rank 0 hosts the store), and return each one's result."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "restorecli", *arguments]
    with _launched() as started:
        for rank in ("0", "1"):
            context = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
            environment = _environment(**context, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            started.append(
                subprocess.Popen(
                    command,
                    env=environment,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        outputs = [process.communicate(timeout=TIMEOUT) for process in started]
    return [
        subprocess.CompletedProcess(command, process.returncode, out, err)
        for process, (out, err) in zip(started, outputs, strict=True)
    ]


class _launched:
    """Collects started processes; on the way out, kills the process group of any still running."""

    def __enter__(self) -> list[subprocess.Popen[str]]:
        self.started: list[subprocess.Popen[str]] = []
        return self.started

    def __exit__(self, *_: object) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _images(folder: Path) -> list[Path]:
    """The finished outputs: a rank killed mid-write may leave a hidden ``.name.XXXX.tmp.png`` behind."""
    return [path for path in folder.iterdir() if path.suffix == ".png" and not path.name.startswith(".")]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in _images(folder)}


def _child_with_rank(parent: int, rank: int) -> int | None:
    """The pid of ``parent``'s child process whose environment says ``RANK=rank`` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent_of = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0") if parent_of == parent else []
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
        if f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


def test_torchrun_outputs_equal_a_single_process_run_byte_for_byte(job: Path) -> None:
    out = job / "out_torchrun"
    result = _torchrun("denoise", str(job / "in"), str(out), "--model", str(job / "tiny.pth"), "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr
    assert _outputs(out) == _outputs(job / "single")
    summaries = [line for line in result.stdout.splitlines() if "restored" in line]
    assert len(summaries) == 1  # rank 0 alone prints it, for the whole job
    assert "on 2 processes (cpu): 8 restored, 0 skipped, 0 failed" in summaries[0]


STALE_LISTING = """
import os, sys
from dataclasses import replace
import restorecli.engine.batch as batch
real = batch.find_inputs
def stale(*args, **kwargs):  # rank 1 sees the folder without its first file (a shared file system's cache)
    found = real(*args, **kwargs)
    return replace(found, images=found.images[1:]) if os.environ.get("RANK") == "1" else found
batch.find_inputs = stale
from restorecli.cli.app import main
sys.argv = ["restore", *sys.argv[1:]]
main()
"""


def test_ranks_restore_rank_0s_listing_even_when_theirs_differs(job: Path, tmp_path: Path) -> None:
    script = tmp_path / "stale_listing.py"
    script.write_text(STALE_LISTING, encoding="utf-8")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    out = tmp_path / "out"
    arguments = ["denoise", str(job / "in"), str(out), "--model", str(job / "tiny.pth"), "--device", "cpu", "-q"]
    result = subprocess.run(
        [*launcher, *arguments], check=False, capture_output=True, text=True, timeout=TIMEOUT, env=_environment()
    )
    assert result.returncode == 0, result.stderr
    assert _outputs(out) == _outputs(job / "single")  # every file once, none skipped


def test_killed_rank_then_relaunch_with_skip_existing_completes_the_job(job: Path) -> None:
    out = job / "out_killed"
    arguments = ["denoise", str(job / "in"), str(out), "--model", str(job / "tiny.pth"), "-q", "--skip-existing"]
    rank_zero = {"im1.png", "im3.png", "im5.png", "im7.png"}
    with _launched() as started:
        launcher = subprocess.Popen(
            _torchrun_command(*arguments),
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(launcher)
        deadline = time.monotonic() + TIMEOUT
        # Rank 0's share is tiny; rank 1 starts with the large image, so it is mid-job when rank 0 is done.
        while not (out.is_dir() and rank_zero <= set(_outputs(out))) and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = _child_with_rank(launcher.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        assert launcher.wait(timeout=TIMEOUT) != 0  # torchrun stops rank 0 too and reports the failure
    kept = {path.name: path.stat().st_mtime_ns for path in _images(out)}
    assert rank_zero <= set(kept)

    result = _torchrun(*arguments)
    assert result.returncode == 0, result.stderr
    assert f"{8 - len(kept)} restored, {len(kept)} skipped, 0 failed" in result.stdout
    assert _outputs(out) == _outputs(job / "single")
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # not redone


def test_one_failing_rank_makes_every_rank_exit_non_zero(job: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in NAMES:
        if name != LARGE:
            (folder / name).write_bytes((job / "in" / name).read_bytes())
    (folder / "im5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # 4th of 7: in rank 1's share only
    zero, one = _ranks("derain", str(folder), str(tmp_path / "out"), "--model", str(job / "tiny.pth"), "-q")
    assert (zero.returncode, one.returncode) == (1, 1)
    assert "on 2 processes (cpu): 6 restored, 0 skipped, 1 failed" in zero.stdout
    assert "Error: 1 of 7 images failed" in zero.stderr and "im5.png" not in zero.stderr
    assert "rank 1: Skipped" in one.stderr and "im5.png" in one.stderr
    assert one.stdout == "" and not any(line.startswith("Error:") for line in one.stderr.splitlines())  # said once
    assert sorted(_outputs(tmp_path / "out")) == sorted(set(NAMES) - {LARGE, "im5.png"})


def test_an_error_on_every_rank_is_reported_once_and_nobody_hangs(job: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    zero, one = _ranks("denoise", str(job / "in"), str(tmp_path / "out"), "--model", str(missing), "-q")
    assert (zero.returncode, one.returncode) == (1, 1)
    assert zero.stderr.count("Error:") == 1 and "missing.pth" in zero.stderr
    assert one.stderr == "" and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- restore eval


def _eval_set(root: Path, masks: bool) -> tuple[Path, Path]:
    """7 pairs (an odd count: uneven shares): noisy photos, or binary masks with misses and false alarms."""
    rng = np.random.default_rng(9)
    for index in range(7):
        if masks:
            truth = np.zeros((24, 26), np.uint8)
            truth[2 + index : 6 + index, 3:8] = 255
            guess = np.roll(truth, index % 3, axis=1)
            guess[20, 2 + 3 * index] = 255
        else:
            truth = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
            guess = np.clip(truth + rng.normal(0, 3 + index, truth.shape), 0, 255).round().astype(np.uint8)
        write_array(root / "gt" / f"p{index + 1}.png", truth)
        write_array(root / "pred" / f"p{index + 1}.png", guess)
    return root / "pred", root / "gt"


@pytest.mark.parametrize("masks", [False, True], ids=["psnr-ssim", "miou"])
def test_eval_under_torchrun_gives_exactly_the_single_process_numbers(tmp_path: Path, masks: bool) -> None:
    pred, gt = _eval_set(tmp_path, masks)
    arguments = ["eval", str(pred), "--gt", str(gt), "--json", "--per-image", "--workers", "1"]
    single = runner.invoke(app, [*arguments, "--csv", str(tmp_path / "single.csv")])
    assert single.exit_code == 0, single.output
    result = _torchrun(*arguments, "--csv", str(tmp_path / "torchrun.csv"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(single.stdout)  # every value, per image and overall
    assert (tmp_path / "torchrun.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    report = json.loads(result.stdout)
    assert report["count"] == 7 and [row["name"] for row in report["images"]] == [f"p{i}" for i in range(1, 8)]
    if masks:
        assert set(report["class_iou"]) == {"0", "1"} and report["summary"]["false_alarm_pixels"] > 0
