"""Architectures without a native loader go through spandrel: detection, descriptor facts, inspect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.errors import CheckpointError, MissingDependencyError
from restorecli.zoo import loader, via_spandrel
from tests.spandrel_nets import tiny_swinir_x2

try:
    via_spandrel.import_spandrel()
except MissingDependencyError:
    pytest.skip("spandrel is not installed (make install puts it in .venv)", allow_module_level=True)


def _swinir_x2() -> torch.nn.Module:
    return tiny_swinir_x2()


def _scunet() -> torch.nn.Module:
    from spandrel.architectures.SCUNet import SCUNet

    torch.manual_seed(0)
    return SCUNet(in_nc=3, config=[1, 1, 1, 1, 1, 1, 1], dim=64)


def test_spandrel_imports_without_torchvision_and_leaves_no_placeholder() -> None:
    via_spandrel.import_spandrel()
    module = sys.modules.get("torchvision")
    assert module is None or hasattr(module, "__file__")  # the real package, or nothing


@pytest.mark.parametrize(
    ("build", "arch", "scale", "task", "min_size"),
    [(_swinir_x2, "spandrel:SwinIR", 2, "upscale", 16), (_scunet, "spandrel:SCUNet", 1, None, 40)],
)
def test_a_checkpoint_no_native_loader_knows_loads_through_spandrel(
    tmp_path: Path,
    build,
    arch: str,
    scale: int,
    task: str | None,
    min_size: int,  # type: ignore[no-untyped-def]
) -> None:
    network = build().eval()
    path = tmp_path / "model.pth"
    torch.save({"params": network.state_dict()}, path)
    descriptor = loader.load_descriptor(path)
    assert (descriptor.arch, descriptor.scale, descriptor.task, descriptor.min_size) == (arch, scale, task, min_size)
    assert descriptor.in_channels == descriptor.out_channels == 3
    x = torch.rand(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(descriptor.module(x), network(x))  # the network itself (spandrel's plain call)

    facts = json.loads(CliRunner().invoke(app, ["inspect", str(path), "--json"]).stdout)
    assert facts["arch"] == arch and facts["scale"] == scale
    assert facts["parameters"] == sum(p.numel() for p in network.parameters())


def test_unknown_keys_are_a_checkpoint_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mystery.pth"
    torch.save({"weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="mystery.pth"):
        loader.load_descriptor(path)


def test_a_forged_block_index_is_refused_before_spandrel_builds(tmp_path: Path) -> None:
    path = tmp_path / "forged.pth"
    torch.save({"body.9999999.weight": torch.zeros(1), "conv_first.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="block indices up to 4096"):
        loader.load_descriptor(path)


def _mixdehazenet() -> torch.nn.Module:
    from spandrel.architectures.MixDehazeNet import MixDehazeNet

    torch.manual_seed(0)
    return MixDehazeNet(embed_dims=[8, 16, 32, 16, 8], depths=[1, 1, 1, 1, 1])


def _mmrealsr() -> torch.nn.Module:
    from spandrel.architectures.MMRealSR import MMRealSR

    torch.manual_seed(0)
    blocks = {"num_feats": [8, 16, 16, 16], "num_blocks": [1, 1, 1, 1], "downscales": [1, 1, 2, 1]}
    return MMRealSR(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_degradation=2, **blocks)


@pytest.mark.parametrize("build", [_mixdehazenet, _mmrealsr], ids=["output range mapped", "tuple output"])
def test_models_run_through_spandrels_call(tmp_path: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Some architectures need spandrel's call around the network (MixDehazeNet's output is in [-1, 1];
    MMRealSR returns a tuple): the engine's output equals spandrel's own, image by image of a batch."""
    from restorecli.engine.runner import restore_tensor

    path = tmp_path / "model.pth"
    torch.save(build().state_dict(), path)
    descriptor = loader.load_descriptor(path)
    reference = via_spandrel.import_spandrel().ModelLoader().load_from_state_dict(torch.load(path)).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = torch.cat([reference(image[None]) for image in x])
    torch.testing.assert_close(restore_tensor(descriptor, x), expected, rtol=0, atol=1e-6)


def test_a_plain_spandrel_network_exports_and_one_needing_spandrels_call_is_refused(tmp_path: Path) -> None:
    from spandrel.architectures.Compact import Compact

    from restorecli.errors import ConfigError
    from restorecli.export.onnx_graph import export_onnx

    torch.manual_seed(0)
    torch.save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict(), tmp_path / "c.pth")
    compact = loader.load_descriptor(tmp_path / "c.pth")
    assert compact.module.plain
    result = export_onnx(compact, tmp_path / "c.onnx")
    assert max(check.max_difference for check in result.checks) < 1e-3
    torch.save(_mixdehazenet().state_dict(), tmp_path / "m.pth")
    mapped = loader.load_descriptor(tmp_path / "m.pth")
    assert not mapped.module.plain
    with pytest.raises(ConfigError, match="through its own call"):
        export_onnx(mapped, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
