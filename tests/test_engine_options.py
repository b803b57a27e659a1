"""The run-options record and the one memory-size parser."""

from __future__ import annotations

import dataclasses

import pytest

from restorecli.engine.options import DEFAULT_TILE_OVERLAP, RunOptions, parse_memory_size
from restorecli.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4GiB", 4 << 30),
        ("512MiB", 512 << 20),
        ("512mib", 512 << 20),
        ("1.5G", 3 << 29),
        ("800M", 800 << 20),
        ("2GB", 2 << 30),
        ("64k", 64 << 10),
        ("1048576", 1 << 20),
        (" 3 GiB ", 3 << 30),
    ],
)
def test_memory_sizes_parse_in_binary_units(text: str, size: int) -> None:
    assert parse_memory_size(text) == size


@pytest.mark.parametrize("text", ["", "four", "4XB", "-1G", "0", "0.0001k", "4 GiB extra", "G"])
def test_bad_memory_sizes_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"Expected a memory size such as 4GiB, 512MiB or 800M, but got"):
        parse_memory_size(text)


def test_run_options_are_one_frozen_record_with_the_shared_overlap() -> None:
    options = RunOptions()
    assert options.overlap == DEFAULT_TILE_OVERLAP == 32
    assert (options.tile, options.tile_batch, options.precision, options.fallback) == (None, None, "fp32", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.tile = 64  # type: ignore[misc]
    with pytest.raises(ConfigError, match="precision among"):
        dataclasses.replace(options, precision="fp64")  # replace validates too
