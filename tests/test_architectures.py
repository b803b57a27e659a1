"""The architecture registry: lookup, config resolution, padding/channel rules, config inference."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from restorecli.archs import NAFNet, NAFNetLocal, Restormer
from restorecli.errors import CheckpointError, ConfigError, UnknownModelError
from restorecli.zoo.architectures import (
    ARCHITECTURES,
    PLAIN,
    arch_variant,
    build_model,
    build_on_meta,
    get_arch,
    infer_arch,
    resolve_config,
)

TINY_RESTORMER = {"dim": 2, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]}

# Configs that must be recovered from their state dicts alone, beyond the named ones.
EXTRA_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("restormer", {**TINY_RESTORMER, "bias": True}),
    ("restormer", {**TINY_RESTORMER, "LayerNorm_type": "BiasFree", "inp_channels": 1, "out_channels": 1}),
    ("restormer", {**TINY_RESTORMER, "inp_channels": 6, "dual_pixel_task": True}),
    ("restormer", {**TINY_RESTORMER, "ffn_expansion_factor": 2.0, "heads": [1, 2, 2, 4], "dim": 4}),
    ("restormer", {**TINY_RESTORMER, "ffn_expansion_factor": 3.0, "num_blocks": [2, 1, 3, 1]}),
    ("restormer", {**TINY_RESTORMER, "num_refinement_blocks": 0}),
    ("nafnet", {"width": 8, "enc_blk_nums": [0, 2], "middle_blk_num": 0, "dec_blk_nums": [1, 0]}),
    ("nafnet", {"width": 4, "img_channel": 1, "enc_blk_nums": [1, 1, 1], "dec_blk_nums": [3, 1, 2]}),
    ("nafnet", {"width": 4, "enc_blk_nums": [], "dec_blk_nums": [], "middle_blk_num": 2}),
]
NAMED = [(arch, name) for arch in ("restormer", "nafnet") for name in ARCHITECTURES[arch].configs]


def test_registry_names() -> None:
    assert list(ARCHITECTURES) == ["restormer", "nafnet", "nafnet-local", "safmn", "camixersr"]
    assert get_arch("nafnet-local").builder is NAFNetLocal
    expected_configs = {
        "deraining",
        "motion-deblurring",
        "defocus-deblurring-single",
        "defocus-deblurring-dual",
        "denoise-color",
        "denoise-gray",
        "real-denoising",
        "tiny",
    }
    assert set(ARCHITECTURES["restormer"].configs) == expected_configs
    assert {
        "sidd-width32",
        "sidd-width64",
        "gopro-width32",
        "gopro-width64",
        "reds-width64",
        "tiny",
        "lite-w16",
        "lite-w16-deep",
        "lite-w16-deeper",
        "lite-w16-full",
    } == set(ARCHITECTURES["nafnet"].configs)
    assert set(ARCHITECTURES["nafnet-local"].configs) == set(ARCHITECTURES["nafnet"].configs)


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="did you mean restormer"):
        get_arch("restormr")
    with pytest.raises(UnknownModelError, match="did you mean sidd-width32"):
        resolve_config("nafnet", "sidd-width23")
    with pytest.raises(UnknownModelError, match="known: restormer, nafnet, nafnet-local"):
        get_arch("swinir")


def test_resolve_config_fills_constructor_defaults() -> None:
    default = resolve_config("restormer")
    assert default == {
        "inp_channels": 3,
        "out_channels": 3,
        "dim": 48,
        "num_blocks": [4, 6, 6, 8],
        "num_refinement_blocks": 4,
        "heads": [1, 2, 4, 8],
        "ffn_expansion_factor": 2.66,
        "bias": False,
        "LayerNorm_type": "WithBias",
        "dual_pixel_task": False,
    }
    assert resolve_config("restormer", "deraining") == default
    assert resolve_config("restormer", {"LayerNorm_type": "BiasFree"}) == resolve_config("restormer", "denoise-color")
    assert resolve_config("nafnet") == resolve_config("nafnet", "sidd-width32")
    local = resolve_config("nafnet-local", "gopro-width64")
    assert local["train_size"] == [1, 3, 256, 256] and local["fast_imp"] is False
    assert resolve_config("nafnet-local", "tiny")["train_size"] == [1, 3, 32, 32]


def test_resolved_configs_are_fresh_json_values() -> None:
    config = resolve_config("nafnet", "sidd-width32")
    assert json.loads(json.dumps(config)) == config
    config["enc_blk_nums"].append(99)
    assert resolve_config("nafnet", "sidd-width32")["enc_blk_nums"] == [2, 2, 4, 8]


def test_resolve_config_rejects_unknown_arguments() -> None:
    with pytest.raises(ConfigError, match="Expected arguments of nafnet .* but got depth"):
        resolve_config("nafnet", {"width": 8, "depth": 3})
    with pytest.raises(ConfigError, match="train_size"):
        resolve_config("nafnet", {"train_size": [1, 3, 64, 64]})  # TLC option on the plain arch


def test_build_model_classes_and_configs() -> None:
    assert isinstance(build_model("restormer", "tiny"), Restormer)
    assert type(build_model("nafnet", "tiny")) is NAFNet
    local = build_model("nafnet-local", {**resolve_config("nafnet", "tiny"), "train_size": [1, 3, 64, 64]})
    assert isinstance(local, NAFNetLocal) and local.train_size == (1, 3, 64, 64)
    spec = get_arch("nafnet")
    assert type(build_model(spec, resolve_config(spec, "tiny"))) is NAFNet


def test_padding_rules() -> None:
    restormer = get_arch("restormer")
    assert restormer.padding(resolve_config("restormer", "deraining")) == (8, "reflect")
    assert restormer.padding(TINY_RESTORMER) == (8, "reflect")
    for arch in ("nafnet", "nafnet-local"):
        spec = get_arch(arch)
        for name in ("sidd-width32", "gopro-width64", "reds-width64", "lite-w16"):
            assert spec.padding(resolve_config(arch, name)) == (16, "constant")
        assert spec.padding(resolve_config(arch, "tiny")) == (4, "constant")
        assert spec.padding({"enc_blk_nums": [], "dec_blk_nums": []}) == (1, "constant")


def test_channels() -> None:
    restormer = get_arch("restormer")
    assert restormer.channels(resolve_config("restormer", "denoise-gray")) == (1, 1)
    assert restormer.channels(resolve_config("restormer", "defocus-deblurring-dual")) == (6, 3)
    assert restormer.channels({}) == (3, 3)
    assert get_arch("nafnet").channels({"img_channel": 1}) == (1, 1)


def test_arch_variants() -> None:
    assert arch_variant("nafnet", "tlc") == arch_variant("nafnet-local", "tlc") == "nafnet-local"
    assert arch_variant("nafnet-local", PLAIN) == arch_variant("nafnet", PLAIN) == "nafnet"
    assert arch_variant("restormer", PLAIN) == "restormer"
    with pytest.raises(ConfigError, match="Expected a variant among plain for restormer, but got 'tlc'"):
        arch_variant("restormer", "tlc")


@pytest.mark.parametrize(("arch", "name"), NAMED)
def test_infer_recovers_every_named_config(arch: str, name: str) -> None:
    state = build_on_meta(arch, name).state_dict()
    assert infer_arch(state) == (arch, resolve_config(arch, name))


@pytest.mark.parametrize(("arch", "config"), EXTRA_CONFIGS)
def test_infer_recovers_variants(arch: str, config: dict[str, Any]) -> None:
    state = build_on_meta(arch, config).state_dict()
    inferred_arch, inferred = infer_arch(state)
    assert inferred_arch == arch
    assert inferred == resolve_config(arch, config)


def test_infer_reports_tlc_checkpoints_as_nafnet() -> None:
    state = build_on_meta("nafnet-local", "gopro-width32").state_dict()
    assert infer_arch(state) == ("nafnet", resolve_config("nafnet", "gopro-width32"))


def test_inferred_config_loads_strictly() -> None:
    source = build_model("restormer", {**TINY_RESTORMER, "LayerNorm_type": "BiasFree", "bias": True})
    arch, config = infer_arch(source.state_dict())
    rebuilt = build_model(arch, config)
    rebuilt.load_state_dict(source.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), source.eval()(x))


def test_infer_rejects_foreign_and_malformed_state_dicts() -> None:
    foreign = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "body.0.rdb1.conv1.weight": torch.zeros(32, 64, 3, 3)}
    with pytest.raises(
        CheckpointError, match="Expected a Restormer, NAFNet, SAFMN or CAMixerSR state dict.*conv_first.weight"
    ):
        infer_arch(foreign)
    with pytest.raises(CheckpointError, match="no keys"):
        infer_arch({})
    with pytest.raises(CheckpointError, match="malformed"):
        infer_arch({"intro.weight": torch.zeros(4), "ending.weight": torch.zeros(3, 4, 3, 3)})
