"""`restore profile` through the real Typer app: table, JSON, options and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from restorecli import profiling
from restorecli.cli.app import app
from restorecli.zoo.architectures import build_model, build_on_meta

runner = CliRunner()
TINY = ["profile", "--arch", "nafnet", "--config", "tiny"]
COUNT_ONLY = ["--no-latency", "--no-memory"]
# Terabytes of weights: refused on any machine, counted on the meta device.
HUGE = '{"width": 60000, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}'


def test_table_shows_parameters_macs_flops_breakdown_and_runtime() -> None:
    result = runner.invoke(
        app, [*TINY, "--size", "32", "--device", "cpu", "--warmup", "0", "--repeats", "2", "--no-memory"]
    )
    assert result.exit_code == 0, result.output
    model = build_on_meta("nafnet", "tiny")
    params = profiling.count_parameters(model).total
    macs = profiling.count_macs(model, (1, 3, 32, 32)).total
    out = result.stdout
    assert f"Parameters  {params:,} " in out
    assert f"{macs / 1e6:.2f} MMACs = {2 * macs / 1e6:.2f} MFLOPs at input 1x3x32x32, official formulation" in out
    counts = out.split("three ways:")[1].splitlines()
    assert [row.split("  ")[0] for row in counts[3:6]] == [
        "official formulation",
        "paper convention",
        "restorecli forward",
    ]
    assert "Per module, depth 1, official formulation, most MACs first:" in out and "encoders.0" in out
    assert "Runtime on cpu, fp32, batch 1, 0 warm-up + 2 timed passes:" in out
    runtime_rows = out.split("Runtime on cpu")[1].splitlines()
    assert runtime_rows[3].split()[:4] == ["32x32", "1x3x32x32", "1", f"{macs / 1e6:.2f}"]
    assert "FLOPs = 2 x MACs" in " ".join(out.split())  # the convention is wrapped to the terminal


def test_json_is_complete_and_consistent() -> None:
    result = runner.invoke(app, [*TINY, "--size", "30x36", "--batch", "2", "--depth", "2", *COUNT_ONLY, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    macs = profiling.count_macs(build_on_meta("nafnet", "tiny"), (2, 3, 32, 36)).total
    counts = data["macs"].pop("counts")
    assert data["macs"] == {
        "input_shape": [2, 3, 32, 36],
        "macs": macs,
        "gmacs": round(macs / 1e9, 2),
        "flops": 2 * macs,
        "by_operator": {"convolution": macs},
    }
    assert list(counts) == ["official", "paper", "restorecli"]
    assert all(count["macs"] == macs and count["flops"] == 2 * macs for count in counts.values())
    assert data["device"] is None and data["sizes"][0]["latency"] is None
    assert sum(row["macs"] for row in data["breakdown"]) == macs
    assert data["parameters"]["total"] == sum(row["params"] for row in data["breakdown"])
    assert any("padded to multiples of 4" in note for note in data["notes"])


def test_sizes_list_macs_per_size_without_running() -> None:
    result = runner.invoke(app, [*TINY, "--sizes", "16,32,64x32", *COUNT_ONLY])
    assert result.exit_code == 0, result.output
    rows = result.stdout.split("MACs per size (official formulation):")[1].splitlines()[3:6]
    assert [row.split()[:2] for row in rows] == [["16x16", "1x3x16x16"], ["32x32", "1x3x32x32"], ["64x32", "1x3x64x32"]]


def test_top_limits_the_printed_breakdown_but_not_the_json() -> None:
    args = [*TINY, "--depth", "3", *COUNT_ONLY]
    table = runner.invoke(app, [*args, "--top", "4"])
    assert table.exit_code == 0, table.output
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    hidden = len(data["breakdown"]) - 4
    assert f"... {hidden} more rows (" in table.stdout and hidden > 0


def test_tiled_runtime_shows_the_tile_count() -> None:
    result = runner.invoke(
        app,
        [
            *TINY,
            "--size",
            "64",
            "--tile",
            "32",
            "--tile-overlap",
            "8",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--no-memory",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "tiles of 32 px (overlap 8)" in result.stdout
    row = result.stdout.split("Runtime on cpu")[1].splitlines()[3].split()
    assert row[:3] == ["64x64", "1x3x64x64", "9"]


def test_zoo_model_by_name_needs_no_weights() -> None:
    result = runner.invoke(app, ["profile", "--model", "nafnet-sidd-width32", "--size", "64", *COUNT_ONLY, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["model"], data["arch"], data["weights"]) == ("nafnet-sidd-width32", "nafnet", None)
    assert data["parameters"]["total"] == 29_159_715


def test_weights_alone_give_the_architecture_and_a_mismatch_is_an_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(build_model("nafnet", "tiny").state_dict(), checkpoint)
    result = runner.invoke(app, ["profile", "--weights", str(checkpoint), *COUNT_ONLY, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["arch"], data["weights"]) == ("nafnet", str(checkpoint))
    assert data["parameters"]["total"] == profiling.count_parameters(build_on_meta("nafnet", "tiny")).total
    mismatch = runner.invoke(app, ["profile", "--arch", "restormer", "--config", "tiny", "--weights", str(checkpoint)])
    assert mismatch.exit_code == 1
    assert mismatch.stderr.startswith("Error: Expected the weights to fit restormer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", *COUNT_ONLY], "Expected a network: --arch NAME"),
        (["profile", "--arch", "restormr"], "did you mean restormer?"),
        ([*TINY, "--size", "0"], "Expected a size H or HxW"),
        ([*TINY, "--sizes", "16,big"], "Expected a size H or HxW"),
        ([*TINY, "--device", "tpu"], "Expected a device among auto, cpu"),
        ([*TINY, "--device", "cpu", "--precision", "fp16"], "Expected a precision cpu supports"),
        ([*TINY, "--model", "nafnet-sidd-width32"], "Expected either --arch or --model"),
        (["profile", "--arch", "nafnet", "--config", '{"width": -8}'], "but got width=-8"),
        (["profile", "--arch", "nafnet", "--config", HUGE, "--device", "cpu"], "weights alone need"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_code_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_restormer_json_reports_the_official_and_the_paper_count_at_256() -> None:
    result = runner.invoke(app, ["profile", "--arch", "restormer", *COUNT_ONLY, "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["macs"]["counts"]
    assert {kind: count["gmacs"] for kind, count in counts.items()} == {
        "official": 154.88,
        "paper": 140.99,
        "restorecli": 148.03,
    }


def test_a_size_past_the_free_memory_is_an_out_of_memory_row_without_a_traceback() -> None:
    result = runner.invoke(app, [*TINY, "--size", "100000", "--device", "cpu", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["sizes"][0]
    assert row["latency"] is None and row["error"].startswith("out of memory: needs about")


def test_invalid_counts_are_usage_errors() -> None:
    assert runner.invoke(app, [*TINY, "--batch", "0"]).exit_code == 2
    assert runner.invoke(app, [*TINY, "--repeats", "0"]).exit_code == 2


def test_every_option_has_help_text() -> None:
    result = runner.invoke(app, ["profile", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    command = typer.main.get_command(app).commands["profile"]  # type: ignore[attr-defined]
    assert command.help
    for param in command.params:
        assert getattr(param, "help", None), param.name
        assert param.opts[0] in result.stdout


def test_plot_is_written_beside_the_table(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "tiny.png"
    result = runner.invoke(
        app, [*TINY, "--sizes", "16,32", "--device", "cpu", "--repeats", "1", "--no-memory", "--plot", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(b"\x89PNG") and "Runtime on cpu" in result.stdout


def test_a_bad_plot_path_fails_before_profiling(tmp_path: Path) -> None:
    result = runner.invoke(app, [*TINY, "--plot", str(tmp_path / "no" / "such.png")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: Expected an existing folder for the plot")
