"""The one loader: zoo names, bare checkpoints, model cards, unsafe pickles and mismatches."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restorecli.errors import CheckpointError, ConfigError, UnknownModelError, WeightsNotFoundError
from restorecli.zoo import architectures, download, loader, pretrained
from restorecli.zoo.card import Benchmark, ModelCard, read_card, record_benchmarks


def _tiny_state(arch: str = "nafnet") -> dict[str, torch.Tensor]:
    return architectures.build_model(arch, "tiny").state_dict()


def test_bare_pth_checkpoint_infers_architecture_and_loads_exact_weights(tmp_path: Path) -> None:
    state = _tiny_state()
    path = tmp_path / "model.pth"
    torch.save({"params": state}, path)
    descriptor = loader.load_descriptor(path)
    assert descriptor.arch == "nafnet"
    assert descriptor.config == architectures.resolve_config("nafnet", "tiny")
    assert (descriptor.in_channels, descriptor.out_channels) == (3, 3)
    assert (descriptor.pad_multiple, descriptor.pad_mode) == (4, "constant")
    loaded = descriptor.module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not descriptor.module.training


@pytest.mark.parametrize("arch", ["restormer", "nafnet", "safmn", "camixersr"])
def test_loading_sets_every_tensor_from_the_file_without_a_random_initialisation(arch: str) -> None:
    state = {key: torch.randn_like(value) for key, value in _tiny_state(arch).items()}  # nothing at its init value
    module, _ = loader.build_and_load(arch, "tiny", state, "test")
    loaded = module.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert all(p.device.type == "cpu" and p.requires_grad for p in module.parameters())  # trainable, on the CPU


def test_loaded_tensors_are_copies_in_the_networks_dtype() -> None:
    """A half-precision file loads into the fp32 network, and no parameter shares memory with the file's
    tensors (a memory-mapped checkpoint rewritten on disk must not change a loaded model)."""
    state = {key: value.half() for key, value in _tiny_state().items()}
    module, _ = loader.build_and_load("nafnet", "tiny", state, "test")
    for key, value in module.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, state[key].float())
        assert value.untyped_storage().data_ptr() != state[key].untyped_storage().data_ptr()
    full = _tiny_state()
    module, _ = loader.build_and_load("nafnet", "tiny", full, "test")
    first = next(iter(full))
    full[first].add_(1.0)  # the caller's tensor changes; the model's copy does not
    assert not torch.equal(module.state_dict()[first], full[first])


def test_loading_a_checkpoint_does_not_import_sympy(tmp_path: Path) -> None:
    """A fresh ``restore`` process pays for what it imports: allocating from meta tensors (``to_empty``)
    imports PyTorch's symbolic shapes and sympy (0.34 s of a 0.60 s load on the 2-core machine)."""
    path = tmp_path / "model.pth"
    torch.save({"params": _tiny_state("restormer")}, path)
    script = (
        "import sys; from restorecli.zoo import loader; "
        f"loader.load_descriptor({str(path)!r}); "
        "print(sorted(m for m in ('torch.fx.experimental.symbolic_shapes', 'sympy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _with_table(module: torch.nn.Module) -> None:
    module.register_buffer("table", torch.arange(3.0, device=next(module.parameters()).device), persistent=False)


def _with_twin(module: torch.nn.Module) -> None:
    module.twin = copy.deepcopy(module.intro)
    module.twin.weight = module.intro.weight


@pytest.mark.parametrize("alter", [_with_table, _with_twin], ids=["unsaved buffer", "tied weights"])
def test_a_module_only_its_constructor_sets_up_is_built_by_it(
    monkeypatch: pytest.MonkeyPatch, alter: Callable[[torch.nn.Module], None]
) -> None:
    """A non-persistent buffer is in no file, and assigning the file's tensors name by name would untie
    tied weights: for such a module the constructor runs and the file is copied in."""

    def altered(build):  # type: ignore[no-untyped-def]
        def built(*args, **kwargs):  # type: ignore[no-untyped-def]
            module = build(*args, **kwargs)
            alter(module)
            return module

        return built

    assert not loader._needs_its_constructor(architectures.build_on_meta("nafnet", "tiny"))
    monkeypatch.setattr(loader, "build_skeleton", altered(loader.build_skeleton))
    monkeypatch.setattr(architectures, "build_model", altered(architectures.build_model))
    state = _tiny_state()
    module, _ = loader.build_and_load("nafnet", "tiny", state, "test")
    if alter is _with_table:
        assert torch.equal(module.table, torch.arange(3.0))  # the constructor's value, not uninitialised memory
    else:
        assert module.twin.weight is module.intro.weight
    assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("wrapper", ["params_ema", "state_dict", None])
def test_wrappers_and_module_prefix_are_unwrapped(tmp_path: Path, wrapper: str | None) -> None:
    state = {f"module.{k}": v for k, v in _tiny_state("restormer").items()}
    payload = state if wrapper is None else {wrapper: state, "iter": torch.tensor(5)}
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    descriptor = loader.load_descriptor(path)
    assert descriptor.arch == "restormer"
    assert (descriptor.pad_multiple, descriptor.pad_mode) == (8, "reflect")


def test_params_ema_is_preferred_over_params(tmp_path: Path) -> None:
    state = _tiny_state()
    ema = {k: v + 1 for k, v in state.items()}
    path = tmp_path / "model.pth"
    torch.save({"params": state, "params_ema": ema}, path)
    loaded = loader.read_state_dict(path)
    assert all(torch.equal(loaded[k], ema[k]) for k in state)


def test_safetensors_with_model_card_uses_the_card(tmp_path: Path) -> None:
    state = _tiny_state()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    card = {
        "name": "mine",
        "arch": "nafnet",
        "config": architectures.resolve_config("nafnet", "tiny"),
        "task": "derain",
    }
    path.with_suffix(".json").write_text(json.dumps(card))
    descriptor = loader.load_descriptor(path)
    assert descriptor.task == "derain"
    assert descriptor.extra["card"].name == "mine"


class _Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_would_execute_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refuses to execute"):
        loader.load_descriptor(path)
    assert not marker.exists()


def test_mismatch_names_missing_unexpected_and_misshaped_keys(tmp_path: Path) -> None:
    state = _tiny_state()
    state["intro.weight"] = torch.zeros(1, 2, 3, 3)
    del state["ending.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        loader.build_and_load("nafnet", "tiny", state, str(path))
    message = str(info.value)
    assert "1 missing: ending.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "intro.weight (1, 2, 3, 3) vs (4, 3, 3, 3)" in message
    assert str(path) in message


def test_mismatch_suggests_the_zoo_entry_the_file_fits(tmp_path: Path) -> None:
    state = architectures.build_on_meta("nafnet", "lite-w16-full").state_dict()
    state = {k: torch.zeros(v.shape) for k, v in state.items()}
    with pytest.raises(CheckpointError, match="restorecli-derain"):
        loader.build_and_load("nafnet", "tiny", state, "x.pth")


def test_arch_from_a_zoo_entry_overrides_inference(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(_tiny_state(), path)
    with pytest.raises(CheckpointError, match="Expected the weights to fit restormer"):
        loader.load_descriptor(path, arch_from="restormer-derain")


def test_corrupt_and_foreign_files_give_one_line_errors(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        loader.load_descriptor(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"optimizer": {"lr": 1.0}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pth"):
        loader.load_descriptor(foreign)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="did you mean restormer-derain"):
        loader.load_descriptor("restormer-derian")


def test_tlc_switches_nafnet_to_its_local_variant(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(_tiny_state(), path)
    assert loader.load_descriptor(path, variant="tlc").arch == "nafnet-local"
    assert loader.load_descriptor(path, variant="plain").arch == loader.load_descriptor(path).arch == "nafnet"
    with pytest.raises(ConfigError, match="Expected a variant among plain, tlc for nafnet, but got 'fast'") as error:
        loader.load_descriptor(path, variant="fast")
    assert str(error.value).endswith("tiny.pth)")  # names the file


def test_missing_bundled_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "SHIPPED_WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv("RESTORECLI_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    entry = pretrained.default_for("derain")
    with pytest.raises(WeightsNotFoundError) as info:
        loader.load_descriptor(entry.name)
    assert str(tmp_path / "weights" / entry.filename) in str(info.value)
    assert "`restore train` and the `recipes/derain*.toml` stages" in str(info.value)


def test_explicit_weights_path_wins(tmp_path: Path) -> None:
    entry = pretrained.get_entry("restorecli-denoise")
    state = architectures.build_model(entry.arch, entry.config).state_dict()
    path = tmp_path / "custom.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    descriptor = loader.load_descriptor(entry.name, weights=path)
    assert descriptor.task == "denoise"
    assert descriptor.extra["weights"] == str(path)


def test_record_benchmarks_replaces_the_cards_table_and_keeps_the_rest(tmp_path: Path) -> None:
    card_file = tmp_path / "model.json"
    card_file.write_text(json.dumps({"arch": "nafnet", "config": {"width": 8}, "iterations": 7}))
    rows = [{"case": "colour sigma 25", "input_psnr": 20.4, "psnr": 31.1, "images": 24, "mode": "colour"}]
    record_benchmarks(tmp_path / "model.safetensors", rows, "../data/Kodak24", "scored so")
    card = read_card(tmp_path / "model.safetensors")
    assert card is not None and card.iterations == 7 and card.config == {"width": 8}
    assert card.benchmarks == (Benchmark("colour sigma 25", 20.4, 31.1, 24, "../data/Kodak24", "scored so"),)
    # Recording again replaces the table (the card file itself may be named too).
    record_benchmarks(card_file, [], "../data/Kodak24", "scored so")
    assert read_card(card_file).benchmarks == ()  # type: ignore[union-attr]
    with pytest.raises(CheckpointError, match="model card"):
        record_benchmarks(tmp_path / "none.safetensors", rows, "x", "y")
    with pytest.raises(CheckpointError, match="model card as restore train writes it"):
        ModelCard.from_dict({"arch": "nafnet", "config": {}, "benchmarks": [{"case": "x"}]}, "bad.json")


def test_measured_score_reads_the_card_validation() -> None:
    val = {
        "psnr": 31.234,
        "ssim": 0.9123,
        "input_psnr": 20.1,
        "input_ssim": 0.5,
        "images": 24,
        "source": "../data/Kodak24",
    }
    card = ModelCard.from_dict({"arch": "nafnet", "config": {}, "val": val}, "card.json")
    assert card.measured_score() == "Kodak24 31.23 dB / 0.912 (input 20.10 dB)"
    assert (
        ModelCard.from_dict({"arch": "nafnet", "config": {}, "val": None}, "c.json").measured_score() == "not validated"
    )


def test_inspect_gives_the_licence_of_the_files_own_entry() -> None:
    """restorecli-upscale shares SAFMN x4's architecture and config but not its terms."""
    facts = loader.inspect_file(Path("restorecli-upscale"))
    assert {"safmn-x4", "restorecli-upscale"} <= set(facts["zoo_entries"])
    assert facts["license"] == pretrained.get_entry("restorecli-upscale").license
    assert facts["license"] != pretrained.get_entry("safmn-x4").license
