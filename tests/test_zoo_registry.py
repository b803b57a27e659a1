"""The pretrained registry: every entry is buildable, named, sourced and described."""

from __future__ import annotations

import pytest

from restorecli.zoo import architectures, pretrained

# Exact parameter counts of the official releases (Restormer and NAFNet READMEs / papers).
OFFICIAL_COUNTS = {
    "restormer-derain": 26_126_644,
    "restormer-deblur-motion": 26_126_644,
    "restormer-deblur-defocus-single": 26_126_644,
    "restormer-deblur-defocus-dual": 26_132_548,
    "restormer-denoise-color-sigma25": 26_111_668,
    "restormer-denoise-gray-blind": 26_109_076,
    "nafnet-sidd-width32": 29_159_715,
    "nafnet-sidd-width64": 115_982_915,
    "nafnet-gopro-width32": 17_111_907,
    "nafnet-gopro-width64": 67_888_835,
    "nafnet-reds-width64": 67_888_835,
}


@pytest.mark.parametrize(("name", "count"), OFFICIAL_COUNTS.items())
def test_entries_build_the_official_parameter_count(name: str, count: int) -> None:
    entry = pretrained.get_entry(name)
    module = architectures.build_on_meta(entry.arch, entry.config)
    assert sum(p.numel() for p in module.parameters()) == count


def test_every_entry_is_complete_and_unique() -> None:
    names = [e.name for e in pretrained.ENTRIES]
    files = [e.filename for e in pretrained.ENTRIES]
    assert len(set(names)) == len(names)
    assert len(set(files)) == len(files)
    for entry in pretrained.ENTRIES:
        architectures.resolve_config(entry.arch, entry.config)
        assert entry.license and entry.origin and entry.paper_score
        assert entry.url is None or entry.url.startswith("https://")
        assert entry.url is not None or entry.default_for is not None
        assert entry.filename.endswith((".pth", ".safetensors"))


def test_each_command_has_a_default_for_its_task() -> None:
    for command, tasks in pretrained.COMMAND_TASKS.items():
        entry = pretrained.default_for(command)
        assert entry.task in tasks
        assert entry.url is None  # shipped in weights/, usable offline


def test_tlc_is_on_exactly_for_the_gopro_and_reds_releases() -> None:
    tlc = {e.name for e in pretrained.ENTRIES if e.variant == "tlc"}
    assert {e.variant for e in pretrained.ENTRIES} == {None, "tlc"}
    assert tlc == {"nafnet-gopro-width32", "nafnet-gopro-width64", "nafnet-reds-width64"}


def test_entries_matching_finds_entries_sharing_a_config() -> None:
    kwargs = architectures.resolve_config("restormer", "denoise-color")
    names = {e.name for e in pretrained.entries_matching("restormer", kwargs)}
    assert {"restormer-denoise-color-blind", "restormer-denoise-color-sigma50"} <= names
    assert "restormer-derain" not in names


def test_model_for_command_defaults_and_warns_on_a_task_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    assert pretrained.model_for_command("derain", None) == "restorecli-derain"
    assert not caplog.records
    assert pretrained.model_for_command("derain", "nafnet-gopro-width64") == "nafnet-gopro-width64"
    assert "nafnet-gopro-width64 is a deblur model, run by `restore derain`" in caplog.text
    assert pretrained.model_for_command("deblur", "my.pth") == "my.pth"
