"""``restore export`` to ONNX and ``--model x.onnx``: graphs equal PyTorch at sizes other than the traced one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.engine import runner as engine_runner
from restorecli.engine.options import RunOptions
from restorecli.engine.runner import restore_tensor
from restorecli.errors import CheckpointError, ConfigError, ExportMismatchError, MissingDependencyError
from restorecli.export.onnx_graph import ONNXRUNTIME_MEMORY_FACTOR, export_onnx, parse_size
from restorecli.export.onnx_session import OnnxModule
from restorecli.images import read_array, write_array
from restorecli.zoo import architectures
from restorecli.zoo.descriptor import ModelDescriptor
from restorecli.zoo.loader import describe, load_descriptor

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

runner = CliRunner()
TOLERANCE = 2e-3
SIZES = ((64, 64), (80, 96))


def _seeded(arch: str, config: str, scale: float) -> nn.Module:
    """``arch(config)`` with every tensor drawn at ``scale``: NAFNet's zero-initialised residual scales
    would make fresh blocks identities, which any graph reproduces."""
    module = architectures.build_model(arch, config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return module


def _descriptor(arch: str, config: str, scale: float = 0.2) -> ModelDescriptor:
    return describe(_seeded(arch, config, scale), f"{arch}-{config}", arch, architectures.resolve_config(arch, config))


def _largest_difference(graph: nn.Module, module: nn.Module, height: int, width: int) -> float:
    x = torch.rand(1, 3, height, width)
    with torch.inference_mode():
        return float((graph(x) - module(x)).abs().max())


@pytest.mark.parametrize(
    ("arch", "opset"), [("restormer", 17), ("restormer", 13), ("nafnet", 13), ("nafnet-local", 17)]
)
def test_dynamic_graph_equals_pytorch_at_two_sizes(arch: str, opset: int, tmp_path: Path) -> None:
    descriptor = _descriptor(arch, "tiny")
    result = export_onnx(descriptor, tmp_path / "m.onnx", opset=opset)  # 13: the oldest accepted
    assert len(result.checks) == 2  # the traced size and another
    assert result.facts.max_difference <= 1e-3
    graph = OnnxModule(tmp_path / "m.onnx")
    # The TLC test config pools over 48 px windows: local at 64x64 and 80x96, global at 32x40; a
    # trace keeps only the branch of the size it saw.
    for height, width in (*SIZES, (32, 40)):
        assert _largest_difference(graph, descriptor.module, height, width) < TOLERANCE
    facts = graph.facts
    assert (facts.arch, facts.config, facts.pad_multiple, facts.pad_mode, facts.in_channels, facts.size) == (
        arch,
        descriptor.config,
        descriptor.pad_multiple,
        descriptor.pad_mode,
        3,
        None,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "config"), [("nafnet", "sidd-width32"), ("restormer", "deraining")])
def test_full_size_graphs_equal_pytorch(arch: str, config: str, tmp_path: Path) -> None:
    descriptor = _descriptor(arch, config, scale=0.02)
    export_onnx(descriptor, tmp_path / "m.onnx")
    graph = OnnxModule(tmp_path / "m.onnx")
    for height, width in SIZES:
        assert _largest_difference(graph, descriptor.module, height, width) < TOLERANCE


def test_onnx_file_loads_through_the_zoo_and_restores_like_pytorch(tmp_path: Path) -> None:
    descriptor = _descriptor("nafnet", "tiny")
    export_onnx(descriptor, tmp_path / "m.onnx")
    loaded = load_descriptor(tmp_path / "m.onnx")
    assert isinstance(loaded.module, OnnxModule)
    assert (loaded.pad_multiple, loaded.in_channels, loaded.out_channels, loaded.device.type) == (4, 3, 3, "cpu")
    x = torch.rand(1, 3, 37, 45)  # not a multiple: the engine pads for the graph as for the module
    tiled = RunOptions(tile=16, overlap=4)
    expected = restore_tensor(descriptor, x, tiled)
    assert float((restore_tensor(loaded, x, tiled) - expected).abs().max()) < TOLERANCE


def test_a_graph_carries_the_memory_estimate_its_tiles_are_sized_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's probe sees no activations inside onnxruntime: the export stores PyTorch's estimate.
    descriptor = _descriptor("nafnet", "tiny")
    per_pixel = engine_runner.estimate_bytes_per_pixel(descriptor)
    export_onnx(descriptor, tmp_path / "m.onnx")
    loaded = load_descriptor(tmp_path / "m.onnx")
    assert loaded.bytes_per_pixel == pytest.approx(ONNXRUNTIME_MEMORY_FACTOR * per_pixel, abs=0.1)
    assert engine_runner.estimate_bytes_per_pixel(loaded) == loaded.bytes_per_pixel
    monkeypatch.setattr(engine_runner, "available_memory", lambda device: int(loaded.bytes_per_pixel * 64 * 64))
    tiling = engine_runner._choose_tiling(loaded, (1, 3, 256, 256), RunOptions())
    assert tiling.tile <= 64  # tiled as its PyTorch module would be, not run whole


def test_fixed_size_graph_takes_only_its_size(tmp_path: Path) -> None:
    descriptor = _descriptor("nafnet", "tiny")
    export_onnx(descriptor, tmp_path / "m.onnx", size=(32, 32))
    loaded = load_descriptor(tmp_path / "m.onnx")
    assert loaded.pad_multiple == 32  # the engine pads up to the graph's size and tiles at it
    assert _largest_difference(loaded.module, descriptor.module, 32, 32) < TOLERANCE
    tiles = torch.rand(3, 3, 32, 32)  # a fixed graph's batch is one: tiles run one at a time
    with torch.inference_mode():
        assert float((loaded.module(tiles) - descriptor.module(tiles)).abs().max()) < TOLERANCE
    with pytest.raises(ConfigError, match="Expected 32x32 inputs for this fixed-size graph, but got 64x64") as error:
        loaded.module(torch.rand(1, 3, 64, 64))
    assert "--tile 32 --tile-overlap 0" in str(error.value)  # advice the engine takes (a 32-px tile, no overlap)
    restored = restore_tensor(loaded, torch.rand(1, 3, 48, 40), RunOptions(tile=32, overlap=0))
    assert restored.shape == (1, 3, 48, 40)
    with pytest.raises(ConfigError, match="an ONNX graph"):  # exporting an export: one line, not a traceback
        export_onnx(loaded, tmp_path / "again.onnx")
    with pytest.raises(ConfigError, match="multiples of 4"):
        export_onnx(descriptor, tmp_path / "odd.onnx", size=(30, 32))


def test_fp16_graph_is_float16_and_close(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    descriptor = _descriptor("nafnet", "tiny")
    result = export_onnx(descriptor, tmp_path / "m.onnx", fp16=True)
    graph = OnnxModule(tmp_path / "m.onnx")
    assert result.facts.dtype == "float16" and graph.session.get_inputs()[0].type == "tensor(float16)"
    assert _largest_difference(graph, descriptor.module, 64, 64) < 1e-2
    with caplog.at_level(logging.WARNING, logger="restorecli"), torch.autocast("cpu", dtype=torch.bfloat16):
        graph(torch.rand(1, 3, 16, 16))
    assert "precision is fixed at export, so bfloat16 has no effect" in caplog.text


class _ExportsDifferently(nn.Module):
    """Adds 0.1 in the traced graph only: how a mistranslated operator would show."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) + (0.1 if torch.onnx.is_in_onnx_export() else 0.0)


class _FrozenSizeBranch(nn.Module):
    """A Python branch on the input width: the trace freezes the traced size's branch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * 0.5 if x.shape[-1] == 64 else self.inner(x)


@pytest.mark.parametrize(
    ("wrapper", "advice"), [(_ExportsDifferently, ""), (_FrozenSizeBranch, "; it holds only the traced size")]
)
def test_mismatch_refuses_and_writes_nothing(wrapper: type[nn.Module], advice: str, tmp_path: Path) -> None:
    config = architectures.resolve_config("nafnet", "tiny")
    broken = describe(wrapper(_seeded("nafnet", "tiny", 0.2)), "broken", "nafnet", config)
    destination = tmp_path / "out" / "m.onnx"
    with pytest.raises(ExportMismatchError, match=r"Expected onnxruntime to match PyTorch within 0.001, but") as info:
        export_onnx(broken, destination)
    assert ("it holds only the traced size: export with --size 64x64" in str(info.value)) == bool(advice)
    assert not destination.parent.exists() or not list(destination.parent.iterdir())


def test_sr_networks_export_safmn_at_any_size_camixersr_at_a_fixed_one(tmp_path: Path) -> None:
    safmn = _descriptor("safmn", "tiny")
    export_onnx(safmn, tmp_path / "safmn.onnx")
    graph = OnnxModule(tmp_path / "safmn.onnx")
    assert graph.facts.scale == safmn.scale == 2 and graph.facts.size is None
    for height, width in (*SIZES, (24, 40)):  # multiples of its 8
        assert _largest_difference(graph, safmn.module, height, width) < TOLERANCE
    # CAMixerSR counts its windows in Python: a trace keeps one size, and the refusal says what to do.
    camixer = _descriptor("camixersr", "tiny")
    with pytest.raises(ExportMismatchError, match="export with --size 64x64"):
        export_onnx(camixer, tmp_path / "camixer.onnx")
    fixed = export_onnx(camixer, tmp_path / "camixer.onnx", size=(64, 64))
    assert fixed.facts.size == [64, 64] and fixed.facts.max_difference < TOLERANCE


def test_options_and_files_that_are_not_ours_are_refused(tmp_path: Path) -> None:
    descriptor = _descriptor("nafnet", "tiny")
    with pytest.raises(ConfigError, match="opset from 13 to 20, but got 11"):
        export_onnx(descriptor, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ConfigError, match="HxW"):
        parse_size("64by64")
    assert parse_size("64") == (64, 64) and parse_size("48x96") == (48, 96)
    plain = tmp_path / "plain.onnx"
    values = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, 3, 8, 8]) for name in "xy"]
    onnx.save(
        onnx.helper.make_model(
            onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "plain", values[:1], values[1:])
        ),
        plain,
    )
    with pytest.raises(CheckpointError, match="Expected an ONNX file written by `restore export`"):
        load_descriptor(plain)
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match="Expected an ONNX graph onnxruntime can load"):
        load_descriptor(tmp_path / "junk.onnx")


def test_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "restorecli\[onnx\]"'):
        export_onnx(_descriptor("nafnet", "tiny"), tmp_path / "m.onnx")


def test_cli_exports_then_denoises_with_the_graph(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(_seeded("nafnet", "tiny", 0.2).state_dict(), checkpoint)
    write_array(tmp_path / "in" / "a.png", np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8))
    graph = tmp_path / "tiny.onnx"

    result = runner.invoke(app, ["export", "--model", str(checkpoint), str(graph)])
    assert result.exit_code == 0, result.output
    assert "any HxW in multiples of 4" in result.output and "verified in onnxruntime against PyTorch" in result.output

    for model, out in ((graph, "via_onnx"), (checkpoint, "via_torch")):
        result = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(tmp_path / out), "--model", str(model), "-q"])
        assert result.exit_code == 0, result.output
    difference = read_array(tmp_path / "via_onnx" / "a.png").astype(int) - read_array(tmp_path / "via_torch" / "a.png")
    assert np.abs(difference).max() <= 1

    result = runner.invoke(app, ["denoise", str(tmp_path / "in"), str(tmp_path / "x"), "--model", str(graph), "--tlc"])
    assert (
        result.exit_code == 1
        and "Error: Expected no architecture variant (--tlc/--no-tlc) for an ONNX graph" in result.output
    )


@pytest.mark.slow
def test_bench_onnx_short_mode(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[1] / "bench" / "bench_onnx.py"
    args = ["--models", "nafnet:tiny", "--sizes", "32", "--repeats", "1", "--json", str(output)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, timeout=600)
    rows = json.loads(output.read_text())["rows"]
    assert [(row["runtime"], row["size"]) for row in rows] == [("pytorch", 32), ("onnxruntime", 32)]
    assert all(row["max_difference"] < 1e-4 and row["images_per_s"] > 0 and row["peak_mib"] > 0 for row in rows)
